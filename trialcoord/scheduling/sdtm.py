"""SDTM datasets in: SV (subject visits), DS (disposition) and DM (demographics), as SAS XPORT (read with
pyreadstat) or CSV with the same variables, turned into the rows an event import takes.

Default mapping, each part overridable by a small YAML (`--map`):
- SV: VISIT, else VISITNUM, to the protocol visit whose name or number matches (case, spacing, `_` and `-`
  ignored); a visit with no match is an unscheduled visit labelled VISIT. The date is SVSTDTC's date part.
- DS: DSDECOD to the event of the same name (`RANDOMIZED` to randomization or randomisation, `INFORMED
  CONSENT OBTAINED` to the protocol's consent event, `WITHDRAWAL BY SUBJECT` to withdrawal, `DEATH` to death);
  a disposition event of study participation (DSSCAT `STUDY PARTICIPATION` or none) with no event of its own,
  other than `COMPLETED` and `SCREEN FAILURE`, is the protocol's early termination (the participant left early);
  a disposition of study treatment (DSSCAT `STUDY TREATMENT`) is its end_of_treatment event, if it has one (its
  own `ds_treatment:` in the map). Terms without an event are listed, not imported.
- DM: SITEID (the site of a participant new to the study), ARMCD (the arm; SCRNFAIL and NOTASSGN are none),
  RFSTDTC (the date of the protocol's `day_one` event: SDTM's reference start is Study Day 1) and RFICDTC (the
  date of its consent event); `dm: {VARIABLE: EVENT or null}` in the map changes or drops either.
- `events: {EVENT: {sv: VISIT}}` dates an event by an SV visit (such as randomization by BASELINE).
Participants are USUBJID. Every problem names the dataset, the row (1 = the first data row) and the variable.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.events_csv import EventRow
from trialcoord.scheduling.rules.protocol import Protocol

NEEDED = {"SV": ("USUBJID", "SVSTDTC"), "DS": ("USUBJID", "DSDECOD", "DSSTDTC"), "DM": ("USUBJID",)}
SYNONYMS = {
    "randomized": ("randomization", "randomisation", "randomized"),
    "informed_consent_obtained": ("consent", "informed_consent"),
    "withdrawal_by_subject": ("withdrawal", "consent_withdrawn", "withdrawn"),
    "death": ("death", "died"),
    "completed": ("completed", "completion", "study_completion", "end_of_study"),
}
EARLY_END = ("early_termination", "early_discontinuation", "discontinuation", "early_withdrawal")
TREATMENT_END = ("end_of_treatment", "treatment_discontinuation", "end_of_study_treatment")
NOT_EARLY = {"COMPLETED", "SCREEN FAILURE"}  # a participation disposition that is no early termination
NO_ARM = {"SCRNFAIL", "NOTASSGN", "NOTTRT", ""}
MAP_KEYS = {"visits", "ds", "ds_treatment", "arms", "events", "dm"}
DM_DATES = ("RFSTDTC", "RFICDTC")


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str  # the file's name, as problems cite it
    domain: str  # SV, DS or DM
    rows: Sequence[dict[str, Any]]


class Columns(Sequence):
    """A dataset's rows over its columns (as pyreadstat returns them): each row's dict is made when it is read,
    so a million-row dataset is held once, as columns, not as a million dicts."""

    def __init__(self, columns: dict[str, list]):
        self.columns, self.names = columns, list(columns)
        self.count = len(next(iter(columns.values()), []))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        return {name: self.columns[name][index] for name in self.names}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = self.names
        for values in zip(*(self.columns[name] for name in names)):
            yield dict(zip(names, values))


@dataclass
class Mapping:
    """The mapping used, for `--dry-run` and the summary: label -> (what it became, rows)."""

    visits: dict[str, tuple[str, int]] = field(default_factory=dict)
    ds: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    dm: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # RFSTDTC / RFICDTC -> event, rows
    arms: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # ARMCD -> arm (None: no arm), rows
    unused: list[str] = field(default_factory=list)  # map entries no row matched (a typo, or another file's)
    unscheduled: Counter = field(default_factory=Counter)


def read_dataset(path: Path, domain: str) -> Dataset:
    """A dataset's rows from XPT (by the extension .xpt) or CSV; InvalidInput names the file."""
    name = path.name
    try:
        if path.suffix.lower() == ".xpt":
            import pyreadstat  # only for XPT files

            data, _ = pyreadstat.read_xport(str(path), output_format="dict")
            rows = Columns(
                {
                    key.upper(): values.tolist() if hasattr(values, "tolist") else list(values)
                    for key, values in data.items()
                }
            )
        else:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                reader = csv.reader(stream)
                header = [key.strip().upper() for key in next(reader, [])]
                values: list[list[str]] = [[] for _ in header]
                for record in reader:
                    if not record:
                        continue  # an empty line, as DictReader skips (a line of commas is a row: reported)
                    record += [""] * (len(header) - len(record))
                    for column, value in zip(values, record):
                        column.append(value)
            rows = Columns(dict(zip(header, values)))
    except FileNotFoundError:
        raise InvalidInput([Problem("no such file", name)]) from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInput([Problem(f"cannot be read as {domain} ({error})", name)]) from None
    except Exception as error:  # pyreadstat's ReadstatError and friends: a file that is not XPT
        raise InvalidInput(
            [Problem(f"is not a SAS transport (XPT) file ({type(error).__name__}: {error})", name)]
        ) from None
    missing = [var for var in NEEDED[domain] if rows and var not in rows[0]]
    if not rows:
        raise InvalidInput([Problem(f"the {domain} dataset has no rows", name)])
    if domain == "SV" and "VISIT" not in rows[0] and "VISITNUM" not in rows[0]:
        missing.append("VISIT")
    if missing:
        raise InvalidInput(
            [Problem(f"the {domain} dataset lacks the variable {var}", name, field=var) for var in missing]
        )
    return Dataset(name, domain, rows)


