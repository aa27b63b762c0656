"""The SDTM datasets' contents (SDTMIG 3.4; compliance-reference.md): trial visits (TV) and arms (TA) from the
protocol, and per participant their visits (SV), deviations (DV with SUPPDV), disposition (DS) and demographics
(DM), from plain records a store read. Pure: no clock, file or database; the privacy mode is applied here, value
by value, so no dataset is held twice.

Decisions (each also stated in its variable's `rule`, which Define-XML carries):
- VISITNUM: a protocol visit keeps its number; occurrence k of a repeating visit numbered N is N + (k-1)/1000
  (the schedule engine stops at 1,000 occurrences, so it stays below N + 1); an unscheduled visit (no number in
  the visits table) is numbered after the participant's last visit done before it (by date): that visit's
  VISITNUM + j/1,000,000 for the j-th unscheduled visit since (999 fit between two visits done). Two equal
  numbers of one participant are an error.
- VISITDY: the planned study day, counted from the protocol's day one through the chain of `from` references in
  calendar days; null when the chain reaches another event or counts months or business days.
- EPOCH: SCREENING before RFSTDTC (or with no RFSTDTC), FOLLOW-UP after the end of treatment (the first recorded
  event that ends the schedule or ends treatment), TREATMENT from RFSTDTC up to that day.
- TA: three elements per arm, one per epoch: SCRN (screening), the arm's treatment (ETCD = ARMCD) and FU
  (follow-up); trialcoord models no finer elements.
- DV: the deviations that stand (not resolved by data correction, not classified "not a protocol deviation"),
  each participant's numbered by record id (DVSEQ), so earlier numbers keep across transfers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from operator import itemgetter

from trialcoord.deviations.rules.deviation_trends import NOT_STANDING_CLASSES, NOT_STANDING_STATES
from trialcoord.exports.rules import privacy as pv
from trialcoord.exports.rules.scope import Privacy
from trialcoord.exports.rules.sdtm import Dataset, Kind, Origin, Value, Variable, check, study_day
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.rules.durations import BUSINESS_DAYS, DAYS, Duration
from trialcoord.scheduling.rules.protocol import ACTUAL, Arm, Protocol, VisitDefinition

Row = dict[str, Value]

SCREENING, TREATMENT, FOLLOW_UP = "SCREENING", "TREATMENT", "FOLLOW-UP"
REPEAT_STEP, UNSCHEDULED_STEP = 1000, 1_000_000  # VISITNUM denominators (see the module's docstring)
UNSCHEDULED = "UNSCHEDULED"  # an unscheduled visit's VISIT under Safe Harbor (its recorded label is free text)
RANDOMIZATION_EVENTS = ("randomization", "randomisation", "randomized")
TREATMENT_END_EVENTS = ("last_dose", "end_of_treatment", "treatment_discontinuation", "end_of_study_treatment")
DISPOSITION_TERMS = {  # an ending event's DSDECOD (NCI's NCOMPLT); any other ending event is OTHER
    "withdrawal": "WITHDRAWAL BY SUBJECT",
    "consent_withdrawn": "WITHDRAWAL BY SUBJECT",
    "withdrawn": "WITHDRAWAL BY SUBJECT",
    "death": "DEATH",
    "died": "DEATH",
    "lost_to_follow_up": "LOST TO FOLLOW-UP",
    "completed": "COMPLETED",
    "completion": "COMPLETED",
    "study_completion": "COMPLETED",
    "end_of_study": "COMPLETED",
}
CONSENT, RANDOMIZED, OTHER = "INFORMED CONSENT OBTAINED", "RANDOMIZED", "OTHER"
MILESTONE, DISPOSITION = "PROTOCOL MILESTONE", "DISPOSITION EVENT"
WITHHELD_SV = "SV rows of arm-limited visits (blinding)"
WITHHELD_DV = "DV records of arm-limited visits (blinding)"
WITHHELD_NO_SUBJECT = "DV records without a participant (site-level; DV needs USUBJID)"
NOT_STANDING = "DV records resolved by data correction or not a protocol deviation"
_REPEAT_SUFFIX = re.compile(r"#\d+$")  # LABEL#2: an import's second date of one unscheduled label
_ROW = re.compile(r", row (\d+),")


# --- the records a store reads ---


@dataclass(frozen=True, slots=True)
class Subject:
    """A participant as the datasets need them; dates from their recorded events and consents (`subject`)."""

    subject_id: str
    usubjid: str
    site: str
    arm: str | None = None
    reference_start: date | None = None  # RFSTDTC: the day of the protocol's day-one event
    treatment_end: date | None = None  # the first event that ends the schedule or treatment
    first_consent: date | None = None  # RFICDTC
    age: int | None = None  # completed years at first consent, unmasked (DM applies the privacy mode)


@dataclass(frozen=True, slots=True)
class EventRecorded:
    event: str
    day: date


@dataclass(frozen=True, slots=True)
class ConsentSigned:
    signed_on: date
    label: str | None  # the consent version's label (or a paper consent's), None when unknown


@dataclass(frozen=True, slots=True)
class VisitDone:
    """A visit with its actual date, as the visits table numbers it (`number` None: unscheduled)."""

    code: str
    occurrence: int
    name: str
    number: float | None
    actual: date


@dataclass(frozen=True, slots=True)
class DeviationRecord:
    """A deviation as it stood on the as-of date."""

    id: int
    refid: str  # DVREFID: the record's name in the audit trail
    site: str
    subject_id: str | None
    visit: str | None  # the occurrence's code
    rule: str | None  # None: recorded by hand
    description: str
    category: str
    subcategory: str | None
    classification: str
    state: str
    occurred_on: date | None
    closed_on: date | None
    site_reason: str | None


@dataclass(frozen=True, slots=True)
class Design:
    """The study's design and what the package may show: `protocol` is the version in force on the as-of date
    (TV, TA, events), `versions` every version, to place visit codes an earlier one defined."""

    study: str
    protocol: Protocol
    versions: tuple[Protocol, ...] = ()
    privacy: Privacy = Privacy.CODED
    arms_shown: bool = True
    _visits: dict[str, tuple[VisitDefinition, int, Protocol] | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # A study has a few thousand distinct dates and visit codes: one string and one planned day each, shared by
    # the million rows that name them.
    _dates: dict[date, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)
    _days: dict[str, int | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def dtc(self, day: date | None) -> str | None:
        if day is None:
            return None
        if day not in self._dates:
            self._dates[day] = pv.dtc(day, self.privacy)
        return self._dates[day]

    def usubjid(self, subject_id: str) -> str:
        return f"{self.study}-{subject_id}"

    def definition(self, code: str) -> tuple[VisitDefinition, int, Protocol] | None:
        """The visit definition and occurrence of a recorded code, from the current version first."""
        if code not in self._visits:
            found = None
            for protocol in (self.protocol, *reversed(self.versions)):
                resolved = protocol.resolve_visit_code(code)
                if resolved is not None:
                    found = (*resolved, protocol)
                    break
            self._visits[code] = found
        return self._visits[code]

    def arm_limited(self, code: str | None) -> bool:
        """Whether a visit is done in some arms only, so that it would reveal the arm of who had it."""
        found = self.definition(code) if code else None
        return found is not None and _arm_limited(found[0], found[2])

    def planned_day(self, code: str) -> int | None:
        if code not in self._days:
            found = self.definition(code)
            delta = None if found is None else planned_delta(found[2], found[0], found[1])
            self._days[code] = None if delta is None else (delta + 1 if delta >= 0 else delta)
        return self._days[code]

    def arm_name(self, code: str) -> str | None:
        for protocol in (self.protocol, *reversed(self.versions)):
            for arm in protocol.arms:
                if arm.code == code:
                    return arm.name
        return None


def _arm_limited(visit: VisitDefinition, protocol: Protocol) -> bool:
    return visit.arms is not None and not protocol.arm_codes <= visit.arms


def arm_limited_definitions(versions: Iterable[Protocol]) -> frozenset[str]:
    """The visit definitions' codes (`C{n}D1` as written) that some arms only have in any of `versions`: a blinded
    report counts none of them, since a participant may follow any version and a count per site would be the
    number there in those arms."""
    return frozenset(v.code for protocol in versions for v in protocol.visits if _arm_limited(v, protocol))


def subject(
    design: Design,
    subject_id: str,
    site: str,
    arm: str | None,
    events: Iterable[EventRecorded],
    consents: Iterable[ConsentSigned],
    born: date | None = None,
) -> Subject:
    """A participant's reference dates from their events and consents (on or before the as-of date)."""
    protocol, dates = design.protocol, {e.event: e.day for e in events}
    ending = [
        day
        for name, day in dates.items()
        if name in TREATMENT_END_EVENTS or (name in protocol.events and protocol.events[name].ends_schedule)
    ]
    consent_days = [c.signed_on for c in consents]
    if protocol.consent_event in dates:
        consent_days.append(dates[protocol.consent_event])
    first = min(consent_days, default=None)
    return Subject(
        subject_id,
        design.usubjid(subject_id),
        site,
        arm,
        dates.get(protocol.day_one),
        min(ending, default=None),
        first,
        pv.years_between(born, first) if born is not None and first is not None else None,
    )


