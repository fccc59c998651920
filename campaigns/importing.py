"""Importing contacts from a CSV or Excel (.xlsx) file: parse in bounded chunks, merge set-based.

What the file is comes from its content, never its name: an .xlsx workbook is a zip, read
by openpyxl in read-only mode (its first sheet, row by row, so memory stays flat); anything
else with no NUL byte is CSV. A CSV is read as a stream (UTF-8, with or without BOM; `,` or
`;` sniffed from the header line). Both give the same (line, values) rows, matched against
the same headers, and are handled `IMPORT_BATCH_SIZE` rows at a time: each chunk is merged by
phone in Python, then written by `contacts.contacts_upsert` (one INSERT … ON CONFLICT
(phone) DO UPDATE and one INSERT into the category table: the merge rule the API's bulk
action and the demo share). The whole file runs in ONE transaction: an import that
fails half-way (a byte that is not UTF-8 on line 80,000, a database error) writes
nothing at all, and a dry run is the same work rolled back. Memory stays bounded: only
the current chunk, the distinct phones seen so far (to report in-file duplicates) and a
capped list of row details are kept.
"""

from __future__ import annotations

import csv
import datetime
import io
import itertools
import os
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from campaigns.contacts import contacts_upsert
from campaigns.models import Category, Contact
from campaigns.phones import phone_normalize

# Normalised header → contact attribute; any other column goes to `fields`.
HEADER_ALIASES = {
    **dict.fromkeys(("telephone", "phone", "tel", "mobile"), "phone"),
    **dict.fromkeys(("nom", "name", "last_name"), "name"),
    **dict.fromkeys(("prenom", "first_name", "firstname"), "first_name"),
}
BUILTIN_COLUMNS = ("phone", "name", "first_name")
NAME_MAX_LENGTH = Contact._meta.get_field("name").max_length  # first_name has the same
DETAIL_LIMIT = 1000  # invalid and duplicate rows listed; the counts stay exact beyond it
SAMPLE_ROWS = 10


class ImportFailed(Exception):
    """The file cannot be imported at all (unreadable, not CSV nor .xlsx, no phone column).

    Nothing is written."""


@dataclass(frozen=True)
class InvalidRow:
    line: int
    value: str
    reason: str


@dataclass(frozen=True)
class DuplicateRow:
    line: int
    merged_into: int  # the line where this phone first appears


@dataclass(frozen=True)
class ParsedRow:
    line: int
    phone: str
    name: str
    first_name: str
    fields: dict


@dataclass
class ImportReport:
    """What an import did (or, on a dry run, would do)."""

    category: str
    dry_run: bool
    rows: int = 0  # data rows read, blank lines left out
    new: int = 0
    updated: int = 0
    duplicate_count: int = 0
    invalid_count: int = 0
    category_created: bool = False
    duplicates: list[DuplicateRow] = field(default_factory=list)
    invalid: list[InvalidRow] = field(default_factory=list)
    sample: list[ParsedRow] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)  # header as written → where it goes

    @property
    def imported(self) -> int:
        return self.new + self.updated

    def add_invalid(self, row: InvalidRow) -> None:
        self.invalid_count += 1
        if len(self.invalid) < DETAIL_LIMIT:
            self.invalid.append(row)

    def add_duplicate(self, row: DuplicateRow) -> None:
        self.duplicate_count += 1
        if len(self.duplicates) < DETAIL_LIMIT:
            self.duplicates.append(row)


# --- Entry point ------------------------------------------------------------------------------


