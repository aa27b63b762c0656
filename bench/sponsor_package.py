"""The sponsor package (issue 14 §4), on SQLite and PostgreSQL: `packages.make` for a study of 10,000
participants at ~20 sites, 1,000,000 stored visits (98 protocol visits each, ten of them a repeating follow-up,
and about two unscheduled ones; 2% missed, 2% late, 1% early) and 50,000 deviations (most walked through some
review steps, many closed, a few of those steps after the as-of date so the package undoes them).

1. `packages.make` (datasets, XPT and CSV, define.xml, the PDF/A report, the signed ZIP) vs pyreadstat alone:
   a DataFrame of each of the package's datasets from its already-built rows, written with
   `pyreadstat.write_xport(..., file_format_version=5)`, in the same process after the build. Goal: at most 2x.
   Light wrappers around the build's parts give the breakdown.
2. Peak RSS of the build vs the largest dataset as a DataFrame (`memory_usage(deep=True)`). The build runs in a
   child process that imports the libraries (pandas, pyreadstat, WeasyPrint) first: its RSS then is subtracted
   from its peak after the build. Goal: under 3x. The peak is /proc's VmHWM, not `ru_maxrss`: Linux keeps
   ru_maxrss across execve, so a child forked by the seeding parent would start with the parent's peak.
3. The report's page count (pikepdf): under 40; and the package verifies (`verify_package`, timed for reference).

The audit trail holds what the use cases of the set-up record (the protocol and the sites): the build verifies it
whole before signing its checkpoint, so a study's real trail (millions of entries) costs more there; that cost is
bench/audit_verify.py's. Everything else is seeded with bulk inserts (not timed).

Run: `.venv/bin/python -m bench.sponsor_package [--quick | --scale S]` (or TRIALCOORD_BENCH_SPONSOR_SCALE=S);
--quick is --scale 0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import os
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter, defaultdict
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.common import AS_OF, on_each_engine, ratio_line, raw_sqlite_path, temp_database, visit_params
from bench.query import seed
from trialcoord.deviations.rules.deviation_review import default_subcategory
from trialcoord.kernel.database.engine import transaction
from trialcoord.kernel.rules.audit_entries import canonical_json, utc_instant
from trialcoord.scheduling import protocols, sites
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.rules.schedule import evaluate
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store

STUDY = "BENCH-SP"
PARTICIPANTS, DEVIATIONS, SITES = 10_000, 50_000, 20
RUNS = 2  # of the pyreadstat baseline (the package is built once: minutes at full size); the best counts
CHILD = "--child"
RESULT = "BENCH-RESULT "  # the child's one line of results, JSON after it

# Screening, baseline, 86 weekly visits, then a follow-up every 4 weeks, ten times (VISITNUM 89 + (k-1)/1000).
PROTOCOL_TEXT = (
    f"""\
study: {STUDY}
title: Benchmark study for the sponsor package
version: "1.0"
effective: 2022-01-01
day_one: randomization
events:
  consent: {{}}
  randomization: {{}}
  withdrawal: {{ends_schedule: true}}
arms:
  - {{code: A, name: Active}}
  - {{code: P, name: Placebo}}
visits:
  - {{code: V1, name: Screening, from: randomization, offset: -14d, window: {{early: 0d, late: 13d}}}}
  - {{code: V2, name: Baseline, from: randomization, offset: 0d}}
"""
    + "".join(
        f"  - {{code: V{i}, name: Week {i - 2}, from: randomization, offset: {i - 2}w,"
        " window: {early: 2d, late: 2d}}\n"
        for i in range(3, 89)
    )
    + """\
  - code: F{n}
    name: Follow-up {n}
    from: randomization
    offset: 88w
    repeat: {every: 4w, count: 10}
    window: {early: 3d, late: 3d}