# --- variables ---


def _v(
    name: str, label: str, kind: Kind = Kind.TEXT, origin: Origin = Origin.ASSIGNED, rule: str | None = None
) -> Variable:
    return Variable(name, label, kind, origin, rule)


STUDYID = _v("STUDYID", "Study Identifier")
USUBJID = _v("USUBJID", "Unique Subject Identifier", rule="STUDYID-SUBJID")
EPOCH_RULE = (
    "SCREENING before RFSTDTC (or when there is none); FOLLOW-UP after the end of treatment (the first recorded"
    " event that ends the schedule or treatment); TREATMENT from RFSTDTC to that day"
)
STUDY_DAY_RULE = "date - RFSTDTC + 1 on or after RFSTDTC, else date - RFSTDTC (no day 0)"
VISITNUM_RULE = (
    "the protocol's visit number; occurrence k of a repeating visit numbered N: N + (k-1)/1000; an unscheduled"
    " visit: the VISITNUM of the participant's last visit before it + j/1000000 for the j-th since"
)
VISITDY_RULE = (
    "planned study day: the calendar days from the protocol's day one through the visits' from references"
    " (no day 0); null when the chain reaches another event or counts months or business days"
)


def _domain(name: str) -> Variable:
    return _v("DOMAIN", "Domain Abbreviation", rule=f"always {name}")


