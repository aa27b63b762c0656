"""`trialcoord check` on a 1,000,000-row events CSV (100,000 participants x 10 rows, protocol DEMO-001 1.0),
run in-process with its output sent to /dev/null, as CSV and as JSON; ratio to reading the CSV alone
(csv.reader over the file, consuming every row). Goal: at most 4x.

Run: `.venv/bin/python -m bench.check_csv [--quick]`.
"""

from __future__ import annotations

import csv
import os
import random
import sys
import tempfile
from contextlib import redirect_stdout
from datetime import date, timedelta
from pathlib import Path

from bench.common import AS_OF, timed
from trialcoord.scheduling.cli.schedules import check

PROTOCOL = Path(__file__).resolve().parents[1] / "protocols" / "DEMO-001" / "1.0.yaml"
ROWS_PER_PARTICIPANT = 10
RUNS = 2


def write_events(path: Path, participants: int, seed: int = 4) -> None:
    """Everyone randomised 100 to 700 days before AS_OF and through Week 12: consent, randomization (with
    the arm), first and last dose, and visits V1 to V6, mostly in window, about 5% of visits 4-10 days late."""
    rng = random.Random(seed)

    def around(day: date) -> date:
        late = rng.random() < 0.05
        return day + timedelta(days=rng.randint(4, 10) if late else rng.randint(-2, 2))

    with path.open("w", newline="", encoding="utf-8") as file:
        out = csv.writer(file, lineterminator="\n")
        out.writerow(("participant", "event", "date", "arm"))
        for i in range(1, participants + 1):
            subject = f"{101 + i % 2}-{i:06d}"
            randomized = AS_OF - timedelta(days=rng.randint(100, 700))
            v3 = around(randomized + timedelta(weeks=2))
            v4 = around(v3 + timedelta(weeks=2))
            out.writerows(
                [
                    (subject, "consent", randomized - timedelta(days=rng.randint(3, 14)), ""),
                    (subject, "randomization", randomized, rng.choice("AP")),
                    (subject, "first_dose", randomized, ""),
                    (subject, "V1", randomized - timedelta(days=rng.randint(1, 13)), ""),
                    (subject, "V2", randomized, ""),
                    (subject, "V3", v3, ""),
                    (subject, "V4", v4, ""),
                    (subject, "V5", around(v4 + timedelta(weeks=4)), ""),
                    (subject, "V6", around(v4 + timedelta(weeks=8)), ""),
                    (subject, "last_dose", randomized + timedelta(weeks=12), ""),
                ]
            )


def read_csv(path: Path) -> int:
    rows = 0
    with path.open(newline="", encoding="utf-8") as file:
        for _ in csv.reader(file):
            rows += 1
    return rows


def run_check(path: Path, fmt: str) -> None:
    with open(os.devnull, "w") as null, redirect_stdout(null):
        assert check(str(PROTOCOL), str(path), AS_OF, fmt) == 0


def main(quick: bool = False) -> None:
    participants = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="trialcoord-bench-") as tmp:
        path = Path(tmp) / "events.csv"
        write_events(path, participants)
        rows = read_csv(path) - 1
        print(
            f"check: {rows:,} event rows ({participants:,} participants), {path.stat().st_size / 1e6:.0f} MB,"
            f" protocol {PROTOCOL.parent.name} {PROTOCOL.stem}"
        )
        base = min(timed(read_csv, path)[0] for _ in range(3))
        print(f"  csv.reader alone     {base:7.3f} s  {rows / base / 1e6:5.2f} M rows/s")
        for fmt in ("csv", "json"):
            ours = min(timed(run_check, path, fmt)[0] for _ in range(RUNS))
            print(
                f"  check --format {fmt:<5} {ours:7.3f} s  {rows / ours / 1e6:5.2f} M rows/s"
                f"  ratio {ours / base:.2f}x (goal <= 4x) {'met' if ours / base <= 4 else 'MISSED'}"
            )


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
