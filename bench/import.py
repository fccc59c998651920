"""Contact import: rows per second of our set-based importer vs. a per-row ORM loop.

A generated CSV of 100,000 rows (BOM, `;`, French headers, phones in many formats, ~5%
in-file duplicates, ~2% invalid phones) is imported by campaigns.importing into a scratch
database, in a child process whose peak RSS is measured. The same rows as an Excel .xlsx
workbook (shared strings, as Excel writes them) are then imported the same way into the
emptied tables, their rows/s printed beside CSV's. The baseline, in the same run, is the
obvious loop (get_or_create + categories.add per row) over the first 2,000 rows of the CSV.
Goal: ratio >= 20, and peak RSS under 200 MB (bounded memory) for both formats.

    python bench/import.py [--rows 100000] [--baseline-rows 2000]
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

RSS_GOAL_MB = 200


def main() -> None:
    options = _arguments()
    if options.child:
        return _child(options.child)
    path = _generate(options.rows)
    workbook = _generate_xlsx(path)
    try:
        with harness.scratch_django("import", LOG_LEVEL="WARNING"):
            baseline = _baseline_rate(path, options.baseline_rows)
            ours = _ours_in_child(path)
            _empty_tables()
            xlsx = _ours_in_child(workbook)
    finally:
        path.unlink(missing_ok=True)
        workbook.unlink(missing_ok=True)
    xlsx_rate = xlsx["rows"] / xlsx["seconds"]
    harness.report(
        name="import",
        unit="rows/s",
        value=ours["rows"] / ours["seconds"],
        baseline=baseline,
        goal=20,
        measured=f"rows/s importing a {ours['rows']:,}-row CSV (duplicates and invalid rows included)",
        baseline_is=f"a per-row ORM loop (get_or_create + categories.add) on {options.baseline_rows:,} rows",
        also={
            f"peak RSS < {RSS_GOAL_MB} MB ({ours['peak_rss_mb']:.0f} MB)": ours["peak_rss_mb"] < RSS_GOAL_MB,
            f".xlsx peak RSS < {RSS_GOAL_MB} MB ({xlsx['peak_rss_mb']:.0f} MB, {xlsx_rate:,.0f} rows/s)": (
                xlsx["peak_rss_mb"] < RSS_GOAL_MB
            ),
        },
        rows=ours["rows"],
        new=ours["new"],
        duplicates=ours["duplicates"],
        invalid=ours["invalid"],
        seconds=round(ours["seconds"], 2),
        baseline_rows=options.baseline_rows,
        peak_rss_mb=ours["peak_rss_mb"],
        peak_rss_met=ours["peak_rss_mb"] < RSS_GOAL_MB,
        xlsx_rows=xlsx["rows"],
        xlsx_rows_per_s=round(xlsx_rate, 1),
        xlsx_seconds=round(xlsx["seconds"], 2),
        xlsx_same_counts=all(xlsx[key] == ours[key] for key in ("rows", "new", "duplicates", "invalid")),
        xlsx_peak_rss_mb=xlsx["peak_rss_mb"],
        xlsx_peak_rss_met=xlsx["peak_rss_mb"] < RSS_GOAL_MB,
    )
    csv_rate = ours["rows"] / ours["seconds"]
    print(f"import rows/s: CSV {csv_rate:,.0f}, .xlsx {xlsx_rate:,.0f}", file=sys.stderr)


def _arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=2000)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: import this file, print JSON
    return parser.parse_args()


def _generate(rows: int) -> Path:
    """A messy but realistic file; seeded, so every run imports the same rows."""
    rng = random.Random(42)
    handle, name = tempfile.mkstemp(prefix="relance-import-", suffix=".csv")
    with os.fdopen(handle, "w", encoding="utf-8-sig", newline="") as out:
        out.write("Téléphone;Prénom;Nom;Ville;Code client\n")
        for n in range(rows):
            out.write(f"{_phone(rng, n)};Prénom{n};Nom{n};Ville{n % 300};C{n:07d}\n")
    return Path(name)


def _generate_xlsx(csv_path: Path) -> Path:
    """The same rows as a workbook, written row by row (openpyxl's write-only mode)."""
    import csv

    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Contacts")
    with csv_path.open(encoding="utf-8-sig", newline="") as stream:
        for row in csv.reader(stream, delimiter=";"):
            sheet.append(row)
    path = csv_path.with_suffix(".xlsx")
    workbook.save(path)
    return path


def _empty_tables() -> None:
    """The .xlsx import starts from empty tables too, as the CSV one did."""
    from django.db import connection

    from campaigns.models import Category, Contact

    tables = [Contact.categories.through, Contact, Category]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(model._meta.db_table for model in tables)} CASCADE")


def _phone(rng: random.Random, n: int) -> str:
    if rng.random() < 0.02:
        return rng.choice(["abc", "06 12", "+999 1234", ""])
    number = rng.randrange(n) if n and rng.random() < 0.05 else n  # an earlier row's phone
    digits = f"6{10_000_000 + number:08d}"
    pairs = " ".join(digits[i : i + 2] for i in range(1, 9, 2))
    return rng.choice(
        [f"0{digits}", f"+33{digits}", f"0{digits[0]} {pairs}", f"0033 {digits}", f"+33 (0){digits}"]
    )


def _baseline_rate(path: Path, rows: int) -> float:
    """The per-row ORM loop: one get_or_create, maybe a save, and an add per row."""
    import csv
    import itertools

    from django.core.exceptions import ValidationError

    from campaigns.models import Category, Contact
    from campaigns.phones import phone_normalize

    category = Category.objects.create(name="baseline")
    started = time.perf_counter()
    with path.open(encoding="utf-8-sig", newline="") as stream:
        for row in itertools.islice(csv.DictReader(stream, delimiter=";"), rows):
            try:
                phone = phone_normalize(row["Téléphone"])
            except ValidationError:
                continue
            fields = {"Ville": row["Ville"], "Code client": row["Code client"]}
            defaults = {"first_name": row["Prénom"], "name": row["Nom"], "fields": fields}
            contact, created = Contact.objects.get_or_create(phone=phone, defaults=defaults)
            if not created:
                contact.first_name, contact.name, contact.fields = (
                    row["Prénom"],
                    row["Nom"],
                    contact.fields | fields,
                )
                contact.save()
            contact.categories.add(category)
    rate = rows / (time.perf_counter() - started)
    Contact.objects.all().delete()  # ours starts from the same empty table
    category.delete()
    return rate


def _ours_in_child(path: Path) -> dict:
    """Our importer in a fresh process, so that its peak RSS is the import's alone."""
    from django.db import connections

    connections.close_all()
    result = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        cwd=harness.BASE_DIR,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _child(path: str) -> None:
    import django

    django.setup()
    from campaigns.importing import contacts_import

    started = time.perf_counter()
    with open(path, "rb") as stream:
        report = contacts_import(file=stream, category="bench")
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    facts = {"rows": report.rows, "new": report.new, "duplicates": report.duplicate_count}
    facts.update(invalid=report.invalid_count, seconds=seconds, peak_rss_mb=round(peak_kb / 1024, 1))
    print(json.dumps(facts))


if __name__ == "__main__":
    main()
