"""In a real browser: log in, launch a campaign from the admin against the sandbox, watch the
dashboard's progress bar move without a reload, open the campaign, switch to French,
download the timeline CSV, and read a contact's reply on the campaign, contact and replies pages.

Everything is the production path: the live server, a real senders cluster and a real default
cluster (webhooks) on the test database, the sandbox sending delivery and read receipts back to
the live webhook URL. Pacing is shrunk on the device (0.2 s between sends).
"""

import csv
import io
import time

import pytest
from django.contrib.auth import get_user_model
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from campaigns.models import Campaign, Contact
from messaging.models import Message
from tests.clusters import qcluster_kill, qcluster_start
from tests.factories import make_category, make_device
from tests.webhooks.conftest import SECRET, sandbox_calling_live_server
from webhooks.models import InboundMessage, InboundOutcome

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECIPIENTS = 40
PASSWORD = "browser-test-password-4711"


@pytest.fixture
def sandbox(live_server, settings):
    server = sandbox_calling_live_server(
        live_server, settings,
        "--seed", "2", "--delivered-delay", "0.3", "--read-delay", "0.5",
        "--reply-share", "0.2", "--stop-share", "0", "--reply-delay", "0.3",
    )  # fmt: skip
    yield server
    assert server.stop() == 0


@pytest.fixture
def clusters(sandbox):
    """The senders' cluster and the default one (webhook processing), on the test database."""
    started = [
        qcluster_start(name="senders", sandbox_url=sandbox.url),
        qcluster_start(sandbox_url=sandbox.url, WASSENGER_WEBHOOK_SECRET=SECRET),
    ]
    yield
    for cluster in started:
        qcluster_kill(cluster)


def a_draft_campaign() -> Campaign:
    category = make_category("Salon 2026")
    Contact.objects.bulk_create(
        Contact(phone=f"+3367{n:07d}", first_name=f"Lou{n}", name="=SUM(A1)" if n == 1 else "Martin")
        for n in range(1, RECIPIENTS + 1)
    )
    category.contacts.set(Contact.objects.all())
    device = make_device(label="Browser", gap_seconds=0.2, batch_size=25, batch_pause_seconds=1)
    campaign = Campaign.objects.create(
        name="Printemps", message_1_text="Bonjour {{ first_name }}", message_2_text="Merci !"
    )
    campaign.categories.set([category])
    campaign.devices.set([device])
    return campaign


def data_of(browser, element_id: str, name: str) -> str | None:
    """An attribute read in one step: the live fragment may replace the element at any moment."""
    script = "const e = document.getElementById(arguments[0]); return e ? e.dataset[arguments[1]] : null;"
    return browser.execute_script(script, element_id, name)


def progress_of(browser, campaign: Campaign) -> float:
    return float(data_of(browser, f"progress-{campaign.pk}", "progress") or -1)


def test_an_operator_launches_and_follows_a_campaign_in_the_browser(
    browser, screenshot, downloads, live_server, settings, clusters
):
    settings.OPERATOR_REFRESH_SECONDS = 1
    get_user_model().objects.create_superuser("operator", "op@example.com", PASSWORD)
    campaign = a_draft_campaign()
    # A page being replaced (a link, the language switch) makes the old one's elements stale.
    wait = WebDriverWait(browser, 20, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException])

    # Log in: the dashboard sends an anonymous visitor to the login page first.
    browser.get(live_server.url + "/")
    assert "/login/" in browser.current_url
    browser.find_element(By.ID, "id_username").send_keys("operator")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form.stacked button[type=submit]").click()
    wait.until(lambda b: b.find_elements(By.ID, "dashboard-live"))
    screenshot("01-dashboard-before")

    # Launch from the admin: its confirmation page, then confirm.
    browser.get(f"{live_server.url}/admin/campaigns/campaign/{campaign.pk}/change/")
    browser.find_element(By.CSS_SELECTOR, ".object-tools a[href$='/launch/']").click()
    assert f"Launch to {RECIPIENTS} recipients" in browser.page_source
    screenshot("02-admin-launch-confirmation")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit].default").click()
    wait.until(lambda b: "launched" in b.page_source)

    # The dashboard: the progress bar moves while the page stays the same page.
    browser.get(live_server.url + "/")
    browser.execute_script("window.notReloaded = true;")
    seen = {progress_of(browser, campaign)}
    deadline = time.monotonic() + 40
    while progress_of(browser, campaign) < 100 and time.monotonic() < deadline:
        seen.add(progress_of(browser, campaign))
        if len(seen) == 3:
            screenshot("03-dashboard-progress")
        time.sleep(0.2)
    seen.add(progress_of(browser, campaign))
    assert browser.execute_script("return window.notReloaded === true;"), "the page was reloaded"
    assert len([p for p in seen if 0 < p < 100]) >= 2, f"the bar did not move in steps: {sorted(seen)}"
    assert max(seen) == 100.0, sorted(seen)
    refreshes = int(data_of(browser, "dashboard-live", "liveRefreshes"))
    assert refreshes >= 3
    screenshot("04-dashboard-done")

    # The campaign page, with its funnel filling in from the receipts.
    browser.find_element(By.CSS_SELECTOR, f"#progress-{campaign.pk} a").click()
    wait.until(lambda b: data_of(b, "funnel-read", "count") == str(RECIPIENTS))
    assert data_of(browser, "funnel-sent", "count") == str(RECIPIENTS)
    screenshot("05-campaign")

    # In French, from the switch in the header.
    browser.find_element(By.ID, "language-fr").click()
    wait.until(lambda b: b.execute_script("return document.documentElement.lang;") == "fr")
    assert "Entonnoir" in browser.page_source and "Télécharger le CSV" in browser.page_source
    screenshot("06-campaign-fr")

    # The CSV, downloaded by the browser.
    browser.find_element(By.ID, "csv").click()
    target = downloads / f"campaign-{campaign.pk}-timeline.csv"
    wait.until(lambda b: target.exists() and target.stat().st_size > 0)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert len(rows) == RECIPIENTS
    assert {row["message_1_status"] for row in rows} == {"read"}
    assert rows[0]["phone"] == "+33670000001" and rows[0]["name"] == "'=SUM(A1)"
    assert Message.objects.filter(kind="message_1", sent_at__isnull=False).count() == RECIPIENTS

    # One contact's reply, read where an operator looks: the campaign page (replied filter),
    # the contact page and the replies page.
    wait.until(lambda b: InboundMessage.objects.filter(outcome=InboundOutcome.MESSAGE_2).exists())
    reply = InboundMessage.objects.filter(outcome=InboundOutcome.MESSAGE_2).order_by("pk").first()
    browser.get(f"{live_server.url}/campaigns/{campaign.pk}/?status=replied")
    texts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#timeline .reply-text")]
    assert reply.text in texts, texts
    browser.get(f"{live_server.url}/contacts/{reply.contact_id}/")
    assert reply.text in [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#conversation .reply-text")]
    screenshot("07-contact-conversation")
    browser.get(f"{live_server.url}/replies/")
    assert reply.text in [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#replies .reply-text")]
    screenshot("08-replies")
