"""Contact import (campaigns.importing): headers, delimiters, BOM, bad rows, merging, atomicity."""

import io

import phonenumbers
import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.importing import ImportFailed, contacts_import, header_normalize
from campaigns.models import Category, Contact
from tests.factories import make_category, make_contact

pytestmark = pytest.mark.django_db


def run_import(text: str, *, category: str = "Clients", encoding: str = "utf-8", **options):
    return contacts_import(file=io.BytesIO(text.encode(encoding)), category=category, **options)


def contact(phone: str) -> Contact:
    return Contact.objects.get(phone=phone)


@pytest.mark.parametrize(
    "phone, name, first_name",
    [
        ("téléphone", "nom", "prénom"),
        ("Telephone", "Name", "First_Name"),
        ("PHONE", "last_name", "firstname"),
        ("Tél", "NOM", "Prénom"),
        ("mobile", "Name", "first name"),
        (" Téléphone ", " Nom ", "PRENOM"),
    ],
)
@pytest.mark.parametrize("delimiter", [",", ";"])
def test_header_variants_and_delimiters_map_to_the_contact(phone, name, first_name, delimiter):
    text = delimiter.join([phone, name, first_name, "Ville"]) + "\n"
    text += delimiter.join(["06 12 34 56 78", "Durand", "Ana", "Lyon"]) + "\n"

    report = run_import(text)

    saved = contact("+33612345678")
    assert (saved.name, saved.first_name, saved.fields) == ("Durand", "Ana", {"Ville": "Lyon"})
    assert report.new == 1 and list(saved.categories.values_list("name", flat=True)) == ["Clients"]


def test_header_normalize_ignores_case_accents_spaces_and_dashes():
    assert header_normalize(" Téléphone ") == "telephone"
    assert header_normalize("Prénom") == "prenom"
    assert header_normalize("First-Name") == "first_name"


def test_tel_header_is_a_phone_column():
    run_import("tel\n0612345678\n")
    assert Contact.objects.filter(phone="+33612345678").exists()


def test_a_bom_is_ignored_and_the_first_header_still_recognised():
    report = run_import("\ufefftéléphone;prénom\n0612345678;Ana\n")
    assert report.new == 1 and contact("+33612345678").first_name == "Ana"
    assert report.columns == {"téléphone": "phone", "prénom": "first_name"}


def test_a_messy_file_gives_counts_and_line_numbered_errors():
    text = (
        "\ufeffTéléphone;Prénom;Nom;Ville\n"  # line 1
        "06 12 34 56 78;Ana;Durand;Lyon\n"  # 2
        "\n"  # 3: blank, ignored
        "abc;X;Y;Z\n"  # 4: not a number
        "+33 6 12 34 56 78;;Dupont;\n"  # 5: duplicate of 2
        "06 12;Bob;;\n"  # 6: too short
        ";Carl;;\n"  # 7: empty phone
        "0033 (0)6.12.34.56.79;Dee;Roy;Paris\n"  # 8
    )
    report = run_import(text)

    assert (report.rows, report.new, report.updated) == (6, 2, 0)
    assert (report.duplicate_count, report.invalid_count) == (1, 3)
    assert [(row.line, row.value) for row in report.invalid] == [(4, "abc"), (6, "06 12"), (7, "")]
    assert [row.reason for row in report.invalid] == ["not a phone number", "too short", "empty"]
    assert [(row.line, row.merged_into) for row in report.duplicates] == [(5, 2)]


