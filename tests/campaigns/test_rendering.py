import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.models import Contact
from campaigns.rendering import render, render_for_contact, variables_in


def test_variables_are_listed_once_in_order_of_use():
    assert variables_in("{{ first_name }}, {{city}} — {{ first_name }}") == ["first_name", "city"]


def test_a_contact_message_uses_its_names_and_its_own_fields():
    contact = Contact(phone="+33612345678", first_name="Léa", name="Martin", fields={"city": "Lyon"})
    text = "Bonjour {{ first_name }} {{ name }} de {{city}}"
    assert render_for_contact(text, contact) == "Bonjour Léa Martin de Lyon"


def test_a_missing_variable_takes_the_fallback_else_is_an_error_naming_it():
    assert render("Bonjour {{ first_name }}", {}, {"first_name": "à vous"}) == "Bonjour à vous"
    with pytest.raises(KeyError, match="first_name"):
        render("Bonjour {{ first_name }}", {"first_name": ""})


def test_a_field_named_after_a_column_with_spaces_or_accents_is_a_variable():
    contact = Contact(phone="+33612345678", fields={"Code postal": "69001", "Âge": "42"})
    text = "CP {{ Code postal }}, {{Âge}} ans"
    assert variables_in(text) == ["Code postal", "Âge"]
    assert render_for_contact(text, contact) == "CP 69001, 42 ans"


@pytest.mark.parametrize("text", ["{{1}}", "{{ 50 % de remise }}", "{{ a\nb }}", "{{ }}"])
def test_braces_around_what_cannot_be_a_name_stay_text(text):
    assert variables_in(text) == [] and render(text, {}) == text


@given(text=st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=50))
def test_text_without_variables_is_sent_as_written(text):
    assert render(text, {}) == text