def contacts_import(
    *,
    file: IO[bytes],
    category: str,
    region: str | None = None,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the CSV or .xlsx `file` (binary, seekable) into the category `category` (created if missing).

    Raises ImportFailed, having written nothing, when the file cannot be read or parsed.
    `progress(rows_read)` is called after each chunk.
    """
    report = ImportReport(category=category, dry_run=dry_run)
    region = region or settings.PHONE_DEFAULT_REGION
    with transaction.atomic():
        target, report.category_created = Category.objects.get_or_create(name=category)
        rows = _file_rows(file, report)
        _import_rows(rows, report, category_id=target.pk, region=region, progress=progress)
        # The same statements ran, so the counts are exact; undoing them is the dry run.
        transaction.set_rollback(dry_run)
    return report


def _import_rows(rows, report: ImportReport, *, category_id: int, region: str, progress) -> None:
    seen: dict[str, int] = {}  # phone → first line: in-file duplicates across chunks
    batch = settings.IMPORT_BATCH_SIZE
    for chunk in _chunks(rows, batch):
        merged = _chunk_merge(chunk, report, seen=seen, region=region)
        _chunk_write(merged, report, category_id=category_id, seen=seen)
        if progress:
            progress(report.rows)


def _chunks(rows: Iterable, size: int) -> Iterator[list]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# --- Reading ------------------------------------------------------------------------------------

ZIP_MAGIC = b"PK\x03\x04"
OLE2_MAGIC = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (.xls), old Word documents
# What people pick by mistake instead of their contact list: PDF, PNG, JPEG, GIF, gzip.
OTHER_MAGICS = (b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"\x1f\x8b")
SNIFF_BYTES = 4096


def upload_refusal(size: int) -> str | None:
    """Why a file of `size` bytes is refused before it is read, or None (the admin's form asks too)."""
    limit = settings.IMPORT_MAX_MB * 1024 * 1024
    if size > limit:
        facts = {"size": size / 1024 / 1024, "limit": settings.IMPORT_MAX_MB}
        return _("The file is %(size).1f MB; at most %(limit)g MB can be imported.") % facts
    return None


def file_kind(file: IO[bytes]) -> str:
    """ "csv" or "xlsx", read from the file's first bytes (its name may lie); ImportFailed otherwise."""
    if isinstance(file, io.TextIOBase):
        raise TypeError("contacts_import reads bytes: open the file in binary mode")
    start = file.read(SNIFF_BYTES)
    file.seek(0)
    if start.startswith(ZIP_MAGIC):
        return "xlsx"
    if start.startswith(OLE2_MAGIC):
        raise ImportFailed(_("This is an old Excel (.xls) file: save it as .xlsx or as CSV UTF-8."))
    # A NUL in a cell is that row's error; a file full of them (binary, UTF-16) is no CSV at all.
    if start.startswith(OTHER_MAGICS) or start.count(b"\x00") * 10 > len(start):
        raise ImportFailed(_("This is neither a CSV file nor an Excel (.xlsx) workbook."))
    return "csv"


def rows_expected(file: IO[bytes]) -> int:
    """Data rows the file should hold, for a progress bar (blank lines make it a little high)."""
    if file_kind(file) == "xlsx":
        from openpyxl import load_workbook

        workbook = load_workbook(file, read_only=True)
        try:
            return max((workbook.worksheets[0].max_row or 1) - 1, 0)
        finally:
            workbook.close()
            file.seek(0)
    count, last = 0, b""
    while block := file.read(1 << 20):
        count += block.count(b"\n")
        last = block
    file.seek(0)
    ends_open = count and not last.endswith(b"\n")
    return max(count + bool(ends_open) - 1, 0)


def _file_rows(file: IO[bytes], report: ImportReport) -> Iterator[tuple[int, dict]]:
    if refusal := upload_refusal(_size(file)):
        raise ImportFailed(refusal)
    return _xlsx_rows(file, report) if file_kind(file) == "xlsx" else _csv_rows(file, report)


def _size(file: IO[bytes]) -> int:
    try:
        return os.fstat(file.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        size = file.seek(0, io.SEEK_END)
        file.seek(0)
        return size


def _xlsx_rows(file: IO[bytes], report: ImportReport) -> Iterator[tuple[int, dict]]:
    """(row number, values) for each non-blank row of the first sheet after its header row."""
    sheet_rows = _xlsx_sheet_rows(file)
    header = next(sheet_rows, None)
    if header is None or not any(cell.strip() for cell in header[1]):
        raise ImportFailed(_("The file is empty: expected a header line with a phone column."))
    keys = _header_keys(header[1], report)
    for line, cells in sheet_rows:
        if any(cell.strip() for cell in cells):
            report.rows += 1
            yield line, _row_values(keys, cells)


def _xlsx_sheet_rows(file: IO[bytes]) -> Iterator[tuple[int, list[str]]]:
    # Imported here: only an .xlsx import pays for loading openpyxl.
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(file, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        reason = _("This zip file is not an Excel (.xlsx) workbook.")
        raise ImportFailed(reason) from error
    try:
        sheet = workbook.worksheets[0]
        # Row numbers as Excel shows them: a blank row in the sheet still counts.
        for cells in sheet.iter_rows():
            cells = [cell for cell in cells if getattr(cell, "row", None)]
            if cells:
                yield cells[0].row, _cell_texts(cells)
    finally:
        workbook.close()


def _cell_texts(cells) -> list[str]:
    """Each cell as the text a CSV export would hold, in column order (gaps are empty)."""
    texts: list[str] = []
    for cell in cells:
        texts += [""] * (cell.column - 1 - len(texts))
        texts.append(_cell_text(cell.value))
    return texts


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone typed as a number: 33612345678.0 is 33612345678
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _csv_rows(file: IO[bytes], report: ImportReport) -> Iterator[tuple[int, dict]]:
    """(line, {attribute or field: value}) for each non-blank data row; counts them."""
    lines = _decoded_lines(file)
    header_line = next(lines, "")
    if not header_line.strip():
        raise ImportFailed(_("The file is empty: expected a header line with a phone column."))
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(itertools.chain([header_line], lines), delimiter=delimiter)
    keys = _header_keys(_csv_next(reader) or [], report)
    previous_end = reader.line_num
    while (cells := _csv_next(reader)) is not None:
        line, previous_end = previous_end + 1, reader.line_num
        if any(cell.strip() for cell in cells):
            report.rows += 1
            yield line, _row_values(keys, cells)


def _decoded_lines(file: IO[bytes]) -> Iterator[str]:
    """The file's lines as text. Decoded one by one, so that a byte that is not UTF-8 is
    reported on its own line (a TextIOWrapper would fail on a whole 8 KB block)."""
    for number, raw in enumerate(file, start=1):
        try:
            # utf-8-sig drops a BOM, which can only be at the start of line 1.
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            reason = _("it is not UTF-8 text (save the file as “CSV UTF-8”)")
            raise _unreadable(number, reason) from None


def _csv_next(reader) -> list[str] | None:
    try:
        return next(reader)
    except StopIteration:
        return None
    except csv.Error as error:
        raise _unreadable(reader.line_num, str(error)) from error


def _unreadable(line: int, reason: str) -> ImportFailed:
    return ImportFailed(_("Line %(line)d cannot be read: %(reason)s.") % {"line": line, "reason": reason})


def header_normalize(header: str) -> str:
    """`" Téléphone "` → `telephone`, `First name` → `first_name`: how aliases are matched."""
    decomposed = unicodedata.normalize("NFKD", header.strip().lower())
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return "_".join(plain.replace("-", " ").split())


def _header_keys(headers: list[str], report: ImportReport) -> list[str | None]:
    """Where each column goes: a built-in attribute (first such column wins), a field, or nowhere."""
    keys: list[str | None] = []
    for number, given in enumerate(headers, start=1):
        header = given.replace("\x00", "")  # a field's name is a JSON key: no NUL in it
        alias = HEADER_ALIASES.get(header_normalize(header))
        key = alias if alias and alias not in keys else (header.strip() or None)
        if key is not None and key in keys:
            # A second phone, name… column (or a repeated header) is kept as a field of its
            # own: never merged into the first, whose values would be overwritten.
            key = f"{key}_{number}"
        keys.append(key)
        if key:
            report.columns[header.strip()] = key if key in BUILTIN_COLUMNS else "fields"
    if "phone" not in keys:
        raise ImportFailed(
            _("No phone column in the header (%(headers)s): call it téléphone, phone, tel or mobile.")
            % {"headers": ", ".join(headers)}
        )
    return keys


def _row_values(keys: list[str | None], cells: list[str]) -> dict:
    return {key: cell.strip() for key, cell in zip(keys, cells, strict=False) if key}


# --- Merging a chunk -------------------------------------------------------------------------


def _chunk_merge(chunk, report: ImportReport, *, seen: dict[str, int], region: str) -> dict[str, ParsedRow]:
    """The chunk's valid rows, one per phone, later non-empty values winning."""
    merged: dict[str, ParsedRow] = {}
    for line, values in chunk:
        row = _parsed(line, values, report, region=region)
        if row is None:
            continue
        if row.phone in seen:
            report.add_duplicate(DuplicateRow(line, seen[row.phone]))
        else:
            seen[row.phone] = line
        merged[row.phone] = _merged(merged.get(row.phone), row)
    return merged


def _parsed(line: int, values: dict, report: ImportReport, *, region: str) -> ParsedRow | None:
    raw = values.get("phone", "")
    try:
        phone = phone_normalize(raw, region=region)
    except ValidationError as error:
        report.add_invalid(InvalidRow(line, raw, str(error.params["reason"])))
        return None
    if problem := _unstorable(values):
        report.add_invalid(InvalidRow(line, raw, problem))
        return None
    extra = {key: value for key, value in values.items() if key not in BUILTIN_COLUMNS and value}
    row = ParsedRow(line, phone, values.get("name", ""), values.get("first_name", ""), extra)
    if len(report.sample) < SAMPLE_ROWS:
        report.sample.append(row)
    return row


def _unstorable(values: dict) -> str:
    """Why a row's other cells cannot be stored as they are, or "" (they can)."""
    if len(values.get("name", "")) > NAME_MAX_LENGTH:
        return _("name longer than %(limit)d characters") % {"limit": NAME_MAX_LENGTH}
    if len(values.get("first_name", "")) > NAME_MAX_LENGTH:
        return _("first name longer than %(limit)d characters") % {"limit": NAME_MAX_LENGTH}
    if any("\x00" in value for value in values.values()):
        return _("a cell holds a NUL character")
    return ""


def _merged(earlier: ParsedRow | None, later: ParsedRow) -> ParsedRow:
    if earlier is None:
        return later
    return ParsedRow(
        earlier.line,
        later.phone,
        later.name or earlier.name,
        later.first_name or earlier.first_name,
        {**earlier.fields, **later.fields},
    )


# --- Writing a chunk -------------------------------------------------------------------------


def _chunk_write(merged: dict[str, ParsedRow], report: ImportReport, *, category_id: int, seen) -> None:
    if not merged:
        return
    written = contacts_upsert(rows=list(merged.values()), category_ids=[category_id])
    for _id, phone, inserted in written:
        # A phone first seen in an earlier chunk was already counted; here it is a duplicate.
        if seen[phone] == merged[phone].line:
            report.new += inserted
            report.updated += not inserted
