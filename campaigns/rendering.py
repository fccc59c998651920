"""Personalised messages: `{{ first_name }}`, `{{ name }}` and the contact's own fields.

Deliberately not Django templates: operators write plain text, and only `{{ variable }}`
is special. A variable a contact lacks takes the campaign's fallback for it; without
one it is reported before launch (see `missing_variables`), never sent as a blank.
"""

import re

from django.utils.translation import gettext as _

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


# --- Variants of Message 1: spintax -----------------------------------------------------------
#
# `{Bonjour|Salut|Hello} {{ first_name }}` is three texts. A group is `{` choices separated by
# `|` `}`, choices may hold groups of their own, and `{{ … }}` is always a variable (or text
# written as it is), never a group. Every text is expanded at launch into its variants; a
# brace that is not part of either is an error shown in the editor, so no recipient ever gets
# a message with braces in it.

VARIANT_LIMIT = 100


class SpintaxError(ValueError):
    """The text's braces do not make valid groups; the message says where and why."""


def spintax_expand(text: str) -> list[str]:
    """Every text `text` stands for, in order, without repeats; raises SpintaxError."""
    choices, position = _sequence(text or "", 0, inside=False)
    if position < len(text or ""):  # a `}` or `|` closed nothing: only possible at the top
        raise SpintaxError(_spintax_message("unopened", position))
    return list(dict.fromkeys(choices))


def _sequence(text: str, position: int, *, inside: bool) -> tuple[list[str], int]:
    """The texts of the sequence starting at `position`, up to a `|` or `}` of an enclosing group."""
    texts, literal = [""], []
    while position < len(text):
        char = text[position]
        if text.startswith("{{", position):
            end = text.find("}}", position + 2)
            if end < 0:
                raise SpintaxError(_spintax_message("unclosed_variable", position))
            literal.append(text[position : end + 2])
            position = end + 2
        elif char == "{":
            texts = _product(texts, ["".join(literal)])
            options, position = _group(text, position)
            texts, literal = _product(texts, options), []
        elif char == "}" and not inside:
            raise SpintaxError(_spintax_message("unopened", position))
        elif char in "|}" and inside:
            break
        else:
            literal.append(char)
            position += 1
    return _product(texts, ["".join(literal)]), position


def _group(text: str, start: int) -> tuple[list[str], int]:
    """The choices of the group opening at `start`, and the position after its `}`."""
    options, position, count = [], start + 1, 0
    while True:
        choices, position = _sequence(text, position, inside=True)
        options += choices
        count += 1
        if position >= len(text):
            raise SpintaxError(_spintax_message("unclosed", start))
        if text[position] == "}":
            break
        position += 1  # past the `|`
    if count < 2:
        raise SpintaxError(_spintax_message("single", start))
    return options, position + 1


def _product(prefixes: list[str], suffixes: list[str]) -> list[str]:
    if len(prefixes) * len(suffixes) > VARIANT_LIMIT:
        raise SpintaxError(_spintax_message("too_many", None))
    return [prefix + suffix for prefix in prefixes for suffix in suffixes]


def _spintax_message(problem: str, position: int | None) -> str:
    where = {"position": (position or 0) + 1, "limit": VARIANT_LIMIT}
    return {
        "unclosed": _("The “{” at character %(position)d is never closed by a “}”."),
        "unopened": _("The “}” at character %(position)d closes no “{”."),
        "unclosed_variable": _("The “{{” at character %(position)d is never closed by “}}”."),
        "single": _(
            "The group at character %(position)d has a single choice: write {Hello|Hi} "
            "with “|” between the choices, or remove the braces."
        ),
        "too_many": _("These choices make more than %(limit)d different texts: use fewer groups."),
    }[problem] % where


def message_1_variants(text: str, others: list[str] | None = None) -> list[str]:
    """Every variant of Message 1: those of its text, then those of each other variant, once each."""
    found = [variant for source in [text, *(others or [])] for variant in spintax_expand(source)]
    variants = list(dict.fromkeys(found))
    if len(variants) > VARIANT_LIMIT:
        raise SpintaxError(_spintax_message("too_many", None))
    return variants


def variant_counts(variants: int, recipients: int) -> list[int]:
    """How many recipients get each variant when they are dealt in turn: at most one apart."""
    return [recipients // variants + (number < recipients % variants) for number in range(variants)]
