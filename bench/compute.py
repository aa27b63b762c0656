"""Compute 100,000 participants x 20 visits; ratio to a bare loop doing only the same date arithmetic.

Goal: at most 3x. Run: `.venv/bin/python -m bench.compute [participants]`.
"""

from __future__ import annotations

import sys
import time
from datetime import date, timedelta

from trialcoord.scheduling.rules.durations import parse_duration
from trialcoord.scheduling.rules.protocol import Event, Protocol, VisitDefinition, Window
from trialcoord.scheduling.rules.schedule import evaluate

VISITS = 20


def twenty_visit_protocol() -> Protocol:
    d = parse_duration
    visits = tuple(
        VisitDefinition(
            code=f"V{i}",
            name=f"Visit {i}",
            number=i,
            reference_name="randomization",
            offset=d(f"{14 * i}d"),
            window=Window(d("3d"), d("3d")),
        )
        for i in range(1, VISITS + 1)
    )
    return Protocol(
        "BENCH", "Bench", "1", date(2024, 1, 1), "randomization", {"randomization": Event("randomization")}, visits
    )


def bare_loop(starts: list[date], as_of: date) -> int:
    """Only the arithmetic: target, earliest, latest and one comparison per visit."""
    offsets = [timedelta(days=14 * i) for i in range(1, VISITS + 1)]
    three = timedelta(days=3)
    count = 0
    for start in starts:
        for offset in offsets:
            target = start + offset
            earliest, latest = target - three, target + three
            count += earliest <= as_of <= latest
    return count


def engine(protocol: Protocol, starts: list[date], as_of: date) -> int:
    count = 0
    for start in starts:
        count += len(evaluate(protocol, {"randomization": start}, {}, as_of))
    return count


def best_of(runs: int, fn, *args) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - began)
    return best


def main(participants: int = 100_000) -> None:
    protocol = twenty_visit_protocol()
    starts = [date(2024, 1, 1) + timedelta(days=i % 365) for i in range(participants)]
    as_of = date(2024, 6, 1)
    base = best_of(3, bare_loop, starts, as_of)
    ours = best_of(3, engine, protocol, starts, as_of)
    windows = participants * VISITS
    print(f"compute: {participants:,} participants x {VISITS} visits")
    print(f"  bare date arithmetic  {base:7.3f} s  {windows / base / 1e6:5.2f} M windows/s")
    print(f"  schedule engine       {ours:7.3f} s  {windows / ours / 1e6:5.2f} M windows/s")
    print(f"  ratio {ours / base:.2f}x (goal <= 3x)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
