"""Attachments through the client and the real sandbox: `POST /v1/files` once, then `media` by
file id or by URL in `POST /v1/messages`; the sandbox records what it received and refuses a
media it could not send."""

import pytest
import requests

from messaging import wassenger
from tests.messaging.conftest import SANDBOX_TOKEN

PHONE = "+33612345678"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


def test_an_uploaded_file_is_sent_by_its_id_and_recorded(sandbox):
    file_id = wassenger.upload_file(content=PNG, filename="photo.png", mime="image/png")

    wassenger.send_message(
        phone=PHONE, reference="r-1", text="Voici", media={"file": file_id, "filename": "photo.png"}
    )

    (received,) = sandbox.messages(reference="r-1")
    assert received["message"] == "Voici"
    assert received["media"]["file"] == file_id and received["media"]["size"] == len(PNG)
    (stored,) = sandbox.control("GET", "files")
    assert (stored["id"], stored["filename"], stored["mime"], stored["format"]) == (
        file_id, "photo.png", "image/png", "image"
    )  # fmt: skip


def test_a_public_url_is_sent_as_given(sandbox):
    url = "https://cdn.example.com/offer.pdf"
    wassenger.send_message(phone=PHONE, reference="r-2", text="L'offre", media={"url": url})
    assert sandbox.messages(reference="r-2")[0]["media"]["url"] == url


@pytest.mark.parametrize("media", [{"file": "000000000000000000000000"}, {"url": "ftp://x/y"}, {"x": 1}])
def test_a_media_the_sandbox_could_not_send_is_refused(sandbox, media):
    with pytest.raises(wassenger.Rejected):
        wassenger.send_message(phone=PHONE, reference="r-3", text="x", media=media)
    assert sandbox.messages(reference="r-3") == []


def test_a_media_that_is_no_object_is_a_400(sandbox):
    body = {"phone": PHONE, "reference": "r-4", "message": "x", "media": "photo.png"}
    response = requests.post(
        f"{sandbox.url}/v1/messages", json=body, headers={"Token": SANDBOX_TOKEN}, timeout=5
    )
    assert response.status_code == 400 and response.json()["errorCode"] == "error:invalid_media"


def test_an_upload_without_a_file_part_is_a_400(sandbox):
    headers = {"Token": SANDBOX_TOKEN}
    response = requests.post(f"{sandbox.url}/v1/files", data={"other": "x"}, headers=headers, timeout=5)
    assert response.status_code == 400
