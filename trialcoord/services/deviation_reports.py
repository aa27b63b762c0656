"""Deviation reports (issue 5 §3): trends, the listing as CSV and XLSX, the deviation log and the monitoring
visit report (PDF/A and DOCX, filed into the binder as versions), and the site manager's summary.

The figures are the domain's (`domain/deviation_trends.py`) over `deviations.listing` rows. A document is
dated by its day (`as_of`), so the same facts on the same day give the same bytes: filing it again that day
changes nothing, and filing after a change adds a version labelled `YYYY-MM-DD.2`, `.3`... Every
download is audited as an export; a filing is audited by `documents.add_version`.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Collection

from anyio import to_thread

from trialcoord.adapters import tabular
from trialcoord.domain import deviation_trends as figures
from trialcoord.domain.documents import DocumentKey
from trialcoord.services import audit_log, binder, consent, deviation_review, deviations, documents, scheduling
from trialcoord.services.audit_log import Change
from trialcoord.services.errors import NotFound, invalid

LOG, VISIT_REPORT, SUMMARY = "deviation_log", "monitoring_visit_report", "site_summary"
DOCUMENT_NAMES = {LOG: "Protocol deviation log", VISIT_REPORT: "Monitoring visit report"}
ARTIFACTS = {LOG: "110", VISIT_REPORT: "107"}  # TMF 05.04.06 and 05.04.03
MEDIA_TYPES = {"pdf": "application/pdf",
               "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}
EXPIRING_DAYS = 60
IN_FORCE = frozenset({"effective", "approved"})
LISTING_COLUMNS = ["STUDYID", "USUBJID", "DVSEQ", "DVSPID", "DVTERM", "DVDECOD", "DVCAT", "DVSTDTC", "SITEID", "VISIT",
                   "RULE", "CLASSIFICATION", "STATE", "DAYS_OUTSIDE", "DETECTED_UTC", "CLOSED_UTC"]
CLOSURE_BINS = [[0, 8], [8, 31], [31, 61], [61, 91], [91, None]]  # days: a week, a month, two, three, more


# Trends ----------------------------------------------------------------------------------------

async def trends(study: str, sites: Collection[str] | None = None, as_of: date | None = None) -> dict:
    """The trends of the study's deviations at `sites` (None: every site)."""
    rows, _ = await deviations.listing(study, sites=sites)
    return {"study": study, "as_of": (as_of or date.today()).isoformat(), **figures.trends(rows)}


def trend_charts(trend: dict, *, with_sites: bool = True) -> list[dict]:
    """Chart specifications (JSON) for the templates' `chart()`: by month and category, by site, time to closure."""
    specs = [{"kind": "stacked", "title": "Deviations by month and category", "periods": trend["months"],
              "series": trend["by_month_and_category"], "y_label": "deviations"}]
    if with_sites:
        specs.append({"kind": "bars", "title": "Deviations by site", "items": [list(i) for i in trend["by_site"]]})
    specs.append({"kind": "bars", "title": "Deviations by rule", "items": [list(i) for i in trend["by_rule"]]})
    specs.append({"kind": "histogram", "title": "Days from detection to closure", "values": trend["days_to_closure"],
                  "bins": CLOSURE_BINS, "unit": "days"})
    return specs


# Listing ---------------------------------------------------------------------------------------

def listing_rows(study: str, rows: list[dict]) -> list[dict]:
    """SDTM DV-like columns; DVSEQ numbers each participant's deviations, DVSPID is the record's own ID."""
    seq: dict[str, int] = {}
    out = []
    for row in rows:
        subject = f"{study}-{row['participant']}" if row["participant"] else None
        if subject:
            seq[subject] = seq.get(subject, 0) + 1
        out.append({"STUDYID": study, "USUBJID": subject, "DVSEQ": seq.get(subject) if subject else None,
                    "DVSPID": row["id"], "DVTERM": row["description"], "DVDECOD": row["dvdecod"],
                    "DVCAT": row["dvcat"], "DVSTDTC": row["occurred_on"], "SITEID": row["site"],
                    "VISIT": row["visit"], "RULE": row["rule"] or figures.MANUAL,
                    "CLASSIFICATION": row["classification"], "STATE": row["state"],
                    "DAYS_OUTSIDE": row["days_outside"], "DETECTED_UTC": row["detected_at"],
                    "CLOSED_UTC": row["closed_at"]})
    return out


