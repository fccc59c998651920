"""Attachments in an S3-compatible bucket: the settings built from MEDIA_S3_* name django-storages'
S3Storage, and an upload through the admin or the API lands in the bucket, which the launch page
and every send read it back from. The bucket is moto's S3 server on loopback, spoken to over HTTP
as a MinIO or Scaleway endpoint would be; Wassenger is the real sandbox."""

import hashlib
import uuid

import boto3
import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.urls import reverse
from moto.server import ThreadedMotoServer
from rest_framework.test import APIClient

from campaigns.launch import campaign_launch
from config import settings as settings_module
from messaging.sending import sender_run
from tests.campaigns.test_media import PDF, PNG, _form, _named
from tests.factories import make_campaign, make_category, make_contact, make_device

# The real Wassenger sandbox process.
from tests.messaging.conftest import sandbox, sandbox_server  # noqa: F401

KEYS = {"MEDIA_S3_ACCESS_KEY_ID": "relance-test", "MEDIA_S3_SECRET_ACCESS_KEY": "relance-secret"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint, settings, monkeypatch, tmp_path):
    """A fresh bucket, and STORAGES built by the settings from the environment an operator sets."""
    name = f"relance-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="fr-par",
        aws_access_key_id=KEYS["MEDIA_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=KEYS["MEDIA_S3_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "fr-par"})
    environment = {"MEDIA_S3_BUCKET": name, "MEDIA_S3_ENDPOINT_URL": s3_endpoint, **KEYS}
    environment |= {"MEDIA_S3_REGION": "fr-par", "MEDIA_S3_ADDRESSING_STYLE": "path"}
    for variable, value in environment.items():
        monkeypatch.setenv(variable, value)
    settings.MEDIA_ROOT = tmp_path / "media"  # must stay empty
    settings.STORAGES = {**settings.STORAGES, "default": settings_module.media_storage()}
    client.name = name
    return client


def _stored(bucket) -> dict[str, bytes]:
    listed = bucket.list_objects_v2(Bucket=bucket.name).get("Contents", [])
    read = {item["Key"]: bucket.get_object(Bucket=bucket.name, Key=item["Key"]) for item in listed}
    return {key: found["Body"].read() for key, found in read.items()}


def test_without_a_bucket_attachments_stay_under_media_root(monkeypatch):
    monkeypatch.delenv("MEDIA_S3_BUCKET", raising=False)
    monkeypatch.delenv("MEDIA_STORAGE_BACKEND", raising=False)
    assert settings_module.media_storage() == {"BACKEND": "django.core.files.storage.FileSystemStorage"}


def test_a_bucket_names_django_storages_s3_with_its_endpoint(monkeypatch):
    monkeypatch.setenv("MEDIA_S3_BUCKET", "relance-media")
    monkeypatch.setenv("MEDIA_S3_ENDPOINT_URL", "https://s3.fr-par.scw.cloud")
    monkeypatch.delenv("MEDIA_S3_ACCESS_KEY_ID", raising=False)

    storage = settings_module.media_storage()

    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"]) == (
        "relance-media",
        "https://s3.fr-par.scw.cloud",
    )
    assert "access_key" not in options  # boto3's own credentials chain
    assert options["location"] == "media" and options["file_overwrite"] is False


@pytest.mark.django_db
def test_an_admin_upload_lands_in_the_bucket_and_the_pages_read_it_back(bucket, client, settings):
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    campaign = make_campaign(categories=[make_category()])

    saved = client.post(
        reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        _form(campaign, message_1_media=_named(PNG, "photo.png")),
    )

    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert _stored(bucket) == {f"media/{campaign.message_1_media.name}": PNG}
    assert not settings.MEDIA_ROOT.exists()
    page = client.get(reverse("campaign-detail", args=[campaign.pk])).content.decode()
    assert 'id="attachment-message_1" data-kind="image"' in page  # its type read from the bucket
    served = client.get(reverse("campaign-media", args=[campaign.pk, "message_1"]))
    assert b"".join(served.streaming_content) == PNG


@pytest.mark.django_db
def test_an_api_upload_lands_in_the_bucket(bucket):
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    campaign = make_campaign()

    accepted = api.patch(
        f"/api/campaigns/{campaign.pk}/", {"message_2_media": _named(PDF, "offer.pdf")}, format="multipart"
    )

    assert accepted.status_code == 200, accepted.json()
    campaign.refresh_from_db()
    assert _stored(bucket) == {f"media/{campaign.message_2_media.name}": PDF}


@pytest.fixture
def launched_from_bucket(bucket, db, fake_clock):
    category = make_category()
    for n in range(2):
        make_contact(first_name=f"P{n}", categories=[category])
    device = make_device(gap_seconds=0, batch_size=25, batch_pause_seconds=0, daily_limit=1000)
    campaign = make_campaign(device=device, categories=[category], message_1_text="Bonjour {{ first_name }}")
    campaign.message_1_media.save("photo.png", ContentFile(PNG))
    campaign_launch(campaign=campaign)
    return campaign


def test_a_send_uploads_to_wassenger_the_bytes_read_from_the_bucket(launched_from_bucket, sandbox):  # noqa: F811
    sender_run(device_id=launched_from_bucket.device_ids()[0])

    files = sandbox.control("GET", "files")
    assert [(f["filename"], f["mime"], f["sha256"]) for f in files] == [
        ("photo.png", "image/png", hashlib.sha256(PNG).hexdigest())
    ]
    assert {m["media"]["file"] for m in sandbox.messages()} == {files[0]["id"]}


def test_by_url_a_send_names_a_signed_url_of_the_bucket_that_serves_the_file(
    launched_from_bucket,
    sandbox,  # noqa: F811
    settings,
    s3_endpoint,
):
    settings.MEDIA_SEND_MODE = "url"

    sender_run(device_id=launched_from_bucket.device_ids()[0])

    urls = {m["media"]["url"] for m in sandbox.messages()}
    assert len(sandbox.messages()) == 2 and sandbox.control("GET", "files") == []
    for url in urls:
        assert url.startswith(f"{s3_endpoint}/") and "Signature=" in url
        assert requests.get(url, timeout=5).content == PNG  # what Wassenger would fetch
