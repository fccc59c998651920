"""Run every bench/<name>.py (each on its own scratch database) and collect
bench/results.json from the JSON line each prints last."""

import json
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"harness.py", "run_all.py"}


def main() -> int:
    results, failed = [], []
    for script in sorted(BENCH_DIR.glob("*.py")):
        if script.name in NOT_BENCHMARKS:
            continue
        print(f"running {script.name} …", file=sys.stderr)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        if done.returncode or not lines:
            failed.append(script.name)
            print(done.stderr[-2000:], file=sys.stderr)
            continue
        results.append(json.loads(lines[-1]))
        print(lines[-1])
    (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