def _dtc(
    name: str, label: str, privacy: Privacy, origin: Origin = Origin.COLLECTED, base: str | None = None
) -> Variable:
    origin = Origin.DERIVED if privacy is Privacy.SAFE_HARBOR else origin
    return _v(name, label, origin=origin, rule=pv.rule(base, privacy, pv.YEAR_ONLY))


def _day_variable(name: str, label: str, privacy: Privacy) -> Variable:
    return _v(name, label, Kind.NUMBER, Origin.DERIVED, pv.rule(STUDY_DAY_RULE, privacy, pv.STUDY_DAYS_KEPT))


def tv_variables() -> tuple[Variable, ...]:
    return (
        STUDYID,
        _domain("TV"),
        _v("VISITNUM", "Visit Number", Kind.NUMBER, Origin.PROTOCOL, VISITNUM_RULE),
        _v("VISIT", "Visit Name", origin=Origin.PROTOCOL),
        _v("VISITDY", "Planned Study Day of Visit", Kind.NUMBER, Origin.DERIVED, VISITDY_RULE),
        _v("ARMCD", "Planned Arm Code", origin=Origin.PROTOCOL, rule="set when the visit is for some arms only"),
        _v("ARM", "Description of Planned Arm", origin=Origin.PROTOCOL),
        _v("TVSTRL", "Visit Start Rule", origin=Origin.PROTOCOL, rule="the protocol's target and window opening"),
        _v("TVENRL", "Visit End Rule", origin=Origin.PROTOCOL, rule="the protocol's window closing"),
    )


def ta_variables() -> tuple[Variable, ...]:
    return (
        STUDYID,
        _domain("TA"),
        _v("ARMCD", "Planned Arm Code", origin=Origin.PROTOCOL),
        _v("ARM", "Description of Planned Arm", origin=Origin.PROTOCOL),
        _v(
            "TAETORD",
            "Planned Order of Element within Arm",
            Kind.NUMBER,
            rule="1 screening, 2 the arm's treatment, 3 follow-up",
        ),
        _v("ETCD", "Element Code", rule="SCRN, the arm's code for its treatment, FU"),
        _v("ELEMENT", "Description of Element", rule="Screening, the arm's name, Follow-up"),
        _v("EPOCH", "Epoch", rule=f"always {TREATMENT}"),
    )


def sv_variables(privacy: Privacy) -> tuple[Variable, ...]:
    visit_rule = "the visit's name; an unscheduled visit's recorded label"
    if privacy is Privacy.SAFE_HARBOR:
        visit_rule += f", which Safe Harbor replaces with {UNSCHEDULED}"
    return (
        STUDYID,
        _domain("SV"),
        USUBJID,
        _v("VISITNUM", "Visit Number", Kind.NUMBER, Origin.DERIVED, VISITNUM_RULE),
        _v("VISIT", "Visit Name", origin=Origin.DERIVED, rule=visit_rule),
        _v("VISITDY", "Planned Study Day of Visit", Kind.NUMBER, Origin.DERIVED, VISITDY_RULE),
        _v("EPOCH", "Epoch", origin=Origin.DERIVED, rule=EPOCH_RULE),
        _dtc("SVSTDTC", "Start Date/Time of Visit", privacy),
        _dtc("SVENDTC", "End Date/Time of Visit", privacy, base="the visit's date: a visit is recorded as one day"),
        _day_variable("SVSTDY", "Study Day of Start of Visit", privacy),
    )


SV_NAMES = tuple(v.name for v in sv_variables(Privacy.CODED))  # the same in every privacy mode


