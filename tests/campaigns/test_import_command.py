"""`manage.py import_contacts`: counts, invalid rows with line numbers, progress, exit codes."""

import pytest

from campaigns.models import Category, Contact

pytestmark = pytest.mark.django_db

MESSY = "\ufeffTéléphone;Prénom;Nom\n06 12 34 56 78;Ana;Durand\n\nabc;X;Y\n+33612345678;Anna;\n"


@pytest.fixture
def run(manage):
    return lambda *arguments: manage("import_contacts", *arguments)


@pytest.fixture
def csv_file(tmp_path):
    def write(text: str | bytes):
        path = tmp_path / "contacts.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


def test_imports_and_prints_counts_and_invalid_rows(run, csv_file):
    code, out, err = run(csv_file(MESSY), "--category", "Salon 2026")

    assert code == 0
    assert "Imported 3 rows into “Salon 2026”: 1 new, 0 updated, 1 duplicates merged, 1 invalid." in out
    assert "Line 4: 'abc' — not a phone number" in out
    assert "Line 5: duplicate, merged into line 2" in out
    assert "Category “Salon 2026” created." in out
    assert "[##############################] 3/3 rows" in err
    saved = Contact.objects.get()
    assert (saved.phone, saved.first_name, saved.name) == ("+33612345678", "Anna", "Durand")
    assert list(saved.categories.values_list("name", flat=True)) == ["Salon 2026"]


def test_dry_run_writes_nothing(run, csv_file):
    code, out, _err = run(csv_file(MESSY), "--category", "Salon", "--dry-run")

    assert code == 0
    assert "Would import 3 rows" in out and "Dry run: nothing was written." in out
    assert not Contact.objects.exists() and not Category.objects.exists()


def test_region_option_reads_national_numbers(run, csv_file):
    code, _out, _err = run(csv_file("phone\n020 7946 0958\n"), "--category", "UK", "--region", "gb")
    assert code == 0
    assert Contact.objects.filter(phone="+442079460958").exists()


@pytest.mark.parametrize(
    "content, message",
    [(b"name\nAna\n", "No phone column"), (b"phone\n0612345678\n\xe9\n", "Line 3 cannot be read")],
)
def test_an_unusable_file_exits_1_and_writes_nothing(run, csv_file, content, message):
    code, _out, err = run(csv_file(content), "--category", "X")
    assert code == 1
    assert "Nothing imported" in err and message in err
    assert not Contact.objects.exists() and not Category.objects.exists()


def test_a_missing_file_exits_1(run, tmp_path):
    code, _out, err = run(tmp_path / "nope.csv", "--category", "X")
    assert code == 1 and "No such file" in err
