"""In a real browser: an operator launches, from the operator pages, a campaign whose Message 1
has an image and two variants (spintax); the launch preview shows the image and both variants
with their counts, and once sent the campaign page's timeline and variant table show both.

The production path, as in test_operator_pages.py: the live server, a real senders cluster on
the test database, the sandbox, which receives the image uploaded once and both texts.
"""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from campaigns.models import Campaign, Contact
from messaging.models import Message
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import make_category, make_device
from tests.webhooks.conftest import sandbox_calling_live_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECIPIENTS = 6
PASSWORD = "browser-test-password-4712"
PNG = (  # a 1×1 PNG
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def sandbox(live_server, settings):
    server = sandbox_calling_live_server(live_server, settings, "--seed", "3", "--reply-share", "0")
    yield server
    assert server.stop() == 0


@pytest.fixture
def senders(sandbox, media_root):
    cluster = qcluster_start(name="senders", sandbox_url=sandbox.url, MEDIA_ROOT=str(media_root))
    yield
    qcluster_kill(cluster)


def a_draft_with_an_image_and_two_variants() -> Campaign:
    category = make_category("Salon")
    Contact.objects.bulk_create(
        Contact(phone=f"+3368{n:07d}", first_name=f"Lou{n}") for n in range(RECIPIENTS)
    )
    category.contacts.set(Contact.objects.all())
    device = make_device(label="Browser", gap_seconds=0.2, batch_size=25, batch_pause_seconds=1)
    campaign = Campaign.objects.create(
        name="Rentrée",
        message_1_text="{Bonjour|Salut} {{ first_name }}, voici notre affiche",
        message_2_text="Merci !",
    )
    campaign.devices_set([device])
    campaign.categories.set([category])
    campaign.message_1_media.save("affiche.png", ContentFile(PNG))
    return campaign


def test_a_campaign_with_an_image_and_two_variants_in_the_browser(
    browser, screenshot, live_server, senders, sandbox
):
    get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    campaign = a_draft_with_an_image_and_two_variants()
    wait = WebDriverWait(browser, 30, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])

    browser.get(f"{live_server.url}/campaigns/{campaign.pk}/launch/")
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]").click()
    wait.until(lambda b: b.find_elements(By.ID, "launch-variants"))

    # The preview: both variants, as written and for the sample contact, with their counts.
    first, second = (browser.find_element(By.ID, f"launch-variant-{n}").text for n in (1, 2))
    assert (
        "Bonjour {{ first_name }}, voici notre affiche" in first
        and "Bonjour Lou0, voici notre affiche" in first
    )
    assert "Salut {{ first_name }}" in second and "Salut Lou0" in second
    counts = [browser.find_element(By.CSS_SELECTOR, f"#launch-variant-{n} .count").text for n in (1, 2)]
    assert counts == ["3", "3"]
    # The image, loaded by the browser from the page that serves it.
    image = browser.find_element(By.CSS_SELECTOR, "#attachment-message_1 img")
    wait.until(
        lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth;", image) == 1
    )
    screenshot("rich-01-launch-preview")

    browser.find_element(By.CSS_SELECTOR, "input[type=submit].default").click()
    wait.until(lambda b: "launched" in b.page_source)
    wait.until(
        lambda _: Message.objects.filter(campaign=campaign, sent_at__isnull=False).count() == RECIPIENTS
    )

    # The campaign page: both variants in the timeline and in the variant table; the image shown.
    browser.get(f"{live_server.url}/campaigns/{campaign.pk}/")
    cells = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#timeline td.variant")]
    assert sorted(cells) == ["1", "1", "1", "2", "2", "2"]
    assert "Salut {{ first_name }}" in browser.find_element(By.ID, "variant-2").text
    assert browser.find_elements(By.CSS_SELECTOR, "#attachment-message_1 img")
    screenshot("rich-02-campaign-page")

    # What Wassenger received: the image uploaded once, named by every message, both texts.
    (uploaded,) = sandbox.control("GET", "files")
    received = sandbox.messages()
    assert {m["media"]["file"] for m in received} == {uploaded["id"]}
    assert sorted(m["message"].split()[0] for m in received) == ["Bonjour"] * 3 + ["Salut"] * 3