def dv_variables(privacy: Privacy) -> tuple[Variable, ...]:
    harbor = privacy is Privacy.SAFE_HARBOR
    return (
        STUDYID,
        _domain("DV"),
        USUBJID,
        _v("DVSEQ", "Sequence Number", Kind.NUMBER, rule="the participant's deviations numbered by record id"),
        _v("DVREFID", "Reference ID", rule="the deviation's record name in the site's audit trail"),
        _v(
            "DVTERM",
            "Protocol Deviation Term",
            origin=Origin.DERIVED if harbor else Origin.COLLECTED,
            rule=pv.rule("the deviation's description", privacy, CODED_TERM),
        ),  # fmt: skip
        _v("DVDECOD", "Protocol Deviation Coded Term", rule="the subcategory's controlled term (TransCelerate)"),
        _v("DVCAT", "Category for Protocol Deviation", rule="the category (TransCelerate)"),
        _v(
            "DVSCAT",
            "Subcategory for Protocol Deviation",
            origin=Origin.DERIVED,
            rule="the detection rule that found it; null for one recorded by hand",
        ),  # fmt: skip
        _v("EPOCH", "Epoch", origin=Origin.DERIVED, rule=EPOCH_RULE),
        _dtc(
            "DVSTDTC",
            "Start Date/Time of Deviation",
            privacy,
            base="the visit's date, or the closing of its window when missed",
        ),  # fmt: skip
        _day_variable("DVSTDY", "Study Day of Start of Deviation", privacy),
    )


CODED_TERM = "DVDECOD (else DVCAT) in place of the description (HIPAA Safe Harbor)"


def suppdv_variables() -> tuple[Variable, ...]:
    return (
        STUDYID,
        _v("RDOMAIN", "Related Domain Abbreviation", rule="always DV"),
        USUBJID,
        _v("IDVAR", "Identifying Variable", rule="always DVSEQ"),
        _v("IDVARVAL", "Identifying Variable Value", rule="the DV record's DVSEQ"),
        _v("QNAM", "Qualifier Variable Name"),
        _v("QLABEL", "Qualifier Variable Label"),
        _v("QVAL", "Data Value", origin=Origin.DERIVED, rule="per QNAM; see QORIG"),
        _v("QORIG", "Origin"),
    )


def ds_variables(privacy: Privacy) -> tuple[Variable, ...]:
    return (
        STUDYID,
        _domain("DS"),
        USUBJID,
        _v("DSSEQ", "Sequence Number", Kind.NUMBER, rule="the participant's records numbered by date"),
        _v(
            "DSTERM",
            "Reported Term for the Disposition Event",
            origin=Origin.DERIVED,
            rule="the milestone, or the protocol's event name in upper case",
        ),  # fmt: skip
        _v(
            "DSDECOD",
            "Standardized Disposition Term",
            origin=Origin.DERIVED,
            rule="consent: INFORMED CONSENT OBTAINED; randomization: RANDOMIZED; an ending event by its name"
            " (withdrawal: WITHDRAWAL BY SUBJECT, death: DEATH, completion: COMPLETED), else OTHER",
        ),  # fmt: skip
        _v(
            "DSCAT",
            "Category for Disposition Event",
            origin=Origin.DERIVED,
            rule="PROTOCOL MILESTONE for consent and randomization, DISPOSITION EVENT for events ending the schedule",
        ),
        _v(
            "DSSCAT",
            "Subcategory for Disposition Event",
            origin=Origin.DERIVED,
            rule="consent: the consent version's label; an ending event: STUDY TREATMENT when it ends treatment,"
            " else STUDY PARTICIPATION",
        ),  # fmt: skip
        _v("EPOCH", "Epoch", origin=Origin.DERIVED, rule=EPOCH_RULE),
        _dtc("DSSTDTC", "Start Date/Time of Disposition Event", privacy),
        _day_variable("DSSTDY", "Study Day of Start of Disposition Event", privacy),
    )


def dm_variables(privacy: Privacy) -> tuple[Variable, ...]:
    return (
        STUDYID,
        _domain("DM"),
        USUBJID,
        _v("SUBJID", "Subject Identifier for the Study", origin=Origin.COLLECTED),
        _dtc(
            "RFSTDTC",
            "Subject Reference Start Date/Time",
            privacy,
            Origin.DERIVED,
            "the date of the protocol's day-one event (study day 1)",
        ),  # fmt: skip
        _dtc("RFICDTC", "Date/Time of Informed Consent", privacy, Origin.DERIVED, "the date of the first consent"),
        _v("SITEID", "Study Site Identifier", origin=Origin.COLLECTED, rule="the site's code"),
        _v(
            "AGE",
            "Age",
            Kind.NUMBER,
            Origin.DERIVED,
            pv.rule(
                "completed years at the first consent, from the encrypted birth date; null when the"
                " installation cannot read it",
                privacy,
                pv.AGE_GROUPED,
            ),
        ),  # fmt: skip
        _v("AGEU", "Age Units", rule="YEARS when AGE is given"),
        _v(
            "ARMCD",
            "Planned Arm Code",
            origin=Origin.COLLECTED,
            rule="the participant's arm when the study is open-label or the package unblinded, else null",
        ),
        _v("ARM", "Description of Planned Arm", origin=Origin.PROTOCOL, rule="the protocol's name of ARMCD"),
    )