async def listing_file(study: str, sites: Collection[str] | None, kind: str, actor: str) -> tuple[bytes, int]:
    """The listing as CSV (UTF-8 with BOM, for spreadsheets; formula-guarded) or XLSX; audited as an export."""
    rows, _ = await deviations.listing(study, sites=sites)
    table = listing_rows(study, rows)
    if kind == "csv":
        data = tabular.csv_text(LISTING_COLUMNS, table).encode("utf-8-sig")
    elif kind == "xlsx":
        typed = [{**r, "DVSTDTC": _date(r["DVSTDTC"]), "DETECTED_UTC": _instant(r["DETECTED_UTC"]),
                  "CLOSED_UTC": _instant(r["CLOSED_UTC"])} for r in table]
        data = await to_thread.run_sync(tabular.xlsx_bytes, "Deviations", LISTING_COLUMNS, typed)
    else:
        raise invalid(f"'{kind}' is not a listing format; choose csv or xlsx", field="format")
    await _audit_export(actor, "deviation_listing", study, {"format": kind, "rows": len(table),
                                                             "sites": sorted(sites) if sites is not None else "all"})
    return data, len(table)


# The deviation log and the monitoring visit report ---------------------------------------------

async def report_data(study: str, site: str, name: str, as_of: date, prepared_by: str) -> dict:
    """The data a deviation log or monitoring visit report of `site` is rendered from."""
    await require_site(study, site)
    rows, _ = await deviations.listing(study, sites=[site])
    trend = figures.trends(rows)
    charts = trend_charts(trend, with_sites=False)
    if name == LOG:
        counts = {"Deviations": len(rows), "Open": sum(r["open"] for r in rows),
                  "Closed": sum(r["state"] == "closed" for r in rows),
                  "Important": sum(r["classification"] == "important" and figures.stands(r) for r in rows)}
        return {"study_code": study, "site": site, "as_of": as_of.isoformat(),
                "summary": [{"label": k, "value": v} for k, v in counts.items()], "charts": charts,
                "entries": [_log_entry(r) for r in rows]}
    if name != VISIT_REPORT:
        raise invalid(f"'{name}' is not a deviation report; choose {LOG} or {VISIT_REPORT}", field="report")
    summary = (await site_summary(study, [site], as_of))["sites"][0]
    open_rows = [r for r in rows if r["open"]]
    capa_ids = {r["capa"] for r in rows if r["capa"] is not None}
    capas = [{"id": c["id"], "title": c["title"], "state": c["state"], "owner": c["owner"], "due_on": c["due_on"],
              "deviations": ", ".join(str(d) for d in c["deviations"])}
             for c in await deviation_review.list_capas(study) if c["id"] in capa_ids]
    return {"study_code": study, "site": site, "visit_date": as_of.isoformat(), "prepared_by": prepared_by,
            "summary": _summary_lines(summary, trend), "charts": charts, "capas": capas,
            "entries": [{**_log_entry(r), "age_days": deviations.age_days(r, as_of)} for r in open_rows]}


async def render_report(study: str, site: str, name: str, kind: str, as_of: date, prepared_by: str,
                        label: str | None = None) -> tuple[bytes, str]:
    """(bytes, file name) of the report as PDF/A or DOCX, dated `as_of`."""
    if kind not in MEDIA_TYPES:
        raise invalid(f"'{kind}' is not a document format; choose pdf or docx", field="format")
    data = await report_data(study, site, name, as_of, prepared_by)
    label = label or as_of.isoformat()
    title = f"{DOCUMENT_NAMES[name]} {study} site {site}"
    return await _render(kind, name, data, as_of, title, label), f"{name}-{study}-{site}-{label}.{kind}"


async def download_report(study: str, site: str, name: str, kind: str, as_of: date, actor: str, prepared_by: str
                          ) -> tuple[bytes, str]:
    data, file_name = await render_report(study, site, name, kind, as_of, prepared_by)
    await _audit_export(actor, name, f"{study}/{site}", {"format": kind, "as_of": as_of.isoformat(),
                                                          "sha256": _sha256(data)})
    return data, file_name