def test_a_name_too_long_or_a_nul_byte_is_a_line_numbered_error_and_the_other_rows_import():
    text = (
        "phone;nom;prénom;ville\n"
        "0612345678;Durand;Ana;Lyon\n"  # 2
        f"0612345679;{'x' * 201};Bob;\n"  # 3
        f"0612345680;Roy;{'y' * 201};\n"  # 4
        "0612345681;Roy;Dee;Pa\x00ris\n"  # 5
    )
    report = run_import(text)

    assert [(row.line, row.value, row.reason) for row in report.invalid] == [
        (3, "0612345679", "name longer than 200 characters"),
        (4, "0612345680", "first name longer than 200 characters"),
        (5, "0612345681", "a cell holds a NUL character"),
    ]
    assert report.new == 1 and list(Contact.objects.values_list("phone", flat=True)) == ["+33612345678"]


def test_a_second_phone_column_is_kept_as_a_field_and_the_first_one_is_the_phone():
    report = run_import("mobile,phone,nom\n0612345678,,Ana\n0612345679,0145454545,Bob\n")

    assert report.invalid_count == 0 and report.new == 2
    assert report.columns == {"mobile": "phone", "phone": "fields", "nom": "name"}
    assert contact("+33612345678").name == "Ana"
    assert contact("+33612345679").fields == {"phone_2": "0145454545"}


def test_a_quoted_field_spanning_lines_keeps_later_line_numbers_right():
    report = run_import('phone,note\n0612345678,"two\nlines"\nnope,x\n')
    assert [row.line for row in report.invalid] == [4]
    assert contact("+33612345678").fields == {"note": "two\nlines"}


def test_duplicates_in_the_file_merge_later_non_empty_values_win():
    text = "phone,first_name,name,city,zip\n0612345678,Ana,Durand,Lyon,\n+33612345678,,Martin,,69001\n"
    report = run_import(text)

    saved = contact("+33612345678")
    assert (saved.first_name, saved.name) == ("Ana", "Martin")
    assert saved.fields == {"city": "Lyon", "zip": "69001"}
    assert (report.new, report.duplicate_count) == (1, 1)


def test_duplicates_across_chunks_merge_and_count_once(settings):
    settings.IMPORT_BATCH_SIZE = 2
    text = "phone,first_name\n0612345678,Ana\n0612345679,Bob\n0612345680,Cy\n0612345678,Anna\n"
    report = run_import(text)

    assert (report.new, report.updated, report.duplicate_count) == (3, 0, 1)
    assert [(row.line, row.merged_into) for row in report.duplicates] == [(5, 2)]
    assert contact("+33612345678").first_name == "Anna"


def test_an_existing_contact_is_updated_and_gains_the_category():
    old = make_category("Old")
    fields = {"a": "1", "b": "2"}
    make_contact(phone="+33612345678", first_name="Ana", name="", fields=fields, categories=[old])

    report = run_import("phone;nom;prénom;b;c\n06 12 34 56 78;Durand;;3;4\n", category="New")

    saved = contact("+33612345678")
    assert (report.new, report.updated) == (0, 1)
    assert (saved.first_name, saved.name) == ("Ana", "Durand")  # empty cells keep what was there
    assert saved.fields == {"a": "1", "b": "3", "c": "4"}
    assert set(saved.categories.values_list("name", flat=True)) == {"Old", "New"}
    assert Contact.objects.count() == 1


def test_importing_the_same_file_twice_adds_nothing():
    text = "phone\n0612345678\n0612345679\n"
    run_import(text)
    again = run_import(text)
    assert (again.new, again.updated) == (0, 2)
    assert Contact.objects.count() == 2
    assert Category.objects.get(name="Clients").contacts.count() == 2


def test_region_reads_national_numbers():
    run_import("phone\n020 7946 0958\n", region="GB")
    assert Contact.objects.filter(phone="+442079460958").exists()


def test_a_dry_run_writes_nothing_but_reports_the_same_counts():
    make_contact(phone="+33612345678")
    report = run_import("phone\n0612345678\n0612345679\nbad\n", category="Fresh", dry_run=True)

    assert (report.new, report.updated, report.invalid_count, report.category_created) == (1, 1, 1, True)
    assert Contact.objects.count() == 1
    assert not Category.objects.filter(name="Fresh").exists()