# --- building a dataset, naming the participant or deviation of a value that does not fit ---


class Collector:
    """Rows of one dataset as they are built (tuples in the variables' order, no mapping kept), then checked."""

    def __init__(self, name: str, label: str, variables: Sequence[Variable]):
        self.name, self.label, self.variables = name, label, tuple(variables)
        self.names = tuple(v.name for v in self.variables)
        self.rows: list[tuple[Value, ...]] = []
        self._values = itemgetter(*self.names) if len(self.names) > 1 else None

    def add(self, row: Mapping[str, Value]) -> None:
        """A row keyed by variable name; a name it lacks is a null."""
        try:
            if self._values is not None:
                self.rows.append(self._values(row))
                return
        except KeyError:
            pass
        self.rows.append(tuple(row.get(n) for n in self.names))

    def extend(self, rows: Iterable[tuple[Value, ...]]) -> None:
        """Rows as tuples in the variables' order."""
        self.rows.extend(rows)

    def dataset(self) -> Dataset:
        built = _without_trailing_blanks(Dataset(self.name, self.label, self.variables, tuple(self.rows)))
        self.rows = []
        try:
            check(built)
        except InvalidInput as error:
            raise InvalidInput([self._named(p, built) for p in error.problems]) from None
        return built

    def _named(self, problem: Problem, built: Dataset) -> Problem:
        match = _ROW.search(problem.message)
        if match is None:
            return problem
        row = dict(zip(built.names, built.rows[int(match.group(1)) - 1]))
        who = [f"participant {row['USUBJID']}"] if row.get("USUBJID") else []
        if row.get("DVREFID"):
            who.append(f"deviation {row['DVREFID']}")
        elif self.name.startswith("SUPP") and row.get("IDVARVAL"):
            who.append(f"{row.get('IDVAR')} {row['IDVARVAL']}")
        if not who:
            return problem
        remedy = ""
        if "variable DVTERM" in problem.message or (
            self.name.startswith("SUPP") and "variable QVAL" in problem.message
        ):
            remedy = "; correct the record's text, or make the package in safe-harbor mode (free text becomes its code)"
        return Problem(
            f"{problem.message} ({', '.join(who)}){remedy}", problem.file, problem.line, problem.column, problem.field
        )


def _without_trailing_blanks(data: Dataset) -> Dataset:
    """Text as SAS transport holds it: trailing blanks are padding there, so the XPT drops them; the CSV, define.xml's
    lengths and the XPT agree only if the rows drop them too. Looked for among each column's distinct values, so a
    dataset without any is not walked again."""
    profile = data.profile()
    trimmed: dict[int, dict[Value, Value]] = {}
    for index, variable in enumerate(data.variables):
        if variable.kind is Kind.TEXT:
            found = {v: v.rstrip(" ") for v in profile.values[variable.name] if isinstance(v, str) and v.endswith(" ")}
            if found:
                trimmed[index] = {v: (t or None) for v, t in found.items()}  # all blanks: missing, as SAS reads it
    if not trimmed:
        return data
    rows = tuple(
        tuple(trimmed[i].get(value, value) if i in trimmed else value for i, value in enumerate(row))
        for row in data.rows
    )
    return Dataset(data.name, data.label, data.variables, rows)


def build(name: str, label: str, variables: Sequence[Variable], rows: Iterable[Mapping[str, Value]]) -> Dataset:
    collector = Collector(name, label, variables)
    for row in rows:
        collector.add(row)
    return collector.dataset()


# --- trial design: TV and TA ---


def _days(duration: Duration) -> int | None:
    return duration.amount if duration.unit == DAYS or duration.amount == 0 else None


def planned_delta(protocol: Protocol, visit: VisitDefinition, occurrence: int = 1, depth: int = 0) -> int | None:
    """Calendar days from day one to the visit's planned date, or None when they are not fixed."""
    offset = _days(visit.offset)
    if offset is None or depth > len(protocol.visits):
        return None
    if visit.reference_name == protocol.day_one:
        base: int | None = 0
    else:
        earlier = protocol.visits_by_code.get(visit.reference_name)
        base = None if earlier is None else planned_delta(protocol, earlier, 1, depth + 1)
    if base is None:
        return None
    delta = base + offset
    if occurrence > 1:
        every = _days(visit.repeat.every) if visit.repeat is not None else None
        if every is None:
            return None
        delta += every * (occurrence - 1)
    return delta


