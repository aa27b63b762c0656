"""The deviation listing (issue 5 §3) as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX:
SDTM DV-like rows of the deviations that stand, each download audited as an export."""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime

from anyio import to_thread

from trialcoord.deviations.queue import listing
from trialcoord.deviations.report_support import audit_export
from trialcoord.deviations.rules import deviation_trends as figures
from trialcoord.kernel.database.engine import fetch
from trialcoord.kernel.problems import invalid
from trialcoord.kernel.render import tabular
from trialcoord.scheduling import lookups, protocols
from trialcoord.scheduling.rules.schedule import study_day

LISTING_COLUMNS = [
    "STUDYID",
    "DOMAIN",
    "USUBJID",
    "DVSEQ",
    "DVSPID",
    "DVTERM",
    "DVDECOD",
    "DVCAT",
    "EPOCH",
    "DVSTDTC",
    "DVSTDY",
    "SITEID",
    "VISIT",
    "RULE",
    "CLASSIFICATION",
    "STATE",
    "DAYS_OUTSIDE",
    "DETECTED_UTC",
    "CLOSED_UTC",
]


def listing_rows(study: str, rows: list[dict], day_one: dict[str, date] | None = None) -> list[dict]:
    """SDTM DV-like rows of the deviations that stand (resolved by data correction and not-a-deviation left
    out); DVSEQ numbers each participant's, DVSPID is the record's own ID. A site-level deviation has no
    USUBJID. DVSTDY counts from the participant's day one (`day_one`: subject -> date; no day 0); EPOCH is
    left empty, as no epoch is recorded."""
    day_one = day_one or {}
    seq: dict[str, int] = {}
    out = []
    for row in filter(figures.stands, rows):
        subject = f"{study}-{row['participant']}" if row["participant"] else None
        if subject:
            seq[subject] = seq.get(subject, 0) + 1
        first = day_one.get(row["participant"]) if row["participant"] else None
        occurred = _date(row["occurred_on"])
        out.append(
            {
                "STUDYID": study,
                "DOMAIN": "DV",
                "USUBJID": subject,
                "DVSEQ": seq.get(subject) if subject else None,
                "DVSPID": row["id"],
                "DVTERM": row["description"],
                "DVDECOD": row["dvdecod"],
                "DVCAT": row["dvcat"],
                "EPOCH": None,
                "DVSTDTC": row["occurred_on"],
                "DVSTDY": study_day(occurred, first) if first and occurred else None,
                "SITEID": row["site"],
                "VISIT": row["visit"],
                "RULE": row["rule"] or figures.MANUAL,
                "CLASSIFICATION": row["classification"],
                "STATE": row["state"],
                "DAYS_OUTSIDE": row["days_outside"],
                "DETECTED_UTC": row["detected_at"],
                "CLOSED_UTC": row["closed_at"],
            }
        )
    return out


async def listing_file(study: str, sites: Collection[str] | None, kind: str, actor: str) -> tuple[bytes, int]:
    """The listing as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX; audited as an export."""
    if kind not in ("csv", "xlsx"):
        raise invalid(f"'{kind}' is not a listing format; choose csv or xlsx", field="format")
    rows, _ = await listing(study, sites=sites)
    table = listing_rows(study, rows, await _day_one(study))
    if kind == "csv":
        data = tabular.csv_text(LISTING_COLUMNS, table).encode("utf-8-sig")
    else:
        typed = [
            {
                **r,
                "DVSTDTC": _date(r["DVSTDTC"]),
                "DETECTED_UTC": _instant(r["DETECTED_UTC"]),
                "CLOSED_UTC": _instant(r["CLOSED_UTC"]),
            }
            for r in table
        ]
        data = await to_thread.run_sync(tabular.xlsx_bytes, "Deviations", LISTING_COLUMNS, typed)
    await audit_export(
        actor,
        "deviation_listing",
        study,
        {"format": kind, "rows": len(table), "sites": sorted(sites) if sites is not None else "all"},
    )
    return data, len(table)


async def _day_one(study: str) -> dict[str, date]:
    """Each participant's day one: the date of their protocol's day-one event, when recorded."""
    study_id = (await protocols.require_study(study))["id"]
    firsts = {
        row["id"]: (await protocols.protocol_of(row["id"], row["sha256"])).day_one
        for row in await lookups.list_versions(study_id)
    }
    names = sorted(set(firsts.values()))
    rows = (
        await fetch(
            "SELECT p.subject_id, p.protocol_version, e.event, e.date FROM participants p"
            " JOIN recorded_events e ON e.participant = p.id"
            f" WHERE p.study = {{}} AND e.event IN ({', '.join(['{}'] * len(names))})",
            study_id,
            *names,
        )
        if names
        else []
    )
    return {r["subject_id"]: _date(str(r["date"])) for r in rows if firsts.get(r["protocol_version"]) == r["event"]}


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _instant(text: str | None) -> datetime | None:
    """A stored UTC instant as a naive wall-clock datetime (XLSX has no zones; the column says UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None) if text else None