async def file_report(study: str, site: str, name: str, kind: str, as_of: date, actor: str, prepared_by: str
                      ) -> dict:
    """The report as a new version of the site's binder document (draft), labelled by its day. Filing the same
    bytes again the same day returns that version (`filed` false); changed facts that day get `.2`, `.3`..."""
    if name not in DOCUMENT_NAMES:
        raise invalid(f"'{name}' cannot be filed; choose {LOG} or {VISIT_REPORT}", field="report")
    key = DocumentKey(study, site, DOCUMENT_NAMES[name])
    await require_site(study, site)
    same_day = [row for row in await documents.list_documents(study, site)
                if row["site"] == site and row["name"] == key.name and _of_day(row["label"], as_of)]
    latest = max(same_day, key=lambda row: _ordinal(row["label"]), default=None)
    if latest is not None:
        data, _ = await render_report(study, site, name, kind, as_of, prepared_by, latest["label"])
        if _sha256(data) == latest["sha256"]:
            return {**latest, "filed": False}
        label = f"{as_of.isoformat()}.{_ordinal(latest['label']) + 1}"
    else:
        label = as_of.isoformat()
    data, file_name = await render_report(study, site, name, kind, as_of, prepared_by, label)
    row = await documents.add_version(key, ARTIFACTS[name], label, data, file_name,
                                      f"generated by trialcoord from the deviation records as of {as_of}", actor=actor)
    return {**row, "filed": True}


# The site manager's summary --------------------------------------------------------------------

async def site_summary(study: str, sites: Collection[str], as_of: date) -> dict:
    """Per site and in total: enrolment, visit completion and on-time rate, open deviations by age, the
    re-consent backlog and binder documents expired or expiring within 60 days."""
    known = [row["code"] for row in await scheduling.list_sites(study)]
    for site in sites:
        if site not in known:
            raise NotFound(f"study {study} has no site {site}")
    chosen = [code for code in known if code in set(sites)]
    rows, _ = await deviations.listing(study, sites=chosen)
    queue = [r for r in await consent.reconsent(study, as_of) if r["site"] in chosen]
    expiring = [d for d in await _expiring(study, as_of) if d["site"] in chosen or d["site"] is None]
    people = await scheduling.list_participants(study)
    per_site = []
    for site in chosen:
        mine = [p for p in people if p["site"] == site]
        visits = figures.visit_rates(v.visit.status for v in await scheduling.site_schedule(study, site, as_of))
        site_rows = [r for r in rows if r["site"] == site]
        per_site.append({
            "site": site, "participants": len(mine), "active": sum(p["status"] == scheduling.ACTIVE for p in mine),
            "ended": sum(p["status"] == scheduling.ENDED for p in mine), "visits_due": visits["due"],
            "visits_done": visits["done"], "visits_on_time": visits["on_time"], "visits_missed": visits["missed"],
            "completion_rate": visits["completion_rate"], "on_time_rate": visits["on_time_rate"],
            "open_deviations": sum(r["open"] for r in site_rows), "ages": figures.age_buckets(site_rows, as_of),
            "reconsent": sum(r["site"] == site for r in queue), "expiring": sum(d["site"] == site for d in expiring)})
    return {"study": study, "as_of": as_of.isoformat(), "sites": per_site, "total": _total(per_site),
            "reconsent": [{**r, "required_since": str(r["required_since"])} for r in queue], "documents": expiring}


def summary_charts(summary: dict) -> list[dict]:
    ages = summary["total"]["ages"]
    return [{"kind": "bars", "title": "Open deviations by age (days since detection)",
             "items": [[label, ages[label]] for label, _, _ in figures.AGE_BUCKETS]},
            {"kind": "bars", "title": "Visits on time by site", "unit": "%",
             "items": [[s["site"], round(100 * s["on_time_rate"], 1)] for s in summary["sites"]
                       if s["on_time_rate"] is not None]}]


async def site_summary_pdf(study: str, sites: list[str], as_of: date, actor: str) -> bytes:
    summary = await site_summary(study, sites, as_of)
    data = {"study_code": study, "as_of": summary["as_of"], "total": summary["total"],
            "reconsent": summary["reconsent"], "documents": summary["documents"], "charts": summary_charts(summary),
            "sites": [{**s, "completion_rate": _percent(s["completion_rate"]),
                       "on_time_rate": _percent(s["on_time_rate"])} for s in summary["sites"]]}
    where = sites[0] if len(sites) == 1 else "sites " + ", ".join(sorted(sites))
    pdf = await _render("pdf", SUMMARY, data, as_of, f"Site summary {study} {where}".strip(), as_of.isoformat())
    await _audit_export(actor, SUMMARY, f"{study}/{sites[0]}" if len(sites) == 1 else study,
                        {"format": "pdf", "as_of": as_of.isoformat(), "sites": sorted(sites), "sha256": _sha256(pdf)})
    return pdf