def read_map(path: Path | None) -> dict:
    """The `--map` YAML: `visits: {LABEL: CODE}`, `ds: {TERM: EVENT}`, `arms: {ARMCD: ARM}`,
    `events: {EVENT: {sv: VISIT}}`."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput([Problem(f"cannot be read as a mapping ({error})", path.name)]) from None
    if (
        not isinstance(loaded, dict)
        or not set(loaded) <= MAP_KEYS
        or not all(isinstance(value, dict) for value in loaded.values())
    ):
        raise InvalidInput([Problem(f"a mapping holds only {', '.join(sorted(MAP_KEYS))}, each a mapping", path.name)])
    problems = []
    for key, entries in loaded.items():
        for label, target in entries.items():
            if key == "events":
                ok = isinstance(target, dict) and set(target) == {"sv"} and isinstance(target["sv"], str)
                shape = "{sv: VISIT}"
            elif key == "dm":
                ok = label.upper() in DM_DATES and (target is None or isinstance(target, str) and bool(target.strip()))
                shape = f"an event or null, for {' or '.join(DM_DATES)}"
            else:
                ok, shape = isinstance(target, str) and bool(target.strip()), "a name"
            if not ok:
                problems.append(
                    Problem(f"{key}: {label} must map to {shape}, not {target!r}", path.name, field=f"{key}.{label}")
                )
    if problems:
        raise InvalidInput(problems)
    return {
        key: {(str(k).upper() if key == "dm" else str(k)): v for k, v in value.items()} for key, value in loaded.items()
    }


def check_map(mapping: dict, protocol: Protocol) -> list[Problem]:
    """A map's targets against the protocol: visit codes it defines, its events and arms; each problem names
    the entry and what it could be."""
    problems = []
    codes = ", ".join(v.code for v in protocol.visits)
    for label, code in mapping.get("visits", {}).items():
        if protocol.resolve_visit_code(code) is None:
            problems.append(
                Problem(
                    f"'{label}' maps to {code}, which is no visit of protocol version"
                    f" {protocol.version} (visits: {codes})",
                    "--map",
                    field=f"visits.{label}",
                )
            )
    events = ", ".join(protocol.events)
    for key in ("ds", "ds_treatment", "dm"):
        for label, target in mapping.get(key, {}).items():
            if target is not None and target not in protocol.events:
                problems.append(
                    Problem(
                        f"'{label}' maps to {target}, which is no event of protocol version"
                        f" {protocol.version} (events: {events})",
                        "--map",
                        field=f"{key}.{label}",
                    )
                )
    for event in mapping.get("events", {}):
        if event not in protocol.events:
            problems.append(
                Problem(
                    f"{event} is no event of protocol version {protocol.version} (events: {events})",
                    "--map",
                    field=f"events.{event}",
                )
            )
    arms = ", ".join(sorted(protocol.arm_codes)) or "none"
    for label, arm in mapping.get("arms", {}).items():
        if arm not in protocol.arm_codes:
            problems.append(
                Problem(
                    f"'{label}' maps to {arm}, which is no arm of protocol version {protocol.version} (arms: {arms})",
                    "--map",
                    field=f"arms.{label}",
                )
            )
    return problems


def _norm(text: Any) -> str:
    return re.sub(r"[\s_\-]+", "_", str(text).strip().lower())


def _day(value: Any) -> date | None:
    """SDTM --DTC's date part; None when partial (2013-01) or missing. (A numeric SAS date with a date format
    comes from pyreadstat as a date or datetime.)"""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    try:
        return date.fromisoformat(text[:10]) if len(text) >= 10 and text[4] == "-" and text[7] == "-" else None
    except ValueError:
        return None


def to_rows(
    protocol: Protocol, sv: Dataset, ds: Dataset | None, dm: Dataset | None, mapping: dict
) -> tuple[list[EventRow], list[Problem], Mapping]:
    """Event rows of the datasets, every problem, and the mapping used."""
    used, problems, rows = Mapping(), check_map(mapping, protocol), []
    if problems:
        return [], problems, used
    arms_used: dict[str, tuple[str | None, int]] = {}
    sites, arms = _demographics(dm, protocol, mapping.get("arms", {}), problems, arms_used)
    demographics = {_subject(record): (dm.name, number) for number, record in enumerate(dm.rows, 1)} if dm else {}
    visit_codes = _visit_lookup(protocol)
    dating = {
        str(spec.get("sv")): event
        for event, spec in mapping.get("events", {}).items()
        if isinstance(spec, dict) and spec.get("sv")
    }
    seen: dict[tuple[str, str], tuple[date, str, int]] = {}

    def add(dataset: Dataset, number: int, var: str, subject: str, event: str, day: date, is_event: bool) -> None:
        first = seen.setdefault((subject, event), (day, dataset.name, number))
        scheduled = is_event or protocol.resolve_visit_code(event) is not None
        if first[0] != day and scheduled:
            problems.append(
                Problem(
                    f"participant {subject}: {event} is also given as {first[0]} in {first[1]} row {first[2]}",
                    dataset.name,
                    number,
                    field=var,
                )
            )
            return
        rows.append(
            EventRow(
                number,
                subject,
                event,
                day,
                arms.get(subject),
                is_event,
                sites.get(subject),
                dataset.name,
                var,
                demographics.get(subject),
            )
        )

    for number, record in enumerate(sv.rows, 1):
        subject, label = _subject(record), str(record.get("VISIT") or "").strip()
        visitnum = _number(record.get("VISITNUM"))
        day = _day(record.get("SVSTDTC"))
        if not subject:
            problems.append(Problem("USUBJID is missing", sv.name, number, field="USUBJID"))
            continue
        if not label and visitnum is None:
            problems.append(
                Problem(f"participant {subject}: neither VISIT nor VISITNUM is given", sv.name, number, field="VISIT")
            )
            continue
        if day is None:
            problems.append(
                Problem(
                    f"participant {subject}: SVSTDTC '{record.get('SVSTDTC') or ''}' is not a full date (YYYY-MM-DD)",
                    sv.name,
                    number,
                    field="SVSTDTC",
                )
            )
            continue
        label = label or _number_text(visitnum)
        code = _visit_code(label, visitnum, mapping.get("visits", {}), visit_codes)
        if code is None:
            used.unscheduled[label] += 1
            code = label
        else:
            kept = used.visits.get(label, (code, 0))
            used.visits[label] = (code, kept[1] + 1)
        add(sv, number, "SVSTDTC", subject, code, day, False)
        if label in dating:
            add(sv, number, "SVSTDTC", subject, dating[label], day, True)
    if ds is not None:
        events = _event_lookup(protocol)
        early = next((name for name in EARLY_END if name in protocol.events), None)
        treatment_end = next((name for name in TREATMENT_END if name in protocol.events), None)
        for number, record in enumerate(ds.rows, 1):
            subject, term = _subject(record), str(record.get("DSDECOD") or "").strip()
            if not subject:
                problems.append(Problem("USUBJID is missing", ds.name, number, field="USUBJID"))
                continue
            disposition = _text(record.get("DSCAT")).upper() == "DISPOSITION EVENT"
            scope = _text(record.get("DSSCAT")).upper()
            if disposition and scope == "STUDY TREATMENT":  # the end of treatment, not of participation
                label = f"{term} (STUDY TREATMENT)"
                event = mapping.get("ds_treatment", {}).get(term, treatment_end)
            else:
                label = term
                event = mapping.get("ds", {}).get(term) or events.get(_norm(term))
                if (
                    event is None
                    and disposition
                    and scope in ("", "STUDY PARTICIPATION")
                    and term.upper() not in NOT_EARLY
                    and term not in mapping.get("ds", {})
                ):
                    event = early
            kept = used.ds.get(label, (event, 0))
            used.ds[label] = (event, kept[1] + 1)
            if event is None:
                continue  # listed in the mapping as not imported
            if event not in protocol.events:
                problems.append(
                    Problem(
                        f"the mapping sends {term} to {event}, which is no event of protocol version"
                        f" {protocol.version}",
                        ds.name,
                        number,
                        field="DSDECOD",
                    )
                )
                continue
            day = _day(record.get("DSSTDTC"))
            if day is None:
                problems.append(
                    Problem(
                        f"participant {subject}: DSSTDTC '{record.get('DSSTDTC') or ''}' is not a"
                        " full date (YYYY-MM-DD)",
                        ds.name,
                        number,
                        field="DSSTDTC",
                    )
                )
                continue
            add(ds, number, "DSSTDTC", subject, event, day, True)
    if dm is not None:
        targets = {"RFSTDTC": protocol.day_one, "RFICDTC": protocol.consent_event, **mapping.get("dm", {})}
        for number, record in enumerate(dm.rows, 1):
            subject = _subject(record)
            for var, event in targets.items():
                value = record.get(var)
                if not subject or event is None or value is None or not str(value).strip() or value != value:
                    continue  # not in the dataset, empty (a screen failure has no RFSTDTC), or not imported
                day = _day(value)
                if day is None:
                    problems.append(
                        Problem(
                            f"participant {subject}: {var} '{value}' is not a full date (YYYY-MM-DD)",
                            dm.name,
                            number,
                            field=var,
                        )
                    )
                    continue
                kept = used.dm.get(var, (event, 0))
                used.dm[var] = (event, kept[1] + 1)
                add(dm, number, var, subject, event, day, True)
    used.arms = arms_used
    seen_labels = set(used.visits) | set(used.unscheduled)
    seen_terms = {label.removesuffix(" (STUDY TREATMENT)") for label in used.ds}
    used.unused = (
        [f"visits.{label}" for label in mapping.get("visits", {}) if label not in seen_labels]
        + [
            f"events.{event}"
            for event, spec in mapping.get("events", {}).items()
            if str(spec.get("sv")) not in seen_labels
        ]
        + [f"{key}.{term}" for key in ("ds", "ds_treatment") for term in mapping.get(key, {}) if term not in seen_terms]
        + [f"arms.{armcd}" for armcd in mapping.get("arms", {}) if armcd not in arms_used]
    )
    return rows, problems, used


def _demographics(
    dm: Dataset | None,
    protocol: Protocol,
    arm_map: dict,
    problems: list[Problem],
    used: dict[str, tuple[str | None, int]],
) -> tuple[dict[str, str], dict[str, str]]:
    sites: dict[str, str] = {}
    arms: dict[str, str] = {}
    if dm is None:
        return sites, arms
    for number, record in enumerate(dm.rows, 1):
        subject = _subject(record)
        site = _text(record.get("SITEID"))
        if site:
            sites[subject] = site
        armcd = str(record.get("ARMCD") or "").strip()
        arm = arm_map.get(armcd, armcd)
        if armcd in NO_ARM and armcd not in arm_map:
            used[armcd] = (None, used.get(armcd, (None, 0))[1] + 1)
            continue
        if arm not in protocol.arm_codes:
            known = ", ".join(sorted(protocol.arm_codes)) or "none"
            problems.append(
                Problem(
                    f"participant {subject}: ARMCD '{armcd}' is not an arm of protocol version"
                    f" {protocol.version} (arms: {known}); map it with arms: in --map",
                    dm.name,
                    number,
                    field="ARMCD",
                )
            )
            continue
        arms[subject] = arm
        used[armcd] = (arm, used.get(armcd, (arm, 0))[1] + 1)
    return sites, arms


def _text(value: Any) -> str:
    """A character variable's text; a number read from XPT as a float is written as an integer when whole."""
    if isinstance(value, float):
        return "" if value != value else (f"{value:.0f}" if value.is_integer() else f"{value:g}")
    return str(value or "").strip()