def test_a_file_that_is_not_utf8_half_way_writes_nothing(settings):
    settings.IMPORT_BATCH_SIZE = 1  # the first rows are already written when the bad byte comes
    data = b"phone\n0612345678\n0612345679\n0612345680,caf\xe9\n"
    with pytest.raises(ImportFailed, match="Line 4 cannot be read: it is not UTF-8"):
        contacts_import(file=io.BytesIO(data), category="Clients")
    assert Contact.objects.count() == 0
    assert not Category.objects.exists()


def test_a_database_failure_mid_import_writes_nothing(settings, monkeypatch):
    settings.IMPORT_BATCH_SIZE = 1
    from campaigns import importing

    calls = []
    original = importing._chunk_write

    def failing_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1/0")
        return original(*args, **kwargs)

    monkeypatch.setattr(importing, "_chunk_write", failing_second_chunk)
    with pytest.raises(Exception, match="division by zero"):
        run_import("phone\n0612345678\n0612345679\n")
    assert Contact.objects.count() == 0


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"name,city\nAna,Lyon\n", "No phone column"),
        (b"\xff\xfephone\n", "not UTF-8"),
    ],
)
def test_an_unusable_file_is_refused_with_a_reason(data, message):
    with pytest.raises(ImportFailed, match=message):
        contacts_import(file=io.BytesIO(data), category="Clients")
    assert not Category.objects.exists()


def test_progress_is_reported_after_each_chunk(settings):
    settings.IMPORT_BATCH_SIZE = 2
    seen = []
    run_import("phone\n0612345678\n0612345679\n0612345680\n", progress=seen.append)
    assert seen == [2, 3]


# --- Property: whatever the rows, one contact per distinct valid phone, all in the category ---

_VALID = ["+33612345678", "+33699887766", "+33145678901", "+447911123456", "+14155552671"]


def _formats(e164: str) -> st.SearchStrategy[str]:
    number = phonenumbers.parse(e164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    digits = e164[1:]
    written = [e164, international, f"00{digits}", f"00 {international[1:]}", international.replace(" ", ".")]
    if phonenumbers.region_code_for_number(number) == "FR":
        written += [national, national.replace(" ", ""), national.replace(" ", "-")]
        written.append(f"({national[:2]}) {national[3:]}")
    return st.sampled_from(written)


_row = st.one_of(
    st.sampled_from(_VALID).flatmap(lambda e164: _formats(e164).map(lambda raw: (e164, raw))),
    st.sampled_from(["", "abc", "12", "+999 123", "06 12", "0612345678901234"]).map(lambda raw: (None, raw)),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(_row, max_size=25), existing=st.lists(st.sampled_from(_VALID), unique=True, max_size=2))
def test_any_rows_leave_one_contact_per_distinct_valid_phone_in_the_category(rows, existing):
    Contact.objects.all().delete()
    Category.objects.all().delete()
    for phone in existing:
        make_contact(phone=phone)
    text = "phone;first_name\n" + "".join(f"{raw};x\n" for _e164, raw in rows)

    report = run_import(text, category="Prop")

    expected = {e164 for e164, _raw in rows if e164}
    in_category = set(Category.objects.get(name="Prop").contacts.values_list("phone", flat=True))
    assert in_category == expected
    assert set(Contact.objects.values_list("phone", flat=True)) == expected | set(existing)
    assert report.invalid_count == sum(1 for e164, _raw in rows if e164 is None)
    assert report.new + report.updated + report.duplicate_count + report.invalid_count == len(rows)
    assert report.updated == len(expected & set(existing))


def test_columns_without_a_header_are_left_out_and_a_nul_in_a_header_is_dropped():
    report = run_import("phone,nom,,,vil\x00le\n0612345678,Ana,x,y,Lyon\n")
    assert report.new == 1 and report.invalid_count == 0
    assert contact("+33612345678").fields == {"ville": "Lyon"}