def repeat_number(number: float, occurrence: int) -> float:
    return round(number + (occurrence - 1) / REPEAT_STEP, 6)


def trial_visits(design: Design, occurrences: Mapping[str, int] | None = None) -> Dataset:
    """TV: every visit of the protocol in force; a repeating one once per occurrence up to its count (an open-ended
    one up to the highest occurrence done, `occurrences` by definition code, at least 1); an arm-limited visit
    once per arm."""
    protocol, occurrences = design.protocol, occurrences or {}
    rows: list[tuple[float, str, Row]] = []
    owners: dict[float, str] = {}
    problems = []
    for visit in protocol.visits:
        count = 1
        if visit.repeat is not None:
            count = visit.repeat.count or max(1, occurrences.get(visit.code, 1))
        arms: list[Arm | None] = [None]
        if _arm_limited(visit, protocol):
            arms = [a for a in protocol.arms if visit.arms is not None and a.code in visit.arms]
        for occurrence in range(1, count + 1):
            number = repeat_number(visit.number, occurrence)
            code = visit.code_for(occurrence)
            if owners.setdefault(number, code) != code:
                problems.append(
                    Problem(
                        f"dataset TV: visit {code} would take VISITNUM {number:g}, which is {owners[number]}'s"
                        f" (occurrence k of a repeating visit numbered N is N + (k-1)/{REPEAT_STEP})",
                        field="VISITNUM",
                    )
                )
            delta = planned_delta(protocol, visit, occurrence)
            for arm in arms:
                rows.append(
                    (
                        number,
                        arm.code if arm else "",
                        {
                            "STUDYID": design.study,
                            "DOMAIN": "TV",
                            "VISITNUM": number,
                            "VISIT": visit.name_for(occurrence),
                            "VISITDY": None if delta is None else (delta + 1 if delta >= 0 else delta),
                            "ARMCD": arm.code if arm else None,
                            "ARM": arm.name if arm else None,
                            "TVSTRL": _start_rule(protocol, visit, occurrence),
                            "TVENRL": _end_rule(visit),
                        },
                    )
                )
    if problems:
        raise InvalidInput(problems)
    return build("TV", "Trial Visits", tv_variables(), (row for _, _, row in sorted(rows, key=lambda k: k[:2])))


def _duration(duration: Duration) -> str:
    unit = {DAYS: "day", BUSINESS_DAYS: "business day"}.get(duration.unit, "month")
    amount = abs(duration.amount)
    return f"{amount} {unit}{'' if amount == 1 else 's'}"


def _start_rule(protocol: Protocol, visit: VisitDefinition, occurrence: int) -> str:
    ref = visit.reference_name
    named = ref if ref in protocol.events else f"visit {ref} ({visit.reference} date)"
    if occurrence > 1 and visit.repeat is not None:
        chain = "actual" if visit.chain == ACTUAL else "planned"
        target = f"{_duration(visit.repeat.every)} after occurrence {occurrence - 1} ({chain} date)"
    elif visit.offset.amount == 0:
        target = f"on the day of {named}"
    else:
        target = f"{_duration(visit.offset)} {'before' if visit.offset.amount < 0 else 'after'} {named}"
    early = visit.window.early
    opens = "no earliest date" if early is None else f"window opens {_duration(early)} before the target"
    when = f"; only when {visit.when} is recorded" if visit.when else ""
    return f"Target {target}; {opens}{when}"


def _end_rule(visit: VisitDefinition) -> str:
    late = visit.window.late
    return "no latest date" if late is None else f"window closes {_duration(late)} after the target"


def trial_arms(design: Design) -> Dataset | None:
    """TA, each arm's elements in order: screening, the arm's treatment, follow-up (the epochs SV, DV and DS use);
    None when the protocol has no arms."""
    if not design.protocol.arms:
        return None
    rows: list[Row] = []
    for arm in design.protocol.arms:
        elements = (("SCRN", "Screening", SCREENING), (arm.code, arm.name, TREATMENT), ("FU", "Follow-up", FOLLOW_UP))
        for order, (code, element, period) in enumerate(elements, start=1):
            rows.append(
                {
                    "STUDYID": design.study,
                    "DOMAIN": "TA",
                    "ARMCD": arm.code,
                    "ARM": arm.name,
                    "TAETORD": order,
                    "ETCD": code,
                    "ELEMENT": element,
                    "EPOCH": period,
                }
            )
    return build("TA", "Trial Arms", ta_variables(), rows)


# --- a participant's rows: SV, DV with SUPPDV, DS, DM ---


def epoch(day: date | None, who: Subject) -> str | None:
    if day is None:
        return None
    if who.reference_start is None or day < who.reference_start:
        return SCREENING
    if who.treatment_end is not None and day > who.treatment_end:
        return FOLLOW_UP
    return TREATMENT


