"""django-q entry points of the campaigns app: each takes ids and calls a behaviour function."""

from campaigns.verification import verification_run


def verification_job_run(job_id: int) -> None:
    """A WhatsApp number check job, on the verify cluster (settings.VERIFY_CLUSTER)."""
    verification_run(job_id=job_id)
