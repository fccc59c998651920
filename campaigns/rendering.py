"""Personalised messages: `{{ first_name }}`, `{{ name }}` and the contact's own fields.

Deliberately not Django templates: operators write plain text, and only `{{ variable }}`
is special. A variable a contact lacks takes the campaign's fallback for it; without
one it is reported before launch (see `missing_variables`), never sent as a blank.
"""

import re

# A name starts with a letter (any alphabet) or _, and may hold words separated by single
# spaces, digits, dots, hyphens and apostrophes: a contact's own fields are named after
# the columns of the file they came from ("Code postal", "Âge"), and such a name must never
# go out as written. "{{1}}" or "{{ 50 % off }}" stay text, as before.
VARIABLE = re.compile(r"{{\s*([^\W\d][\w.'’-]*(?: [\w.'’-]+)*)\s*}}")
BUILTIN_VARIABLES = ("first_name", "name", "phone")


def variables_in(text: str) -> list[str]:
    """The distinct variable names used in `text`, in order of first use."""
    return list(dict.fromkeys(VARIABLE.findall(text or "")))


def contact_values(contact) -> dict[str, str]:
    """Everything a message may use about a contact: its built-in fields, then its own fields."""
    values = {key: str(value) for key, value in (contact.fields or {}).items() if value not in (None, "")}
    for key in BUILTIN_VARIABLES:
        if getattr(contact, key, ""):
            values[key] = getattr(contact, key)
    return values


def render(text: str, values: dict[str, str], fallbacks: dict[str, str] | None = None) -> str:
    """`text` with each variable replaced by the contact's value, else its fallback.

    A variable with neither raises KeyError naming it: callers check before rendering.
    """
    fallbacks = fallbacks or {}

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if values.get(name, "") != "":
            return values[name]
        if name in fallbacks:
            return fallbacks[name]
        raise KeyError(name)

    return VARIABLE.sub(replace, text or "")


def render_for_contact(text: str, contact, fallbacks: dict[str, str] | None = None) -> str:
    return render(text, contact_values(contact), fallbacks)
