"""The impact of an amendment before it takes effect (issue 11), on SQLite and PostgreSQL:

`impact.impact(study, version 2.0, effective=...)` over 10,000 participants x 20 visits (stored with
perturbed actual dates: some late, early, missed) vs evaluating the same participants once: the same reads
(protocol versions, site calendars, the participants' events, visit facts and version changes) and one
`schedule.evaluate` each under the version they follow. Version 2.0 widens every window by 2 days, moves
week 24 by a week, drops week 36 and adds week 40, so every participant has something to compare. The impact
evaluates each participant under both versions, judges both histories, compares visits and deviations and
works out re-consent: goal at most 3x.

Run: `.venv/bin/python -m bench.amendments [--quick]` (--quick: 1,000 participants).
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import timedelta

from bench.common import (
    AS_OF,
    PROTOCOL_TEXT,
    STUDY,
    VISITS,
    atimed,
    enrol_study,
    on_each_engine,
    ratio_line,
    temp_database,
)
from bench.query import seed, seed_rows
from trialcoord.amendments import impact, impact_outputs
from trialcoord.kernel.database.engine import read
from trialcoord.scheduling import protocols, schedules
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.rules.schedule import evaluate
from trialcoord.scheduling.store import inputs as inputs_store

RUNS = 3  # interleaved: ours, baseline, ours, ...; the best of each counts
EFFECTIVE = AS_OF + timedelta(days=7)


def amended_text() -> str:
    text = PROTOCOL_TEXT.replace('version: "1.0"', 'version: "2.0"').replace(
        "effective: 2024-01-01", f"effective: {EFFECTIVE.isoformat()}"
    )
    text = text.replace("window: {early: 3d, late: 3d}", "window: {early: 5d, late: 5d}")
    text = text.replace("offset: 24w,", "offset: 25w,")
    text = "\n".join(line for line in text.splitlines() if "offset: 36w," not in line) + "\n"
    return text + (
        "  - {code: V40W, number: 40, name: Week 40 call, from: randomization, offset: 40w,"
        " window: {early: 7d, late: 7d}}\n"
    )  # a number of its own: Week 36's (20) stays Week 36's


async def evaluate_once() -> int:
    """The baseline: what evaluating every participant once costs, reads included."""
    study = await protocols.require_study(STUDY)
    count = 0
    async with read():
        versions = await schedules.Versions.load(study.id)
        for person in (await inputs_store.load_inputs(study.id)).values():
            protocol = await versions.protocol(person.version_id, person.site)
            count += len(
                evaluate(
                    protocol,
                    person.events,
                    person.actuals,
                    AS_OF,
                    arm=person.arm,
                    horizon_days=schedules.HORIZON_DAYS,
                    marked_missed=person.marked_missed,
                )
            )
    return count


async def run(kind: str, participants: int) -> None:
    async with temp_database(kind) as url:
        protocol, people, version = await enrol_study(participants)
        statuses = Counter()
        await seed(kind, url, seed_rows(protocol, people, version, statuses))
        text = amended_text()
        new = parse_protocol(text, "bench-2.0.yaml")
        ours = base = float("inf")
        for _ in range(RUNS):
            seconds, result = await atimed(impact.impact(STUDY, new, text, effective=EFFECTIVE, today=AS_OF))
            ours = min(ours, seconds)
            seconds, evaluated = await atimed(evaluate_once())
            base = min(base, seconds)
        assert len(result.participants) == participants, (len(result.participants), participants)
        totals = impact_outputs.impact_summary(result).totals
        print(
            f"  {kind:<8}  {participants:,} participants, {sum(statuses.values()):,} stored visits,"
            f" {evaluated:,} evaluated rows"
        )
        print(f"  {kind:<8}  evaluate once  {base:7.3f} s")
        print(
            f"  {kind:<8}  impact         {ours:7.3f} s  (affected {totals.affected:,};"
            f" visits moving {totals.visits_moving:,}, appearing {totals.visits_appearing:,},"
            f" disappearing {totals.visits_disappearing:,}; deviations resolved"
            f" {totals.deviations_resolved:,}, created {totals.deviations_created:,})"
        )
        print(ratio_line(f"{kind} impact / evaluate once", ours / base, "< 3x", ours / base < 3))


def run_engines(participants: int) -> None:
    print(f"amendments: impact of version 2.0 over {participants:,} participants x {VISITS} visits")
    on_each_engine(run, participants)


def main(quick: bool = False) -> None:
    run_engines(1_000 if quick else 10_000)


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
