"""`audit reconcile` (issue 17) on SQLite and PostgreSQL: the regulated tables of 5,000 participants at 100 sites
(imported, audited: each a randomization and nine visits done, 20 visits stored each, so 100,000 visit rows) against
the audit trail, against reading the same rows of the same tables alone (the same SELECTs, keyset batches, no trail,
no comparison). Goal: at most 3x. Also printed: the trail's entries read, and a second baseline reading the tables
and the trail's rows with nothing folded or compared (what the comparison itself costs).

Run: `.venv/bin/python -m bench.reconcile [--quick | --scale S]` (--quick: 500 participants).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from bench.common import AS_OF, PROTOCOL_TEXT, STUDY, atimed, on_each_engine, ratio_line, temp_database
from bench.import_events import event_file
from trialcoord.audit import reconciling
from trialcoord.kernel import audit_store
from trialcoord.kernel.database.engine import read
from trialcoord.scheduling import importing, protocols
from trialcoord.scheduling.protocol_files import parse_protocol

PARTICIPANTS, RUNS = 5_000, 5  # alternating: ours, tables, trail and tables; the best of each counts


def describe() -> str:
    """`git describe` of the checkout measured (or why there is none)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=False,
        )
    except OSError as error:
        return f"no git ({error.strerror})"
    return done.stdout.strip() or f"no git describe ({done.stderr.strip()})"


async def read_tables() -> int:
    """The rows `reconcile` compares, read alone: the same statements, batches and row shaping."""
    count = 0
    async with read():
        for table in reconciling.TABLES:
            async for batch in reconciling.table_rows(table):
                count += sum(1 for _ in map(table.row, batch))
    return count


async def read_tables_and_trail() -> int:
    count = 0
    async with read():
        head = await audit_store.head_size()
        types = tuple({table.kind.record_type for table in reconciling.TABLES})
        async for rows in audit_store.stream_records(types, head):
            count += len(rows)
    return count + await read_tables()


async def run(kind: str, participants: int) -> None:
    async with temp_database(kind):
        protocol = parse_protocol(PROTOCOL_TEXT, "bench.yaml")
        await protocols.load_protocol_version(protocol, PROTOCOL_TEXT, "bench.yaml")
        text, _ = event_file(participants)
        await importing.import_events(STUDY, text, file="bench.csv", today=AS_OF, create_sites=True)
        best = {"reconcile": float("inf"), "tables": float("inf"), "tables and trail": float("inf")}
        found = None
        for _ in range(RUNS):
            seconds, found = await atimed(reconciling.reconcile())
            best["reconcile"] = min(best["reconcile"], seconds)
            seconds, _ = await atimed(read_tables())
            best["tables"] = min(best["tables"], seconds)
            seconds, _ = await atimed(read_tables_and_trail())
            best["tables and trail"] = min(best["tables and trail"], seconds)
        assert found is not None and found.ok, found and found.differences[:5]
        print(
            f"  {kind:<8}  {participants:,} participants, {sum(found.rows.values()):,} rows of {len(found.rows)}"
            f" tables ({found.rows['visits']:,} visits), {found.entries:,} entries about them"
        )
        for name, seconds in best.items():
            print(f"  {kind:<8}  {name}: {seconds:.3f} s")
        ratio = best["reconcile"] / best["tables"]
        print(ratio_line(f"{kind} reconcile / reading the tables alone", ratio, "<= 3x", ratio <= 3))
        both = best["reconcile"] / best["tables and trail"]
        print(f"  {kind} reconcile / reading the tables and the trail: {both:.2f}x")


def main(quick: bool = False, scale: float | None = None) -> None:
    participants = max(10, int(PARTICIPANTS * (scale if scale is not None else 0.1 if quick else 1)))
    print(f"reconcile: the regulated tables against the audit trail, {participants:,} participants ({describe()})")
    on_each_engine(run, participants)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scale", type=float)
    arguments = parser.parse_args()
    main(arguments.quick, arguments.scale)
