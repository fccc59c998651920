"""Excel (.xlsx) import: the same rows, errors, line numbers and dry run as CSV, through the
importer, `manage.py import_contacts` and the admin; wrong types and sizes refused with the reason."""

import csv
import datetime
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from campaigns.importing import ImportFailed, contacts_import
from campaigns.models import Category, Contact

pytestmark = pytest.mark.django_db

ROWS = [
    ["Téléphone", "Prénom", "Nom", "Ville"],
    ["06 12 34 56 78", "Ana", "Durand", "Lyon"],
    [None, None, None, None],  # a blank row: still counted in the row numbers
    ["abc", "X", "Y", "Z"],
    [33612345678, "Anna", None, None],  # a phone typed as a number, a duplicate of row 2
    ["0612345679", "Bob", "", datetime.datetime(2026, 3, 1)],
]


def xlsx(rows, *, sheet_title: str = "Contacts") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = sheet_title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def as_csv(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out, delimiter=";").writerows([["" if cell is None else cell for cell in row] for row in rows])
    return out.getvalue().encode()


def outcome(report) -> tuple:
    contacts = sorted(Contact.objects.values_list("phone", "first_name", "name", "fields"))
    invalid = [(row.line, row.value, row.reason) for row in report.invalid]
    duplicates = [(row.line, row.merged_into) for row in report.duplicates]
    counts = (report.rows, report.new, report.updated, report.duplicate_count, report.invalid_count)
    return counts, invalid, duplicates, report.columns, contacts


def test_an_xlsx_imports_with_row_numbers_as_excel_shows_them():
    report = contacts_import(file=io.BytesIO(xlsx(ROWS)), category="Salon")

    assert (report.rows, report.new, report.duplicate_count, report.invalid_count) == (4, 2, 1, 1)
    assert [(row.line, row.value) for row in report.invalid] == [(4, "abc")]
    assert [(row.line, row.merged_into) for row in report.duplicates] == [(5, 2)]
    ana = Contact.objects.get(phone="+33612345678")
    assert (ana.first_name, ana.name, ana.fields) == ("Anna", "Durand", {"Ville": "Lyon"})
    assert Contact.objects.get(phone="+33612345679").fields == {"Ville": "2026-03-01"}


def test_a_dry_run_of_an_xlsx_counts_the_same_and_writes_nothing():
    report = contacts_import(file=io.BytesIO(xlsx(ROWS)), category="Salon", dry_run=True)
    assert (report.new, report.invalid_count) == (2, 1)
    assert not Contact.objects.exists() and not Category.objects.exists()


CELL = st.one_of(
    st.none(),
    st.sampled_from(["0612345678", "+33 6 12 34 56 79", "06.12.34.56.80", "abc", "", " Lyon "]),
    st.text(alphabet="abcéà -'0123456789", max_size=6),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(CELL, min_size=3, max_size=3), max_size=6))
def test_an_xlsx_and_the_same_table_as_csv_import_alike(body):
    """Whatever the cells, the two formats give the same counts, errors, lines and contacts."""
    rows = [["phone", "prénom", "ville"], *body]
    results = []
    for content in (as_csv(rows), xlsx(rows)):
        report = contacts_import(file=io.BytesIO(content), category="Same", dry_run=False)
        results.append(outcome(report))
        Contact.objects.all().delete()
        Category.objects.all().delete()
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "content, reason",
    [
        (xlsx([["name", "city"], ["Ana", "Lyon"]]), "No phone column"),
        (xlsx([]), "The file is empty"),
        (b"PK\x03\x04 not really a zip", "not an Excel (.xlsx) workbook"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), "old Excel (.xls)"),
        (b"%PDF-1.7\n" + bytes(100), "neither a CSV file nor an Excel (.xlsx) workbook"),
        ("phone\n0612345678\n".encode("utf-16"), "neither a CSV file nor an Excel"),
    ],
)
def test_a_file_of_the_wrong_type_is_refused_with_the_reason(content, reason):
    with pytest.raises(ImportFailed, match=re.escape(reason)):
        contacts_import(file=io.BytesIO(content), category="X")
    assert not Category.objects.exists()


def test_a_file_over_the_size_limit_is_refused(settings):
    settings.IMPORT_MAX_MB = 0.001
    with pytest.raises(ImportFailed, match=re.escape("at most 0.001 MB can be imported")):
        contacts_import(file=io.BytesIO(as_csv(ROWS * 20)), category="X")


# --- The command ------------------------------------------------------------------------------


def test_the_command_imports_an_xlsx_with_its_row_numbers(manage, tmp_path):
    path = tmp_path / "contacts.xlsx"
    path.write_bytes(xlsx(ROWS))

    code, out, err = manage("import_contacts", path, "--category", "Salon 2026")

    assert code == 0
    assert "Imported 4 rows into “Salon 2026”: 2 new, 0 updated, 1 duplicates merged, 1 invalid." in out
    assert "Line 4: 'abc' — not a phone number" in out
    assert "Line 5: duplicate, merged into line 2" in out
    assert "/4 rows" in err
    assert Contact.objects.count() == 2


def test_the_command_reads_the_content_not_the_name(manage, tmp_path):
    path = tmp_path / "contacts.csv"  # an .xlsx misnamed
    path.write_bytes(xlsx(ROWS))
    code, out, _err = manage("import_contacts", path, "--category", "Salon", "--dry-run")
    assert code == 0 and "Would import 4 rows" in out
    assert not Contact.objects.exists()


def test_the_command_refuses_a_pdf_with_exit_code_1(manage, tmp_path):
    path = tmp_path / "contacts.xlsx"
    path.write_bytes(b"%PDF-1.7\n" + bytes(100))
    code, _out, err = manage("import_contacts", path, "--category", "X")
    assert code == 1 and "neither a CSV file nor an Excel" in err


# --- The admin --------------------------------------------------------------------------------


@pytest.fixture
def operator(client, django_user_model, settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "imports"
    client.force_login(django_user_model.objects.create_superuser("operator", "op@example.com", None))
    return client


def upload(client, content: bytes, name: str = "contacts.xlsx"):
    data = {"file": SimpleUploadedFile(name, content), "category": "Salon", "region": "FR"}
    return client.post(reverse("admin:campaigns_contact_import"), data)


def test_the_admin_previews_then_imports_an_xlsx(operator):
    preview = upload(operator, xlsx(ROWS))

    page = preview.content.decode()
    assert '<td id="import-invalid">1</td>' in page and "not a phone number" in page
    assert not Contact.objects.exists()
    confirm = {"token": preview.context["token"], "category": "Salon", "region": "FR"}
    response = operator.post(reverse("admin:campaigns_contact_import"), confirm, follow=True)
    assert "4 rows imported into “Salon”: 2 new" in str(list(response.context["messages"])[0])
    assert Category.objects.get(name="Salon").contacts.count() == 2


def test_the_admin_refuses_a_wrong_type_and_a_file_too_large(operator, settings):
    page = upload(operator, b"\xd0\xcf\x11\xe0" + bytes(600), name="old.xls").content.decode()
    assert "old Excel (.xls) file: save it as .xlsx" in page

    settings.IMPORT_MAX_MB = 0.0001
    page = upload(operator, xlsx(ROWS)).content.decode()
    assert "at most 0.0001 MB can be imported" in page
    assert not Category.objects.exists()
