"""`manage.py import_contacts FILE --category NAME [--region FR] [--dry-run]`: a CSV or .xlsx into a category.

The whole file is one transaction: if it fails, nothing is written. Rows with an invalid
phone are reported (line, value, reason) and skipped; they do not fail the import.
Exit codes: 0 imported (even with invalid rows); 1 the file cannot be read or parsed.
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _

from campaigns.importing import ImportFailed, ImportReport, contacts_import, rows_expected

EXIT_UNREADABLE = 1
BAR_WIDTH = 30


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument(
            "file",
            help=_("CSV file (UTF-8, “,” or “;” separated) or Excel .xlsx workbook, with a header line."),
        )
        parser.add_argument("--category", required=True, help=_("Category name; created if missing."))
        parser.add_argument(
            "--region",
            default=settings.PHONE_DEFAULT_REGION,
            help=_("Country whose national numbers the file holds (default: %(default)s)."),
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=_("Show what would happen; write nothing.")
        )

    def handle(self, *args, file: str, category: str, region: str, dry_run: bool, **options):
        try:
            with open(file, "rb") as stream:
                total = _rows_expected(stream)
                report = contacts_import(
                    file=stream, category=category, region=region.upper(), dry_run=dry_run,
                    progress=lambda rows: self._progress(rows, total),
                )  # fmt: skip
        except (OSError, ImportFailed) as error:
            raise CommandError(
                _("Nothing imported: %(error)s") % {"error": error}, returncode=EXIT_UNREADABLE
            ) from error
        self._progress(report.rows, report.rows)
        self.stderr.write("")
        self.stdout.write("\n".join(report_lines(report)))

    def _progress(self, rows: int, total: int) -> None:
        share = min(rows / total, 1.0) if total else 1.0
        bar = "#" * round(share * BAR_WIDTH)
        self.stderr.write(f"\r[{bar:<{BAR_WIDTH}}] {rows}/{total} rows", ending="")
        self.stderr.flush()


def _rows_expected(stream) -> int:
    """The progress bar's total; a file too damaged to count fails in the import itself."""
    try:
        return rows_expected(stream)
    except Exception:  # noqa: BLE001 - only the bar's total is lost
        stream.seek(0)
        return 0


def report_lines(report: ImportReport) -> list[str]:
    verb = _("Would import") if report.dry_run else _("Imported")
    facts = {"verb": verb, "rows": report.rows, "category": report.category}
    facts.update(new=report.new, updated=report.updated)
    facts.update(duplicates=report.duplicate_count, invalid=report.invalid_count)
    lines = [
        _(
            "%(verb)s %(rows)d rows into “%(category)s”: %(new)d new, %(updated)d updated, "
            "%(duplicates)d duplicates merged, %(invalid)d invalid."
        )
        % facts
    ]
    lines += [_("Line %(line)d: %(value)r — %(reason)s") % vars(row) for row in report.invalid]
    if report.invalid_count > len(report.invalid):
        lines.append(_("… and %(n)d more invalid rows.") % {"n": report.invalid_count - len(report.invalid)})
    lines += [
        _("Line %(line)d: duplicate, merged into line %(merged_into)d") % vars(row)
        for row in report.duplicates
    ]
    if report.category_created:
        lines.append(_("Category “%(name)s” created.") % {"name": report.category})
    if report.dry_run:
        lines.append(_("Dry run: nothing was written."))
    return lines
