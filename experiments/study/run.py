"""Runs study sweeps one after another and records each run's wall time.

    python experiments/study/run.py table2 node node-best

runs `jaxode sweep experiments/study/<name>.toml --out experiments/results/study/<name>
--no-progress` for each name (a sweep resumes: cells already in results.csv are skipped) and
merges `{name: {command, started, finished, wall_s, returncode, statuses, ...}}` into
`experiments/results/study/timings.json`. A rerun that resumes a finished sweep records a
short wall time under its own entry `<name>@<n>`, never over the first one.
"""

import argparse
import collections
import csv
import datetime
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPECS = ROOT / "experiments" / "study"
RESULTS = ROOT / "experiments" / "results" / "study"
TIMINGS = RESULTS / "timings.json"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _statuses(out: pathlib.Path) -> dict:
    path = out / "results.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return dict(collections.Counter(row["status"] for row in csv.DictReader(f)))


def _git(*args) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return result.stdout.strip()


def run(name: str) -> dict:
    spec = SPECS / f"{name}.toml"
    if not spec.is_file():
        raise SystemExit(
            f"no spec {spec}; specs: {', '.join(p.stem for p in SPECS.glob('*.toml'))}"
        )
    out = RESULTS / name
    command = [
        "jaxode",
        "sweep",
        str(spec.relative_to(ROOT)),
        "--out",
        str(out.relative_to(ROOT)),
        "--no-progress",
    ]
    before = sum(_statuses(out).values())
    entry = {
        "command": " ".join(command),
        "started": _now(),
        "cells_before": before,
        "commit": _git("rev-parse", "HEAD"),
        "library_uncommitted_changes": bool(_git("status", "--porcelain", "jaxode")),
    }
    log = out / "sweep.log"
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"# {entry['started']} {entry['command']}\n")
        f.flush()
        code = subprocess.run(
            command,
            cwd=ROOT,
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ).returncode
    entry.update(
        finished=_now(),
        wall_s=round(time.perf_counter() - tic, 1),
        returncode=code,
        statuses=_statuses(out),
        load_average_after=os.getloadavg(),
    )
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="spec names (files experiments/study/NAME.toml)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        entry = run(name)
        timings = json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}
        key, n = name, 1
        while key in timings:
            n += 1
            key = f"{name}@{n}"
        timings[key] = entry
        TIMINGS.write_text(json.dumps(timings, indent=1) + "\n")
        print(json.dumps({key: entry}), flush=True)
        if entry["returncode"] != 0:
            sys.exit(entry["returncode"])


if __name__ == "__main__":
    main()