def _dy(day: date | None, who: Subject) -> int | None:
    return study_day(day, who.reference_start) if day is not None and who.reference_start is not None else None


def visit_numbers(who: Subject, visits: Iterable[VisitDone]) -> list[tuple[float, VisitDone]]:
    """Each visit with its VISITNUM (see the module's docstring), in date order."""
    ordered = sorted(visits, key=lambda v: (v.actual, v.number is None, v.number or 0.0, v.occurrence, v.code))
    numbered, last, since = [], 0.0, 0
    seen: dict[float, str] = {}
    for visit in ordered:
        if visit.number is not None:
            number = last = repeat_number(visit.number, visit.occurrence)
            since = 0
        else:
            since += 1
            number = round(last + since / UNSCHEDULED_STEP, 6)
        if seen.setdefault(number, visit.code) != visit.code:
            raise InvalidInput(
                [
                    Problem(
                        f"dataset SV, participant {who.usubjid}: visits {seen[number]} and {visit.code} would both"
                        f" be VISITNUM {number:g}",
                        field="VISITNUM",
                    )
                ]
            )
        numbered.append((number, visit))
    return numbered


def sv_records(
    design: Design, who: Subject, visits: Iterable[VisitDone], withheld: Counter[str]
) -> list[tuple[Value, ...]]:
    """The participant's SV rows by VISITNUM, as tuples in `sv_variables`' order (a million rows: no mapping
    each); in a blinded package those of arm-limited visits are withheld before numbering, so that an unscheduled
    visit's VISITNUM does not follow a withheld visit's number and reveal the arm."""
    rows: list[tuple[Value, ...]] = []
    study, usubjid, start = design.study, who.usubjid, who.reference_start
    dtc, planned_day = design.dtc, design.planned_day
    if not design.arms_shown:
        every = list(visits)
        visits = [visit for visit in every if not design.arm_limited(visit.code)]
        withheld[WITHHELD_SV] += len(every) - len(visits)
    for number, visit in visit_numbers(who, visits):
        actual = visit.actual
        day = dtc(actual)
        if start is None:
            study_days = None
        else:  # `study_day`, inlined: a million calls
            delta = (actual - start).days
            study_days = delta + 1 if delta >= 0 else delta
        if visit.number is not None:
            visit_name: str | None = visit.name
            planned = planned_day(visit.code)
        else:
            visit_name, planned = pv.text(_REPEAT_SUFFIX.sub("", visit.code), UNSCHEDULED, design.privacy), None
        rows.append((study, "SV", usubjid, number, visit_name, planned, epoch(actual, who), day, day, study_days))
    rows.sort(key=_BY_VISITNUM)
    return rows


_BY_VISITNUM = itemgetter(3)


def sv_rows(design: Design, who: Subject, visits: Iterable[VisitDone], withheld: Counter[str]) -> list[Row]:
    """`sv_records` keyed by variable name."""
    return [dict(zip(SV_NAMES, row)) for row in sv_records(design, who, visits, withheld)]


def stands(record: DeviationRecord) -> bool:
    return record.state not in NOT_STANDING_STATES and record.classification not in NOT_STANDING_CLASSES


def dv_rows(
    design: Design, who: Subject, records: Iterable[DeviationRecord], withheld: Counter[str]
) -> list[tuple[Row, list[Row]]]:
    """The participant's DV rows, each with its SUPPDV rows (classification, state, closure, the site's reason)."""
    out: list[tuple[Row, list[Row]]] = []
    for record in sorted(records, key=lambda r: r.id):
        if not stands(record):
            withheld[NOT_STANDING] += 1
            continue
        if not design.arms_shown and design.arm_limited(record.visit):
            withheld[WITHHELD_DV] += 1
            continue
        seq = len(out) + 1
        decod = record.subcategory
        dvcat = record.category.upper()
        dv: Row = {
            "STUDYID": design.study,
            "DOMAIN": "DV",
            "USUBJID": who.usubjid,
            "DVSEQ": seq,
            "DVREFID": record.refid,
            "DVTERM": pv.text(record.description, decod or dvcat, design.privacy),
            "DVDECOD": decod,
            "DVCAT": dvcat,
            "DVSCAT": record.rule.replace("_", " ").upper() if record.rule else None,
            "EPOCH": epoch(record.occurred_on, who),
            "DVSTDTC": design.dtc(record.occurred_on),
            "DVSTDY": _dy(record.occurred_on, who),
        }
        out.append((dv, _supp(design, who, seq, record)))
    return out


CLASSIFICATIONS = {  # TransCelerate's words
    "important": "IMPORTANT",
    "non_important": "NON-IMPORTANT",
    "not_a_protocol_deviation": "NOT A PROTOCOL DEVIATION",
}
SUPP_QUALIFIERS = (  # QNAM, QLABEL, QORIG
    ("DVCLASS", "Deviation Classification", "Assigned"),
    ("DVSTATE", "Deviation Review State", "Assigned"),
    ("DVCLSDTC", "Date Deviation Closed", "Derived"),
    ("DVREAS", "Reason Given by the Site", "Collected"),
)


