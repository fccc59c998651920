"""Attachments of Message 1 and Message 2: type by content, WhatsApp's size limits, upload in the
admin and the API, shown on the launch and campaign pages, and sent through Wassenger (the real
sandbox) by an uploaded file id, once per campaign, or by public URL."""

import io
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from campaigns.cloning import campaign_clone
from campaigns.launch import campaign_launch
from campaigns.media import MB, media_kind, media_valid
from campaigns.models import Campaign
from messaging.sending import sender_run
from tests.factories import make_campaign, make_category, make_contact, make_device

# The real Wassenger sandbox process.
from tests.messaging.conftest import sandbox, sandbox_server  # noqa: F401

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(50)
JPEG = b"\xff\xd8\xff\xe0" + bytes(60)
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + bytes(40)
PDF = b"%PDF-1.7\n" + bytes(40)
MP4 = b"\x00\x00\x00\x18ftypmp42" + bytes(40)
MP3 = b"ID3\x04\x00" + bytes(40)
OGG = b"OggS\x00\x02" + bytes(40)


def office(kind: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        if kind == "odt":
            archive.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        else:
            archive.writestr("[Content_Types].xml", "<Types/>")
            archive.writestr({"docx": "word/document.xml", "xlsx": "xl/workbook.xml"}[kind], "<x/>")
    return out.getvalue()


def plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize(
    "content, kind, mime",
    [
        (JPEG, "image", "image/jpeg"),
        (PNG, "image", "image/png"),
        (WEBP, "image", "image/webp"),
        (PDF, "document", "application/pdf"),
        (
            office("docx"),
            "document",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (office("xlsx"), "document", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        (office("odt"), "document", "application/vnd.oasis.opendocument.text"),
        (MP4, "video", "video/mp4"),
        (MP3, "audio", "audio/mpeg"),
        (OGG, "audio", "audio/ogg"),
    ],
)
def test_the_type_is_read_from_the_content(content, kind, mime):
    found = media_kind(io.BytesIO(content))
    assert (found.kind, found.mime) == (kind, mime)


@pytest.mark.parametrize(
    "content", [b"just text, named photo.jpg", plain_zip(), b"MZ\x90\x00" + bytes(60), b""]
)
def test_anything_else_is_refused_whatever_its_name(content):
    with pytest.raises(ValidationError, match="cannot be sent on WhatsApp"):
        media_valid(SimpleUploadedFile("photo.jpg", content) if content else _named(b"x", "photo.jpg"))


def _named(content: bytes, name: str):
    return SimpleUploadedFile(name, content)


@pytest.mark.parametrize(
    "head, limit, words",
    [(JPEG, 5, "image"), (MP4, 16, "video"), (OGG, 16, "audio"), (PDF, 100, "document")],
)
def test_whatsapps_size_limit_for_each_kind(head, limit, words):
    media_valid(SimpleUploadedFile("ok", head + bytes(limit * MB - len(head))))  # at the limit: fine
    with pytest.raises(
        ValidationError, match=f"This {words} is {limit}.0 MB: WhatsApp takes at most {limit} MB"
    ):
        media_valid(SimpleUploadedFile("big", head + bytes(limit * MB - len(head) + 1)))


# --- Admin and API uploads, pages ----------------------------------------------------------------


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def admin_client(client, db, media_root):
    client.force_login(get_user_model().objects.create_superuser("admin", "a@example.com", None))
    return client


def _form(campaign: Campaign, **changes) -> dict:
    form = {
        "name": campaign.name,
        "devices": campaign.device_ids(),
        "categories": list(campaign.categories.values_list("pk", flat=True)),
        "message_1_text": campaign.message_1_text,
        "message_1_variants": "[]",
        "message_1_template_variables": "[]",
        "message_2_text": campaign.message_2_text,
        "variable_fallbacks": "{}",
        "fatigue_days": "7",
    }
    return form | changes


@pytest.mark.django_db
def test_the_admin_stores_an_image_and_refuses_a_fake_one(admin_client, media_root):
    campaign = make_campaign(categories=[make_category()])
    change = reverse("admin:campaigns_campaign_change", args=[campaign.pk])

    refused = admin_client.post(change, _form(campaign, message_1_media=_named(b"<html>", "photo.png")))
    assert refused.status_code == 200 and "cannot be sent on WhatsApp" in refused.content.decode()

    saved = admin_client.post(change, _form(campaign, message_1_media=_named(PNG, "photo.png")))
    assert saved.status_code == 302
    campaign.refresh_from_db()
    assert campaign.message_1_media.name.startswith("campaigns/") and campaign.message_1_media.read() == PNG
    assert (media_root / campaign.message_1_media.name).is_file()  # Django's storage: MEDIA_ROOT


@pytest.mark.django_db
def test_the_api_takes_an_attachment_as_multipart_and_refuses_a_wrong_type(media_root):
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("api", "b@example.com", None))
    campaign = make_campaign()
    url = f"/api/campaigns/{campaign.pk}/"

    refused = api.patch(url, {"message_2_media": _named(b"hello", "doc.pdf")}, format="multipart")
    assert refused.status_code == 400 and "cannot be sent on WhatsApp" in str(refused.json())

    accepted = api.patch(url, {"message_2_media": _named(PDF, "offer.pdf")}, format="multipart")
    assert accepted.status_code == 200, accepted.json()
    assert "offer" in accepted.json()["message_2_media"]
    campaign.refresh_from_db()
    assert campaign.message_2_media.read() == PDF


@pytest.mark.django_db
def test_the_launch_and_campaign_pages_show_the_attachment(admin_client):
    category = make_category()
    make_contact(categories=[category])
    campaign = make_campaign(categories=[category])
    campaign.message_1_media.save("photo.png", ContentFile(PNG))
    campaign.message_2_media.save("offer.pdf", ContentFile(PDF))
    media_url = reverse("campaign-media", args=[campaign.pk, "message_1"])

    for page in (
        admin_client.get(reverse("admin:campaigns_campaign_launch", args=[campaign.pk])),
        admin_client.get(reverse("campaign-launch", args=[campaign.pk])),
        admin_client.get(reverse("campaign-detail", args=[campaign.pk])),
    ):
        html = page.content.decode()
        assert f'<img src="{media_url}"' in html and 'id="attachment-message_1" data-kind="image"' in html
        assert 'id="attachment-message_2" data-kind="document"' in html and "offer" in html

    served = admin_client.get(media_url)
    assert served["Content-Type"] == "image/png" and b"".join(served.streaming_content) == PNG
    assert admin_client.get(reverse("campaign-media", args=[campaign.pk, "other"])).status_code == 404


@pytest.mark.django_db
def test_a_clone_carries_the_attachment_but_uploads_it_again(media_root):
    campaign = make_campaign()
    campaign.message_1_media.save("photo.png", ContentFile(PNG))
    Campaign.objects.filter(pk=campaign.pk).update(media_uploads={campaign.message_1_media.name: "abc"})

    clone = campaign_clone(campaign=Campaign.objects.get(pk=campaign.pk))

    assert clone.message_1_media.name == campaign.message_1_media.name and clone.media_uploads == {}


# --- Sending through the sandbox -------------------------------------------------------------------


@pytest.fixture
def launched_with_image(db, media_root, fake_clock):
    category = make_category()
    for n in range(3):
        make_contact(first_name=f"P{n}", categories=[category])
    device = make_device(gap_seconds=0, batch_size=25, batch_pause_seconds=0, daily_limit=1000)
    campaign = make_campaign(device=device, categories=[category], message_1_text="Bonjour {{ first_name }}")
    campaign.message_1_media.save("photo.png", ContentFile(PNG))
    campaign_launch(campaign=campaign)
    return campaign


def test_message_1_goes_with_its_image_uploaded_once_per_campaign(launched_with_image, sandbox):  # noqa: F811
    sender_run(device_id=launched_with_image.device_ids()[0])

    files = sandbox.control("GET", "files")
    assert len(files) == 1
    assert (files[0]["filename"], files[0]["mime"], files[0]["size"]) == ("photo.png", "image/png", len(PNG))
    received = sandbox.messages()
    assert len(received) == 3
    for message in received:
        assert message["message"].startswith("Bonjour P")  # the text is the caption
        assert message["media"]["file"] == files[0]["id"] and message["media"]["mime"] == "image/png"
    launched_with_image.refresh_from_db()
    assert launched_with_image.media_uploads == {launched_with_image.message_1_media.name: files[0]["id"]}


def test_by_url_the_send_names_the_public_url(launched_with_image, sandbox, settings):  # noqa: F811
    settings.MEDIA_SEND_MODE = "url"
    settings.MEDIA_PUBLIC_BASE_URL = "https://relance.example.com"

    sender_run(device_id=launched_with_image.device_ids()[0])

    assert sandbox.control("GET", "files") == []
    url = f"https://relance.example.com/media/{launched_with_image.message_1_media.name}"
    assert {m["media"]["url"] for m in sandbox.messages()} == {url}
