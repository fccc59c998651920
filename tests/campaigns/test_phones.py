import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.phones import phone_normalize
from config.logging import phone_mask


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "FR", "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("+1 (650) 253-0000", "FR", "+16502530000"),
        ("07911 123456", "GB", "+447911123456"),
        ("  0612345678\t", "FR", "+33612345678"),
    ],
)
def test_national_and_international_formats_become_e164(raw, region, expected):
    assert phone_normalize(raw, region=region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("hello", "not a phone number"),
        ("06 12", "too short"),
        ("+999 123 456 789", "unknown country code"),
        ("+33 6 12 34 56 78 90 12 34", "too long"),
        ("+33 0 00 00 00 00", "not a valid number"),
    ],
)
def test_garbage_is_rejected_with_the_value_and_the_reason(raw, reason):
    with pytest.raises(ValidationError) as error:
        phone_normalize(raw, region="FR")
    message = error.value.messages[0]
    assert repr(raw.strip()) in message
    assert reason in message


def _valid_numbers():
    """Every region's example mobile and fixed-line numbers, in E.164."""
    numbers = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None and phonenumbers.is_valid_number(example):
                numbers.append(example)
    return numbers


@settings(max_examples=300)
@given(number=st.sampled_from(_valid_numbers()), region=st.sampled_from(["FR", "GB", "US", "SN", "MA"]))
def test_any_valid_number_round_trips_in_any_written_form(number, region):
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    assert phone_normalize(e164, region=region) == e164
    assert phone_normalize(international, region=region) == e164
    assert phone_normalize(phone_normalize(e164, region=region), region=region) == e164


@settings(max_examples=300)
@given(raw=st.text(max_size=30))
def test_any_text_is_either_e164_or_a_validation_error(raw):
    try:
        result = phone_normalize(raw)
    except ValidationError as error:
        assert error.code == "invalid_phone"
    else:
        assert phonenumbers.is_valid_number(phonenumbers.parse(result))
        assert result.startswith("+")


def test_masked_phone_keeps_only_prefix_and_last_digits():
    assert phone_mask("+33612345678") == "+336•••••678"
    assert "12345" not in phone_mask("+33612345678")
