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

The parts: `datasets.py` reads a dataset (`read_dataset`, `Dataset`), `map_file.py` the `--map` YAML (`read_map`)
and checks it against the protocol (`check_map`), `values.py` says what a variable's value reads as (a --DTC
date, USUBJID, VISITNUM), `protocol_names.py` finds the protocol's visits and events by the labels and terms
the datasets give; this module maps the datasets to event rows (`to_rows`, reporting the `Mapping` used).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from trialcoord.kernel.problems import Problem
from trialcoord.scheduling.events_csv import EventRow
from trialcoord.scheduling.rules.protocol import Protocol
from trialcoord.scheduling.sdtm.datasets import Dataset
from trialcoord.scheduling.sdtm.map_file import check_map
from trialcoord.scheduling.sdtm.protocol_names import event_lookup, visit_code, visit_lookup
from trialcoord.scheduling.sdtm.values import dtc_date, norm, usubjid, variable_text, visit_number, visit_number_text

EARLY_END = ("early_termination", "early_discontinuation", "discontinuation", "early_withdrawal")
TREATMENT_END = ("end_of_treatment", "treatment_discontinuation", "end_of_study_treatment")
NOT_EARLY = {"COMPLETED", "SCREEN FAILURE"}  # a participation disposition that is no early termination
NO_ARM = {"SCRNFAIL", "NOTASSGN", "NOTTRT", ""}


@dataclass
class Mapping:
    """The mapping used, for `--dry-run` and the summary: label -> (what it became, rows)."""

    visits: dict[str, tuple[str, int]] = field(default_factory=dict)
    ds: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    dm: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # RFSTDTC / RFICDTC -> event, rows
    arms: dict[str, tuple[str | None, int]] = field(default_factory=dict)  # ARMCD -> arm (None: no arm), rows
    unused: list[str] = field(default_factory=list)  # map entries no row matched (a typo, or another file's)
    unscheduled: Counter = field(default_factory=Counter)


def to_rows(
    protocol: Protocol, sv: Dataset, ds: Dataset | None, dm: Dataset | None, mapping: dict
) -> tuple[list[EventRow], list[Problem], Mapping]:
    """Event rows of the datasets, every problem, and the mapping used."""
    used, problems, rows = Mapping(), check_map(mapping, protocol), []
    if problems:
        return [], problems, used
    arms_used: dict[str, tuple[str | None, int]] = {}
    sites, arms = _demographics(dm, protocol, mapping.get("arms", {}), problems, arms_used)
    demographics = {usubjid(record): (dm.name, number) for number, record in enumerate(dm.rows, 1)} if dm else {}
    visit_codes = visit_lookup(protocol)
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
        subject, label = usubjid(record), str(record.get("VISIT") or "").strip()
        visitnum = visit_number(record.get("VISITNUM"))
        day = dtc_date(record.get("SVSTDTC"))
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
        label = label or visit_number_text(visitnum)
        code = visit_code(label, visitnum, mapping.get("visits", {}), visit_codes)
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
        events = event_lookup(protocol)
        early = next((name for name in EARLY_END if name in protocol.events), None)
        treatment_end = next((name for name in TREATMENT_END if name in protocol.events), None)
        for number, record in enumerate(ds.rows, 1):
            subject, term = usubjid(record), str(record.get("DSDECOD") or "").strip()
            if not subject:
                problems.append(Problem("USUBJID is missing", ds.name, number, field="USUBJID"))
                continue
            disposition = variable_text(record.get("DSCAT")).upper() == "DISPOSITION EVENT"
            scope = variable_text(record.get("DSSCAT")).upper()
            if disposition and scope == "STUDY TREATMENT":  # the end of treatment, not of participation
                label = f"{term} (STUDY TREATMENT)"
                event = mapping.get("ds_treatment", {}).get(term, treatment_end)
            else:
                label = term
                event = mapping.get("ds", {}).get(term) or events.get(norm(term))
                if (
                    event is None
                    and disposition
                    and scope in ("", "STUDY PARTICIPATION")
                    and term.upper() not in NOT_EARLY
                    and term not in mapping.get("ds", {})
                ):
                    event = early
            counted = used.ds.get(label, (event, 0))
            used.ds[label] = (event, counted[1] + 1)
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
            day = dtc_date(record.get("DSSTDTC"))
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
            subject = usubjid(record)
            for var, event in targets.items():
                value = record.get(var)
                if not subject or event is None or value is None or not str(value).strip() or value != value:
                    continue  # not in the dataset, empty (a screen failure has no RFSTDTC), or not imported
                day = dtc_date(value)
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
                counted = used.dm.get(var, (event, 0))
                used.dm[var] = (event, counted[1] + 1)
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
        subject = usubjid(record)
        site = variable_text(record.get("SITEID"))
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
