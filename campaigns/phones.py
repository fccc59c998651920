"""Phone numbers: every number Relance stores is E.164 (`+33612345678`).

Operators type numbers in every national format; `phonenumbers` (Google's libphonenumber)
knows each country's numbering plan far better than a regex of ours could. Masking a
number for a log line is log redaction's job (`config.logging.phone_mask`).
"""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _
from phonenumbers import NumberParseException, ValidationResult

# A database-level guard: whatever path writes a phone, the column only holds E.164.
E164_REGEX = r"^\+[1-9][0-9]{6,14}$"

# Lazy: shown in the operator's language (the import preview, the admin, the API).
_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: _("unknown country code (start with + and the code)"),
    NumberParseException.NOT_A_NUMBER: _("not a phone number"),
    NumberParseException.TOO_SHORT_AFTER_IDD: _("too short after the international prefix"),
    NumberParseException.TOO_SHORT_NSN: _("too short"),
    NumberParseException.TOO_LONG: _("too long"),
}
_POSSIBILITY_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: _("unknown country code"),
    ValidationResult.TOO_SHORT: _("too short"),
    ValidationResult.TOO_LONG: _("too long"),
    ValidationResult.INVALID_LENGTH: _("wrong number of digits"),
}


def phone_normalize(raw: object, *, region: str | None = None) -> str:
    """Return `raw` in E.164, or raise ValidationError naming the value and the reason.

    National numbers are read in `region` (default: settings.PHONE_DEFAULT_REGION).
    """
    text = str(raw if raw is not None else "").strip()
    region = region or settings.PHONE_DEFAULT_REGION
    if not text:
        raise _invalid(text, _("empty"))
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as error:
        raise _invalid(text, _PARSE_REASONS.get(error.error_type, str(error))) from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        raise _invalid(text, _POSSIBILITY_REASONS.get(possible, _("not a possible number")))
    if not phonenumbers.is_valid_number(number):
        where = phonenumbers.region_code_for_number(number) or region
        raise _invalid(text, _("not a valid number in %(region)s") % {"region": where})
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _invalid(value: str, reason: str) -> ValidationError:
    return ValidationError(
        _("%(value)r is not a usable phone number: %(reason)s."),
        code="invalid_phone",
        params={"value": value, "reason": reason},
    )


class E164PhoneField(models.CharField):
    """A CharField that normalises whatever it is given to E.164 on clean and on save."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 16)
        super().__init__(*args, **kwargs)

    # Not in to_python: that also runs for lookups, and a search must not raise.
    def clean(self, value, model_instance):
        value = super().clean(value, model_instance)
        return phone_normalize(value) if value else value

    def pre_save(self, model_instance, add):
        value = getattr(model_instance, self.attname)
        if value:
            value = phone_normalize(value)
            setattr(model_instance, self.attname, value)
        return value
