"""The operator pages in French: from the browser's language, the switch, or the default setting."""

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils.translation.template import templatize

from tests.operator.test_campaign_page import seeded_campaign

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
CATALOGUE = BASE_DIR / "locale" / "fr" / "LC_MESSAGES" / "django.mo"
# What xgettext reads in a template once Django has turned its tags into gettext calls.
_CALL = re.compile(r"\bn?gettext\(\s*u?('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")


def test_pages_speak_french_to_a_french_browser(viewer, fake_clock):
    campaign = seeded_campaign()
    dashboard = viewer.get(reverse("dashboard"), HTTP_ACCEPT_LANGUAGE="fr-FR,fr;q=0.9").content.decode()
    assert '<html lang="fr">' in dashboard
    assert "Tableau de bord" in dashboard and "Campagnes en cours" in dashboard
    page = viewer.get(
        reverse("campaign-detail", args=[campaign.pk]), HTTP_ACCEPT_LANGUAGE="fr"
    ).content.decode()
    assert "Entonnoir" in page and "Message 2 envoyé" in page and "en cours d’envoi" in page


def test_the_language_switch_overrides_the_browser(viewer):
    response = viewer.post(reverse("set_language"), {"language": "fr", "next": reverse("campaign-list")})
    assert response.status_code == 302 and response["Location"] == reverse("campaign-list")
    page = viewer.get(reverse("campaign-list"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Campagnes" in page and "Aucune campagne" in page


def test_the_default_language_is_a_setting(viewer, settings):
    settings.LANGUAGE_CODE = "fr"
    assert "Tableau de bord" in viewer.get(reverse("dashboard"), HTTP_ACCEPT_LANGUAGE="de").content.decode()


def _template_strings():
    for path in sorted((BASE_DIR / "templates").rglob("*.html")):
        for literal in _CALL.findall(templatize(path.read_text(), origin=str(path))):
            yield path.relative_to(BASE_DIR / "templates"), ast.literal_eval(literal)


def test_every_string_of_the_templates_has_a_compiled_french_translation():
    """A string added to a template without running makemessages and compiling the .mo fails here."""
    with CATALOGUE.open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)._catalog
    strings = list(_template_strings())
    assert len(strings) > 150
    missing = [
        (str(path), text) for path, text in strings if text not in catalogue and (text, 0) not in catalogue
    ]
    assert missing == []


def test_the_admin_names_its_sections_and_models_in_french(operator):
    page = operator.get(reverse("admin:index"), HTTP_ACCEPT_LANGUAGE="fr").content.decode()
    for name in ("Campagnes", "Messagerie", "Supervision", "Appareils", "Événements webhook", "Incidents"):
        assert name in page, name
    for english in ("Messaging", "Monitoring", "Devices", "Daily reports"):
        assert f">{english}<" not in page, english


def test_an_unusable_phone_is_explained_in_french(operator):
    response = operator.post(
        reverse("admin:campaigns_contact_add"),
        {"phone": "06 12", "fields": "{}", "whatsapp_status": "unknown"},
        HTTP_ACCEPT_LANGUAGE="fr",
    )
    assert "n’est pas un numéro de téléphone utilisable : trop court." in response.content.decode()
