"""Devices: the Wassenger numbers Relance sends from."""

from django.conf import settings
from django.db import transaction

from messaging.models import Device


@transaction.atomic
def device_ensure_default() -> Device:
    """The default device, created on first run from the settings (idempotent).

    A default device without a Wassenger id (made while trying Relance on the sandbox)
    takes WASSENGER_DEVICE_ID once it is set: switching to the real Wassenger is then a
    matter of settings. An id already stored, say one an operator typed in the admin, is
    never replaced, nor is the id taken from a device that already has it.
    """
    default = Device.objects.filter(is_default=True).first()
    if default is None:
        default, _ = Device.objects.get_or_create(
            label="Default", defaults={"wassenger_id": settings.WASSENGER_DEVICE_ID}
        )
        default.is_default = True
        default.save(update_fields=["is_default"])
    configured = settings.WASSENGER_DEVICE_ID
    if (
        not default.wassenger_id
        and configured
        and not Device.objects.filter(wassenger_id=configured).exists()
    ):
        default.wassenger_id = configured
        default.save(update_fields=["wassenger_id"])
    return default


def device_resume(*, device: Device) -> bool:
    """Clear a halt (after the operator fixed the token or reconnected the number)."""
    from messaging.dispatch import sender_enqueue

    resumed = Device.objects.filter(pk=device.pk, halted_at__isnull=False).update(
        halted_at=None, halted_reason=""
    )
    if resumed:
        sender_enqueue(device.pk)
    return bool(resumed)