def _supp(design: Design, who: Subject, seq: int, record: DeviationRecord) -> list[Row]:
    values = {
        "DVCLASS": CLASSIFICATIONS.get(record.classification, record.classification.replace("_", " ").upper()),
        "DVSTATE": record.state.replace("_", " ").upper(),
        "DVCLSDTC": design.dtc(record.closed_on),
        "DVREAS": pv.text(record.site_reason, None, design.privacy),
    }
    return [
        {
            "STUDYID": design.study,
            "RDOMAIN": "DV",
            "USUBJID": who.usubjid,
            "IDVAR": "DVSEQ",
            "IDVARVAL": str(seq),
            "QNAM": qnam,
            "QLABEL": qlabel,
            "QVAL": values[qnam],
            "QORIG": qorig,
        }
        for qnam, qlabel, qorig in SUPP_QUALIFIERS
        if values[qnam]
    ]


def fingerprint(dv: Row, supp: Sequence[Row]) -> str:
    """SHA-256 of a DV record's values and its SUPPDV rows' as delivered: a transfer compares it with the last."""
    payload = [sorted(dv.items()), [sorted(row.items()) for row in supp]]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode("ascii")).hexdigest()


def ds_rows(
    design: Design, who: Subject, consents: Sequence[ConsentSigned], events: Iterable[EventRecorded]
) -> list[Row]:
    """Consents (one each; the consent event alone when no consent is on record), randomization, and the events
    that end the schedule."""
    protocol = design.protocol
    found: list[tuple[date, str, str, str, str | None]] = []  # date, DSTERM, DSDECOD, DSCAT, DSSCAT
    for consent in consents:
        found.append((consent.signed_on, CONSENT, CONSENT, MILESTONE, consent.label))
    for event in events:
        if event.event == protocol.consent_event and not consents:
            found.append((event.day, CONSENT, CONSENT, MILESTONE, None))
        elif event.event in RANDOMIZATION_EVENTS:
            found.append((event.day, RANDOMIZED, RANDOMIZED, MILESTONE, None))
        elif event.event in protocol.events and protocol.events[event.event].ends_schedule:
            term = DISPOSITION_TERMS.get(event.event, OTHER)
            scope = "STUDY TREATMENT" if event.event in TREATMENT_END_EVENTS else "STUDY PARTICIPATION"
            found.append((event.day, event.event.replace("_", " ").upper(), term, DISPOSITION, scope))
    found.sort(key=lambda f: (f[0], f[3] != MILESTONE, f[1]))
    return [
        {
            "STUDYID": design.study,
            "DOMAIN": "DS",
            "USUBJID": who.usubjid,
            "DSSEQ": seq,
            "DSTERM": term,
            "DSDECOD": decod,
            "DSCAT": cat,
            "DSSCAT": scat,
            "EPOCH": epoch(day, who),
            "DSSTDTC": design.dtc(day),
            "DSSTDY": _dy(day, who),
        }
        for seq, (day, term, decod, cat, scat) in enumerate(found, start=1)
    ]


def dm_row(design: Design, who: Subject) -> Row:
    arm = who.arm if design.arms_shown else None
    age = pv.age(who.age, design.privacy)
    return {
        "STUDYID": design.study,
        "DOMAIN": "DM",
        "USUBJID": who.usubjid,
        "SUBJID": who.subject_id,
        "RFSTDTC": design.dtc(who.reference_start),
        "RFICDTC": design.dtc(who.first_consent),
        "SITEID": who.site,
        "AGE": age,
        "AGEU": "YEARS" if age is not None else None,
        "ARMCD": arm,
        "ARM": design.arm_name(arm) if arm else None,
    }


LABELS = {
    "TV": "Trial Visits",
    "TA": "Trial Arms",
    "SV": "Subject Visits",
    "DV": "Protocol Deviations",
    "SUPPDV": "Supplemental Qualifiers for DV",
    "DS": "Disposition",
    "DM": "Demographics",
}


def collectors(privacy: Privacy) -> dict[str, Collector]:
    """Empty collectors of the participant-level datasets, in the package's order."""
    return {
        "SV": Collector("SV", LABELS["SV"], sv_variables(privacy)),
        "DV": Collector("DV", LABELS["DV"], dv_variables(privacy)),
        "SUPPDV": Collector("SUPPDV", LABELS["SUPPDV"], suppdv_variables()),
        "DS": Collector("DS", LABELS["DS"], ds_variables(privacy)),
        "DM": Collector("DM", LABELS["DM"], dm_variables(privacy)),
    }