async def require_site(study: str, site: str) -> None:
    if site not in {row["code"] for row in await scheduling.list_sites(study)}:
        raise NotFound(f"study {study} has no site {site}")


# Helpers ---------------------------------------------------------------------------------------

def _total(per_site: list[dict]) -> dict:
    summed = {key: sum(s[key] for s in per_site) for key in (
        "participants", "active", "ended", "visits_due", "visits_done", "visits_on_time", "visits_missed",
        "open_deviations", "reconsent", "expiring")}
    ages = {label: sum(s["ages"][label] for s in per_site) for label, _, _ in figures.AGE_BUCKETS}
    done, due = summed["visits_done"], summed["visits_due"]
    return {**summed, "ages": ages, "completion_rate": round(done / due, 4) if due else None,
            "on_time_rate": round(summed["visits_on_time"] / done, 4) if done else None}


async def _expiring(study: str, as_of: date) -> list[dict]:
    until = as_of + timedelta(days=EXPIRING_DAYS)
    found = []
    for row in await documents.list_documents(study):
        expires = row["expires_on"]
        if row["status"] in IN_FORCE and expires is not None and expires <= until:
            found.append({"site": row["site"], "document": row["name"], "version": row["label"],
                          "state": "expired" if expires < as_of else "expiring", "expires_on": expires.isoformat()})
    return sorted(found, key=lambda d: (d["expires_on"], d["site"] or "", d["document"]))


def _summary_lines(site: dict, trend: dict) -> list[dict]:
    ages = site["ages"]
    return [{"label": label, "value": value} for label, value in (
        ("Participants (active / ended)", f"{site['participants']} ({site['active']} / {site['ended']})"),
        ("Visits done / due", f"{site['visits_done']} / {site['visits_due']}"),
        ("Visit completion", _percent(site["completion_rate"])), ("Visits on time", _percent(site["on_time_rate"])),
        ("Open deviations", site["open_deviations"]),
        ("Open by age: 0-30 / 31-60 / 61-90 / >90 days",
         " / ".join(str(ages[label]) for label, _, _ in figures.AGE_BUCKETS)),
        ("Deviations closed; median days to closure",
         f"{trend['closure']['closed']}; {trend['closure']['median_days'] if trend['closure']['closed'] else '-'}"),
        ("Re-consent backlog", site["reconsent"]), ("Binder documents expired or expiring", site["expiring"]))]


def _log_entry(row: dict) -> dict:
    return {"id": str(row["id"]), "participant": row["participant"] or "(site)", "visit": row["visit"] or "-",
            "category": row["category"], "description": row["description"], "occurred": row["occurred_on"],
            "identified": row["detected_at"][:10], "classification": row["classification"].replace("_", " "),
            "status": row["state"].replace("_", " ")}


async def _render(kind: str, template: str, data: dict, as_of: date, title: str, label: str) -> bytes:
    from trialcoord.adapters.render.documents import render_docx, render_pdf

    meta = {"created_at": f"{as_of.isoformat()}T00:00:00.000000Z", "title": title, "version_label": label}
    cache = binder.render_cache()
    if cache is not None:
        return await to_thread.run_sync(lambda: cache.render(kind, template, data, **meta))
    renderer = render_pdf if kind == "pdf" else render_docx
    return await to_thread.run_sync(lambda: renderer(template, data, **meta))


async def _audit_export(actor: str, record_type: str, record_id: str, values: dict) -> None:
    await audit_log.record_alone(actor, Change("export", record_type, record_id, None, values))


def _of_day(label: str, day: date) -> bool:
    return label == day.isoformat() or (label.startswith(day.isoformat() + ".") and label[11:].isdigit())


def _ordinal(label: str) -> int:
    return int(label[11:]) if len(label) > 11 else 1


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _date(text: str | None) -> date | None:
    return date.fromisoformat(text[:10]) if text else None


def _instant(text: str | None) -> datetime | None:
    """A stored UTC instant as a naive wall-clock datetime (XLSX has no zones; the column says UTC)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None) if text else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
