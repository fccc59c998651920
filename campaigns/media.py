"""Attachments of Message 1 and Message 2: what a file is (from its bytes, never its name),
whether WhatsApp takes it (its size limits), and how a send carries it.

An attachment is stored through Django's storage API (`MEDIA_ROOT` by default, any storage
`STORAGES["default"]` names otherwise). It goes out as Wassenger documents it, `media` in
`POST /v1/messages` with the message text as its caption: by the id of a file uploaded once per
campaign and message (`POST /v1/files`, the id kept on the campaign), or, with
`MEDIA_PUBLIC_BASE_URL` set, by the public URL Wassenger fetches it from (`MEDIA_SEND_MODE`).
"""

from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

MB = 1024 * 1024
SNIFF_BYTES = 64


@dataclass(frozen=True)
class MediaKind:
    kind: str  # image, video, audio, document
    mime: str

    @property
    def limit(self) -> int:
        return LIMITS[self.kind]


# WhatsApp's own limits.
LIMITS = {"image": 5 * MB, "video": 16 * MB, "audio": 16 * MB, "document": 100 * MB}
KIND_NAMES = {
    "image": gettext_lazy("image"),
    "video": gettext_lazy("video"),
    "audio": gettext_lazy("audio"),
    "document": gettext_lazy("document"),
}
_OOXML = {
    "word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_ODF = (
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
)


def media_kind(file) -> MediaKind | None:
    """What the file is, read from its first bytes (and a zip's entries); None: not supported."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    file.seek(0)
    found = _by_magic(head)
    if found is None and head.startswith(b"PK\x03\x04"):
        found = _office_zip(file)
    file.seek(0)
    return found


def _by_magic(head: bytes) -> MediaKind | None:
    if head.startswith(b"\xff\xd8\xff"):
        return MediaKind("image", "image/jpeg")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MediaKind("image", "image/png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind("image", "image/webp")
    if head[4:8] == b"ftyp" and not head[8:11] == b"M4A":
        return MediaKind("video", "video/mp4")
    if head.startswith(b"ID3") or head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return MediaKind("audio", "audio/mpeg")
    if head.startswith(b"OggS"):
        return MediaKind("audio", "audio/ogg")
    if head.startswith(b"%PDF-"):
        return MediaKind("document", "application/pdf")
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):  # Word, Excel, PowerPoint 97-2003
        return MediaKind("document", "application/vnd.ms-office")
    return None


def _office_zip(file) -> MediaKind | None:
    """A .docx/.xlsx/.pptx (OOXML) or .odt/.ods/.odp (OpenDocument); any other zip is not."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
            if "mimetype" in names:
                declared = archive.read("mimetype").decode("ascii", "replace").strip()
                return MediaKind("document", declared) if declared in _ODF else None
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    if "[Content_Types].xml" not in names:
        return None
    for prefix, mime in _OOXML.items():
        if any(name.startswith(prefix) for name in names):
            return MediaKind("document", mime)
    return None


def media_valid(file) -> None:
    """The model field's validator: a supported type, within WhatsApp's limit for its kind."""
    if not file:
        return
    found = media_kind(file)
    if found is None:
        raise ValidationError(
            _(
                "This file cannot be sent on WhatsApp: attach an image (JPEG, PNG, WebP), a document "
                "(PDF, Word, Excel, PowerPoint, OpenDocument), an MP4 video or MP3/OGG audio."
            ),
            code="media_type",
        )
    if file.size > found.limit:
        facts = {"kind": KIND_NAMES[found.kind], "size": file.size / MB, "limit": found.limit // MB}
        raise ValidationError(
            _("This %(kind)s is %(size).1f MB: WhatsApp takes at most %(limit)d MB.") % facts,
            code="media_size",
        )


# --- Sending --------------------------------------------------------------------------------


def media_filename(field_file) -> str:
    return field_file.name.rsplit("/", 1)[-1]


def media_payload(*, campaign_id: int, kind: str) -> dict | None:
    """The `media` of a send of `campaign_id`'s message `kind` ("message_1"/"message_2"), or None.

    Uploads the file to Wassenger the first time (WassengerError propagates: the send fails
    as any send would, and the next attempt uploads again)."""
    campaign = _campaign_media(campaign_id)
    stored = getattr(campaign, f"{kind}_media")
    if not stored:
        return None
    filename = media_filename(stored)
    if settings.MEDIA_SEND_MODE == "url":
        return {"url": media_public_url(stored), "filename": filename}
    file_id = campaign.media_uploads.get(stored.name) or _uploaded(campaign_id, stored)
    return {"file": file_id, "filename": filename}


# A sender asks for every message it sends: the campaign's attachments are read once per
# campaign and CACHE_SECONDS, so that a send costs no statement more (tests/messaging/
# test_send_engine.py counts them); an attachment changed meanwhile goes out that much later.
CACHE_SECONDS = 30.0
_cache: dict[int, tuple[float, object]] = {}
_cache_lock = threading.Lock()


def _campaign_media(campaign_id: int):
    from campaigns.models import Campaign

    with _cache_lock:
        found = _cache.get(campaign_id)
    if found and time.monotonic() - found[0] < CACHE_SECONDS:
        return found[1]
    campaign = Campaign.objects.only("message_1_media", "message_2_media", "media_uploads").get(
        pk=campaign_id
    )
    with _cache_lock:
        _cache[campaign_id] = (time.monotonic(), campaign)
    return campaign


def media_public_url(stored) -> str:
    url = stored.url
    return (
        url if url.startswith(("http://", "https://")) else settings.MEDIA_PUBLIC_BASE_URL.rstrip("/") + url
    )


def _uploaded(campaign_id: int, stored) -> str:
    """Upload once; two senders racing both upload, and the first id stored wins."""
    from campaigns.models import Campaign
    from messaging import wassenger

    with stored.open("rb") as content:
        found = media_kind(content)
        data = content.read()
    file_id = wassenger.upload_file(
        content=data, filename=media_filename(stored), mime=found.mime if found else ""
    )
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().only("media_uploads").get(pk=campaign_id)
        if stored.name not in campaign.media_uploads:
            campaign.media_uploads = {**campaign.media_uploads, stored.name: file_id}
            campaign.save(update_fields=["media_uploads"])
    with _cache_lock:
        _cache.pop(campaign_id, None)
    return campaign.media_uploads[stored.name]


# --- Showing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    message: str  # "message_1" or "message_2"
    filename: str
    kind: str  # image, video, audio, document ("" if the stored file can no longer be read)
    size: int

    @property
    def is_image(self) -> bool:
        return self.kind == "image"

    @property
    def kind_label(self) -> str:
        return str(KIND_NAMES.get(self.kind, self.kind))


def campaign_attachments(campaign) -> list[Attachment]:
    """The campaign's attachments, as the launch page and the campaign page show them."""
    found = []
    for message in ("message_1", "message_2"):
        stored = getattr(campaign, f"{message}_media")
        if not stored:
            continue
        try:
            with stored.open("rb") as content:
                kind = media_kind(content)
            size = stored.size
        except OSError:  # gone from the storage: still named, so the operator sees it
            kind, size = None, 0
        found.append(Attachment(message, media_filename(stored), kind.kind if kind else "", size))
    return found


def attachment_open(campaign, message: str):
    """(file, content type) of the campaign's attachment of `message`, for the page that shows it."""
    stored = getattr(campaign, f"{message}_media")
    content = stored.open("rb")
    found = media_kind(content)
    return content, found.mime if found else "application/octet-stream"
