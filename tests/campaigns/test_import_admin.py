"""The admin import page: upload → preview (nothing written) → confirm (written)."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from campaigns.models import Category, Contact
from tests.factories import make_contact

pytestmark = pytest.mark.django_db

IMPORT_URL = "admin:campaigns_contact_import"
CSV = (
    "téléphone;prénom;nom;ville\n06 12 34 56 78;Ana;Durand;Lyon\nabc;X;Y;Z\n"
    "0612345678;;Martin;\n0612345679;Bob;;\n"
)


@pytest.fixture(autouse=True)
def upload_dir(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "imports"
    return settings.IMPORT_UPLOAD_DIR


@pytest.fixture
def operator(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", None))
    return client


def upload(client, text: str = CSV, **form):
    data = {"file": SimpleUploadedFile("contacts.csv", text.encode()), "category": "Salon", "region": "fr"}
    return client.post(reverse(IMPORT_URL), {**data, **form})


def test_the_contact_list_links_to_the_import_page(operator):
    page = operator.get(reverse("admin:campaigns_contact_changelist")).content.decode()
    assert reverse(IMPORT_URL) in page


def test_upload_shows_a_preview_and_writes_nothing(operator, upload_dir):
    make_contact(phone="+33612345679")
    response = upload(operator)

    assert response.status_code == 200
    report = response.context["report"]
    assert (report.new, report.updated, report.duplicate_count, report.invalid_count) == (1, 1, 1, 1)
    page = response.content.decode()
    assert '<td id="import-invalid">1</td>' in page and "not a phone number" in page
    assert "+33612345678" in page and "Lyon" in page  # the first rows
    assert Contact.objects.count() == 1 and not Category.objects.filter(name="Salon").exists()
    assert len(list(Path(upload_dir).iterdir())) == 1  # kept for the confirmation


def test_confirm_imports_the_previewed_file_and_removes_it(operator, upload_dir):
    preview = upload(operator)
    token = preview.context["token"]

    confirm = {"token": token, "category": "Salon", "region": "FR"}
    response = operator.post(reverse(IMPORT_URL), confirm, follow=True)

    category = Category.objects.get(name="Salon")
    assert response.redirect_chain[-1][0].endswith(f"?categories__id__exact={category.pk}")
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "4 rows imported into “Salon”: 2 new, 0 updated, 1 duplicates merged, 1 invalid rows skipped."
    ]
    ana = Contact.objects.get(phone="+33612345678")
    assert (ana.first_name, ana.name, ana.fields) == ("Ana", "Martin", {"ville": "Lyon"})
    assert category.contacts.count() == 2
    assert list(Path(upload_dir).iterdir()) == []


def test_an_unusable_file_is_refused_on_the_form(operator, upload_dir):
    response = upload(operator, text="name,city\nAna,Lyon\n")
    assert response.status_code == 200
    assert "No phone column" in response.content.decode()
    assert "report" not in response.context
    assert list(Path(upload_dir).iterdir()) == []


def test_a_forged_or_expired_token_imports_nothing(operator):
    response = operator.post(
        reverse(IMPORT_URL), {"token": "../../etc/passwd", "category": "Salon", "region": "FR"}, follow=True
    )
    assert "expired" in str(list(response.context["messages"])[0])
    assert not Contact.objects.exists()


def test_a_user_without_add_permission_cannot_import(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    client.force_login(user)
    assert upload(client).status_code == 403
    assert not Contact.objects.exists()