"""
)
LAST_VISIT_DAYS = 88 * 7 + 9 * 28 + 3  # the last follow-up's window closes this long after randomization

# Set-up (not timed) ------------------------------------------------------------------------------


def site_codes(participants: int) -> tuple[str, ...]:
    return tuple(str(101 + i) for i in range(max(2, min(SITES, participants // 50))))


async def enrol(participants: int, rng: random.Random):
    """The protocol, the sites (through the use cases: the audit trail's entries) and `participants` randomised
    1,000 to 1,300 days before AS_OF (every schedule complete), at sites of uneven size, 3% withdrawn.
    Returns (protocol, subject_id -> (participant id, site id, arm, events), version id)."""
    protocol = parse_protocol(PROTOCOL_TEXT, "bench-sponsor.yaml")
    await protocols.load_protocol_version(protocol, PROTOCOL_TEXT, "bench-sponsor.yaml")
    codes = site_codes(participants)
    for code in codes:
        await sites.create_site(STUDY, code, f"Bench Clinic {code}")
    weights = [1 + (i % 5) for i in range(len(codes))]  # sites of 1 to 5 shares
    events: dict[str, dict[str, date]] = {}
    for i in range(participants):
        site = rng.choices(codes, weights)[0] if i >= len(codes) else codes[i]
        randomized = AS_OF - timedelta(days=rng.randint(1_000, 1_300))
        subject = events[f"{site}-{i:06d}"] = {"consent": randomized - timedelta(days=rng.randint(14, 21))}
        subject["randomization"] = randomized
        if rng.random() < 0.03:
            subject["withdrawal"] = randomized + timedelta(days=rng.randrange(1, LAST_VISIT_DAYS))
    async with transaction("bench set-up"):
        study = await protocols.require_study(STUDY)
        site_ids = {code: (await sites_store.find_site(study.id, code) or {})["id"] for code in codes}
        version = (await studies_store.list_versions(study.id))[0]["id"]
        arms = {s: "AP"[n % 2] for n, s in enumerate(events)}
        await participants_store.insert_participants(
            study.id,
            [(s, site_ids[s[:3]], arms[s], version, e["consent"]) for s, e in events.items()],
        )
        ids = {row["subject_id"]: row["id"] for row in await participants_store.list_participants(study.id)}
        await inputs_store.upsert_events(
            [(ids[s], name, day, None) for s, e in events.items() for name, day in e.items()]
        )
    people = {s: (ids[s], site_ids[s[:3]], arms[s], e) for s, e in events.items()}
    return protocol, people, version, study.id


def seed_rows(protocol, people, version, statuses: Counter, flagged: list, rng: random.Random):
    """Every visit as of AS_OF: of those whose window closed, 2% never done, 2% late, 1% early, the rest on time;
    0 to 4 unscheduled visits each. Flagged visits (participant, visit) go to `flagged` for the deviations."""
    for subject, (participant_id, _, arm, events) in people.items():
        ending = events.get("withdrawal", AS_OF)
        actuals: dict[str, date] = {}
        for visit in evaluate(protocol, events, {}, AS_OF, arm):
            if (
                visit.earliest is None
                or visit.latest is None
                or visit.latest >= ending
                or visit.status == "not_applicable"
            ):
                continue
            draw = rng.random()
            if draw < 0.02:
                continue
            if draw < 0.04:
                actuals[visit.visit] = min(visit.latest + timedelta(days=rng.randint(1, 10)), ending)
            elif draw < 0.05:
                actuals[visit.visit] = visit.earliest - timedelta(days=rng.randint(1, 5))
            else:
                span = (visit.latest - visit.earliest).days
                actuals[visit.visit] = visit.earliest + timedelta(days=rng.randint(0, span))
        start, span = events["randomization"], max(1, (ending - events["randomization"]).days)
        for n in range(1, rng.choice((0, 1, 2, 3, 4)) + 1):
            actuals[f"UNS{n}"] = start + timedelta(days=rng.randrange(span))
        for visit in evaluate(protocol, events, actuals, AS_OF, arm):
            statuses[visit.status] += 1
            if visit.status in ("missed", "late", "early"):
                flagged.append((subject, visit))
            yield visit_params(participant_id, version, visit, AS_OF)


DEVIATION_COLUMNS = (
    "id", "study", "participant", "site", "visit", "occurrence", "rule", "source", "category", "subcategory",
    "classification", "state", "occurred_on", "days_outside", "description", "site_reason", "detected_at",
    "updated_at", "closed_at", "row_version",
)  # fmt: skip
STEP_COLUMNS = ("deviation", "step", "from_state", "to_state", "actor", "at", "reason", "detail")
RULES = {"missed": "visit_missed", "late": "visit_late", "early": "visit_early"}


def instant(day: date, rng: random.Random) -> str:
    return utc_instant(datetime(day.year, day.month, day.day, 8, tzinfo=UTC) + timedelta(seconds=rng.randrange(36_000)))


def deviation_rows(study_id: int, people, flagged: list, target: int, rng: random.Random, review: Counter):
    """`target` deviations: the flagged visits' (as detection records them), topped up with manual ones; each then
    reviewed part of the way (respond 60%, then acknowledge 80%, classify 85%, close 80%), the steps a few days
    apart, none past AS_OF + 5 days (those after AS_OF are undone in the package). Returns (deviations, steps)."""
    chosen = rng.sample(flagged, min(target, len(flagged)))
    subjects = list(people)
    while len(chosen) < target:
        chosen.append((subjects[len(chosen) % len(subjects)], None))
    deviations, steps = [], []
    for number, (subject, visit) in enumerate(chosen, start=1):
        participant_id, site_id, _, events = people[subject]
        if visit is None:
            rule, code, occurrence, category, outside = None, None, None, "other", 0
            occurred = events["randomization"] + timedelta(days=rng.randrange(300))
            description, source = f"bench: procedure out of order ({number})", "manual"
        else:
            rule, code, occurrence = RULES[visit.status], visit.visit, visit.occurrence
            category, outside, source = "visit schedule", visit.days_outside, "automatic"
            occurred = visit.actual if visit.status != "missed" else visit.latest
            description = f"{code}: visit {visit.status}"
        detected_day = min(occurred + timedelta(days=1), AS_OF)
        row = {
            "classification": "important" if rule == "visit_missed" else "non_important",
            "subcategory": default_subcategory(rule) if rule else "OTHER",
            "state": "detected",
            "site_reason": None,
            "closed_at": None,
        }
        at = detected = instant(detected_day, rng)
        flow = [("respond", 0.6, "site_response"), ("acknowledge", 0.8, "under_review")]
        flow += [("classify", 0.85, "classified"), ("close", 0.8, "closed")]
        day = detected_day
        for step, chance, to_state in flow:
            day += timedelta(days=rng.randint(1, 12))
            if rng.random() >= chance or day > AS_OF + timedelta(days=5):
                break
            at, detail = instant(day, rng), {}
            if step == "respond":
                detail = {"corrective_action": None, "site_reason": f"bench: the participant was away ({number})"}
            elif step == "classify":
                kept = "not_a_protocol_deviation" if rng.random() < 0.02 else row["classification"]
                detail = {"category": category, "classification": kept, "subcategory": row["subcategory"]}
            elif step == "close":
                detail = {"closed_at": at}
            steps.append((number, step, row["state"], to_state, "bench", at, None, canonical_json(detail).decode()))
            review[step] += 1
            row.update(detail, state=to_state)
        if row["state"] == "detected" and rng.random() < 0.005:
            row["state"] = "resolved_by_data_correction"
        review[str(row["state"])] += 1
        deviations.append(
            (
                number, study_id, participant_id, site_id, code, occurrence, rule, source, category,
                row["subcategory"], row["classification"], row["state"], occurred.isoformat(), outside, description,
                row["site_reason"], detected, at, row["closed_at"], 1 + sum(1 for s in steps if s[0] == number),
            )
        )  # fmt: skip
    return deviations, steps


async def bulk(kind: str, url: str, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """Raw executemany (SQLite) or COPY (PostgreSQL); ids given are followed by the sequence."""
    if kind == "sqlite":
        marks = ", ".join("?" for _ in columns)
        with closing(sqlite3.connect(raw_sqlite_path(url))) as file, file:
            file.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(table, records=rows, columns=columns)
        if columns[0] == "id":
            await connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}")
        await connection.execute(f"VACUUM ANALYZE {table}")
    finally:
        await connection.close()


async def set_up(kind: str, url: str, participants: int, deviations: int) -> None:
    rng, statuses, review, flagged = random.Random(14), Counter[str](), Counter[str](), list[tuple]()
    began = time.perf_counter()
    protocol, people, version, study_id = await enrol(participants, rng)
    await seed(kind, url, seed_rows(protocol, people, version, statuses, flagged, rng))
    rows, steps = deviation_rows(study_id, people, flagged, deviations, rng, review)
    await bulk(kind, url, "deviations", DEVIATION_COLUMNS, rows)
    await bulk(kind, url, "deviation_steps", STEP_COLUMNS, steps)
    stored = sum(statuses.values())
    print(
        f"  {kind:<8}  seeded in {time.perf_counter() - began:.0f} s: {len(people):,} participants at"
        f" {len(site_codes(participants))} sites, {stored:,} visits (missed {statuses['missed']:,},"
        f" late {statuses['late']:,}, early {statuses['early']:,}, unscheduled {statuses['unscheduled']:,}),"
        f" {len(rows):,} deviations with {len(steps):,} review steps ({review['closed']:,} closed)",
        flush=True,
    )


# The build, in a child process ---------------------------------------------------------------------------


DATASETS, REPORT = "datasets (exports/datasets.build)", "report (compliance_report)"
ZIP = "ZIP (SHA-256s, deflate level 6, signature)"
PARTS = [  # (module path, attribute, label, indented under the one above); each called through its module
    ("trialcoord.exports.datasets", "build", DATASETS, False),
    *(
        ("trialcoord.exports.store", read, "SQL reads (exports/store)", True)
        for read in ("participants", "events", "consents", "birth_dates", "visits_done", "deviations", "review_steps")
    ),
    ("trialcoord.exports.rules.domains:Collector", "dataset", "SDTM limit checks (sdtm.check)", True),
    ("trialcoord.kernel.audit_log", "checkpoint", "audit trail verified and checkpoint signed", False),
    ("trialcoord.exports.transport", "xpt_bytes", "XPT (transport.xpt_bytes)", False),
    ("trialcoord.exports.transport", "csv_bytes", "CSV (transport.csv_bytes)", False),
    ("trialcoord.exports.packages", "define_xml", "define.xml", False),
    ("trialcoord.exports.packages", "compliance_report", REPORT, False),
    ("trialcoord.exports.report_figures", "gather", "figures (SQL through the use cases)", True),
    ("trialcoord.exports.report", "reproducible_pdf", "WeasyPrint layout, PDF/A, attachments", True),
    ("trialcoord.exports.report", "single_associated_files", "files attached, /AF and name tree (pikepdf)", True),
    ("trialcoord.exports.packages", "_write_atomically", ZIP, False),
    ("trialcoord.exports.packages", "_file_digest", "SHA-256 of the written ZIP", False),
]


def _owner(path: str):
    """A module, or a class in one (`module:Class`)."""
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, name) if name else found


class Parts:
    """Seconds spent in the build's parts, from wrappers around them; `built` keeps what datasets.build returned."""

    def __init__(self):
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.built = None
        for path, name, label, _ in PARTS:
            owner = _owner(path)
            setattr(owner, name, self.wrap(getattr(owner, name), label))

    def wrap(self, original, label):
        if inspect.iscoroutinefunction(original):

            async def timed_async(*args, **kwargs):
                began = time.perf_counter()
                try:
                    result = await original(*args, **kwargs)
                finally:
                    self.seconds[label] += time.perf_counter() - began
                if label == DATASETS:
                    self.built = result
                return result

            return timed_async

        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - began

        return timed


def frame_of(data):
    """The dataset as a DataFrame, column by column as transport.xpt_bytes makes it."""
    import pandas

    from trialcoord.exports.rules.sdtm import Kind

    return pandas.DataFrame(
        {
            v.name: pandas.Series([row[i] for row in data.rows], dtype="float64" if v.kind is Kind.NUMBER else "object")
            for i, v in enumerate(data.variables)
        },
        columns=list(data.names),
    )


def pyreadstat_alone(datasets, folder: Path) -> float:
    """Seconds to write every dataset's DataFrame (made from its rows) with pyreadstat, version 5."""
    import pyreadstat

    began = time.perf_counter()
    for data in datasets:
        pyreadstat.write_xport(
            frame_of(data),
            str(folder / f"{data.name.lower()}.xpt"),
            file_label=data.label,
            table_name=data.name,
            column_labels=[v.label for v in data.variables],
            file_format_version=5,
        )
    return time.perf_counter() - began


def rss(field: str) -> int:
    """Bytes of this process's current (VmRSS) or peak (VmHWM) resident set; ru_maxrss where /proc is not."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


async def child(url: str, folder: Path) -> dict:
    """Build the package once (measured), then the baseline; returns the figures for the parent."""
    import pandas  # noqa: F401  # the libraries the build uses, loaded before the RSS it starts from
    import pyreadstat  # noqa: F401
    import weasyprint  # noqa: F401

    from trialcoord.exports import packages
    from trialcoord.exports.rules.scope import Scope
    from trialcoord.kernel import signing_keys
    from trialcoord.kernel.config import load_settings
    from trialcoord.kernel.database.engine import bind_engine, build_engine, close_pool, start_pool
    from trialcoord.kernel.installation import Installation
    from trialcoord.kernel.render.signed_pdf import new_site_credentials
    from trialcoord.kernel.system_keys import SystemKeys

    pades = new_site_credentials(
        "Bench Site", "trialcoord bench", datetime(2020, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)
    )
    keys = SystemKeys(b"bench passphrase", signing_keys.generate_key(), pades, scrypt_n=signing_keys.MIN_SCRYPT_N)
    installation = Installation(load_settings(os.environ), keys)
    engine = bind_engine(build_engine(url))
    await start_pool(engine)
    try:
        parts = Parts()
        before = rss("VmRSS")
        began = time.perf_counter()
        made = await packages.make(
            Scope(STUDY, AS_OF), actor="bench", today=AS_OF, installation=installation, out=folder / "package.zip"
        )
        total = time.perf_counter() - began
        peak = rss("VmHWM")
    finally:
        await close_pool(engine)
    assert made.state == "done", made
    datasets = parts.built.datasets
    largest = max(datasets, key=lambda d: len(d.rows))
    frame_bytes = int(frame_of(largest).memory_usage(deep=True).sum())
    (folder / "alone").mkdir()
    baseline = min(pyreadstat_alone(datasets, folder / "alone") for _ in range(RUNS))
    return {
        "total": total,
        "parts": dict(parts.seconds),
        "rss_before": before,
        "rss_peak": peak,
        "largest": [largest.name, len(largest.rows), frame_bytes],
        "rows": {d.name: len(d.rows) for d in datasets},
        "baseline": baseline,
        "size": made.size,
    }


def build_in_child(url: str, folder: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
        "TRIALCOORD_DATA_DIR": str(folder / "data"),
        "TRIALCOORD_DATABASE_URL": url,
        "TRIALCOORD_SIGNATURES_DIR": "/nonexistent",
    }
    for name in ("TRIALCOORD_PII_KEY_FILE", "TRIALCOORD_PII_KEYS"):  # no key ring: AGE stays null
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "bench.sponsor_package", CHILD, url, str(folder)],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the build's child process failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT) :])


# The run ---------------------------------------------------------------------------------------------


def report_pages(path: Path) -> int:
    import io

    import pikepdf

    from trialcoord.exports.writing import REPORT as REPORT_FILE

    with zipfile.ZipFile(path) as archive, pikepdf.open(io.BytesIO(archive.read(REPORT_FILE))) as pdf:
        return len(pdf.pages)


def show(kind: str, figures: dict, pages: int, check, verify_seconds: float) -> None:
    from trialcoord.exports.report import PAGE_BUDGET

    total, base, parts = figures["total"], figures["baseline"], figures["parts"]
    rows = ", ".join(f"{name} {count:,}" for name, count in figures["rows"].items())
    print(f"  {'':<8}  package {figures['size'] / 1e6:.1f} MB; rows: {rows}")
    print(f"  {'':<8}  {'packages.make':<48} {total:8.2f} s")
    shown, seen = 0.0, set()
    for _, _, label, nested in PARTS:
        if label in seen or label not in parts:
            continue
        seen.add(label)
        if not nested:
            shown += parts[label]
        print(f"  {'':<8}    {'  ' if nested else ''}{label:<{48 - (2 if nested else 0)}} {parts[label]:8.2f} s")
    print(f"  {'':<8}    {'the rest (progress rows, copy to --out, audit)':<48} {total - shown:8.2f} s")
    print(f"  {'':<8}  {f'pyreadstat alone (best of {RUNS})':<48} {base:8.2f} s")
    print(ratio_line(f"{kind} packages.make / pyreadstat alone", total / base, "<= 2x", total / base <= 2))
    name, count, frame = figures["largest"]
    grown = figures["rss_peak"] - figures["rss_before"]
    print(
        f"  {'':<8}  peak RSS {figures['rss_peak'] / 2**20:,.0f} MiB, {grown / 2**20:,.0f} MiB above the"
        f" {figures['rss_before'] / 2**20:,.0f} MiB before the build; largest dataset {name} ({count:,} rows)"
        f" as a DataFrame {frame / 2**20:,.0f} MiB"
    )
    print(ratio_line(f"{kind} build's RSS growth / largest DataFrame", grown / frame, "< 3x", grown / frame < 3))
    print(f"  {kind} report pages: {pages} (goal < {PAGE_BUDGET}) {'met' if pages < PAGE_BUDGET else 'MISSED'}")
    verdict = "0 problems" if check.ok else f"{len(check.problems)} problems: {'; '.join(check.problems[:5])}"
    print(
        f"  {kind} package verifies: {verdict} ({check.files_checked} files, {check.datasets_checked} datasets"
        f" checked in {verify_seconds:.1f} s)"
    )


def make_run(deviations: int):
    async def run(kind: str, participants: int) -> None:
        from trialcoord.exports.verification import verify_package

        async with temp_database(kind) as url:
            await set_up(kind, url, participants, deviations)
            with tempfile.TemporaryDirectory(prefix="trialcoord-bench-sponsor-") as tmp:
                folder = Path(tmp)
                figures = await asyncio.to_thread(build_in_child, url, folder)
                began = time.perf_counter()
                check = verify_package(folder / "package.zip")
                verify_seconds = time.perf_counter() - began
                show(kind, figures, report_pages(folder / "package.zip"), check, verify_seconds)

    return run


def main(quick: bool = False, scale: float | None = None) -> None:
    scale = scale or float(os.environ.get("TRIALCOORD_BENCH_SPONSOR_SCALE") or (0.1 if quick else 1))
    participants = max(4, round(PARTICIPANTS * scale))
    deviations = max(4, round(DEVIATIONS * scale))
    print(
        f"sponsor package: {participants:,} participants at {len(site_codes(participants))} sites, about 100 visits"
        f" each, {deviations:,} deviations (scale {scale:g})"
    )
    on_each_engine(make_run(deviations), participants)


if __name__ == "__main__":
    if sys.argv[1:2] == [CHILD]:
        print(RESULT + json.dumps(asyncio.run(child(sys.argv[2], Path(sys.argv[3])))), flush=True)
        sys.exit(0)
    parser = argparse.ArgumentParser(prog="python -m bench.sponsor_package", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the scale")
    parser.add_argument("--scale", type=float, help="a share of the full size, e.g. 0.01")
    args = parser.parse_args()
    if args.scale is not None and not 0 < args.scale <= 10:
        parser.error("--scale must be above 0 and at most 10")
    main(args.quick, args.scale)