def _subject(record: dict) -> str:
    return _text(record.get("USUBJID"))


def _number(value: Any) -> float | None:
    """VISITNUM as a number, from XPT (float, NaN when missing) or CSV (text)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def _visit_lookup(protocol: Protocol) -> dict[str, str]:
    lookup = {}
    for visit in protocol.visits:
        if visit.repeat is None:
            lookup.setdefault(_norm(visit.name), visit.code)
            for one, other in (("termination", "discontinuation"), ("discontinuation", "termination")):
                if one in _norm(visit.name):  # "EARLY DISCONTINUATION" is the Early Termination visit
                    lookup.setdefault(_norm(visit.name).replace(one, other), visit.code)
            lookup.setdefault(_norm(visit.code), visit.code)
            lookup.setdefault(f"#{visit.number:g}", visit.code)
    return lookup


def _visit_code(label: str, visitnum: Any, mapped: dict, lookup: dict[str, str]) -> str | None:
    if label in mapped:
        return str(mapped[label])
    code = lookup.get(_norm(label)) if label else None
    if code is None and visitnum is not None:
        code = lookup.get(f"#{visitnum:g}")
    return code


def _number_text(visitnum: float | None) -> str:
    return "" if visitnum is None else f"{visitnum:g}"


def _event_lookup(protocol: Protocol) -> dict[str, str]:
    lookup = {_norm(name): name for name in protocol.events}
    for term, names in SYNONYMS.items():
        found = next((name for name in names if name in protocol.events), None)
        if term == "informed_consent_obtained":
            found = protocol.consent_event or found
        if found:
            lookup.setdefault(term, found)
    return lookup
