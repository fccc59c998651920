"""Run every bench/<name>.py (each on its own scratch database), collect the JSON line each
prints last into bench/results.json, and write the same results as a Markdown table,
bench/results.md, that also replaces the table between the bench markers in README.md.
`make bench` runs it; so does `python bench/run_all.py` (DATABASE_URL picks the server).
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from config import clock

BENCH_DIR = Path(__file__).resolve().parent
README = harness.BASE_DIR / "README.md"
NOT_BENCHMARKS = {"harness.py", "run_all.py", "scale_seed.py"}
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def main() -> int:
    scripts = [s for s in sorted(BENCH_DIR.glob("*.py")) if s.name not in NOT_BENCHMARKS]
    run = {"started": clock.now().isoformat(timespec="seconds"), **machine(), "load_before": _load()}
    results = [_run(script) for script in scripts]
    run["load_after"] = _load()
    (BENCH_DIR / "results.json").write_text(json.dumps({"run": run, "results": results}, indent=2) + "\n")
    table = markdown(run, results)
    (BENCH_DIR / "results.md").write_text("# Benchmark results\n\n" + table)
    _readme_update(table)
    return 0 if all(r.get("completed", True) for r in results) else 1


def _run(script: Path) -> dict:
    print(f"running {script.name} …", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        print(done.stderr[-2000:], file=sys.stderr)
        return {"name": script.stem, "completed": False, "error": done.stderr.strip()[-300:]}
    print(lines[-1], flush=True)
    return json.loads(lines[-1])


# --- The machine -------------------------------------------------------------------------


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": _postgresql_version(),
    }


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def _postgresql_version() -> str:
    import psycopg

    from config.embedded_pg import url_for

    url = url_for(harness.server_entry(), "postgres").replace("postgres://", "postgresql://", 1)
    with psycopg.connect(url) as connection:
        return connection.execute("SHOW server_version").fetchone()[0]


def _load() -> float:
    return round(os.getloadavg()[0], 2)


# --- The table -----------------------------------------------------------------------------


def markdown(run: dict, results: list[dict]) -> str:
    rows = [
        "| benchmark | measured | Relance | baseline (same run) | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows += [_row(result) for result in results]
    return "\n".join([_machine_line(run), "", *rows, ""])


def _machine_line(run: dict) -> str:
    return (
        f"Measured {run['started'].replace('T', ' ')[:16]} UTC on {run['cores']} cores ({run['cpu']}), "
        f"{run['ram_gib']} GiB RAM, Python {run['python']}, PostgreSQL {run['postgresql']}; load average "
        f"{run['load_before']} before and {run['load_after']} after (`make bench` regenerates this table)."
    )


def _row(result: dict) -> str:
    name = f"`{result['name']}`"
    if not result.get("completed", True):
        why = (result["error"].splitlines() or ["?"])[-1].replace("|", "/")
        return f"| {name} | did not complete: {why} | | | | | **no** |"
    unit = result["unit"]
    ours = f"{result['value']:,.1f} {unit}"
    baseline = f"{result.get('baseline_is', 'baseline')}: {result['baseline']:,.1f} {unit}"
    goals = [f"ratio {result['goal'].replace('>=', '≥')}", *result.get("also", {})]
    met = result["met"] and all(result.get("also", {}).values())
    cells = [name, result.get("measured", ""), ours, baseline, f"{result['ratio']:.2f}", "; ".join(goals)]
    return "| " + " | ".join([*cells, "yes" if met else "**no**"]) + " |"


def _readme_update(table: str) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        print(f"README.md has no {START} … {END} markers: table not copied", file=sys.stderr)
        return
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(f"{head}{START}\n{table}{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
