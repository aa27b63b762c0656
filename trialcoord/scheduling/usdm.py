"""A CDISC USDM v4 study (JSON) becomes a protocol definition: YAML text whose comments say where each value
came from (USDM ids), and a list of everything that could not be mapped. Pure: no files, no clock.

Read as plain JSON rather than through the `usdm4` model: files written by other tools carry attributes that a
strict model refuses or lacks, and the mapping needs a handful of keys, each checked here with its path.

Mapping (docs/importing.md has the whole table):
- the first study design's main timeline (`mainTimeline: true`); its Fixed Reference instance is the event
  that is Study Day 1, named after that instance;
- each instance of that timeline with an encounter, in timeline order (entry, then each default), is a
  visit: name = encounter label, code from the instance's name (else the encounter's), number = position;
- its timing (`relativeFromScheduledInstanceId` = the instance): Before/After `value` is the offset,
  `windowLower`/`windowUpper` the window, `relativeToScheduledInstanceId` the `from` (the Day 1 event or that
  instance's visit; instances without an encounter in between are walked through, adding their offsets);
- another timeline with a Fixed Reference and whole-day timings becomes an event and conditional visits
  (`when:`); early termination and withdrawal end the schedule;
- adverse-event and unscheduled timelines, time points within a day, decisions' other branches, conditions
  and other study designs are listed as not mapped, never dropped silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem

_ISO = re.compile(
    r"^\s*([+-])?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?\s*$"
)
_ENDING = re.compile(r"early termination|discontinu|withdraw|terminat", re.I)
_SKIPPED_TIMELINES = (
    (
        re.compile(r"adverse event", re.I),
        "adverse-event visits repeat for every event; record them as unscheduled visits",
    ),
    (
        re.compile(r"unscheduled", re.I),
        "any visit not in the protocol is recorded as an unscheduled visit; it needs no definition",
    ),
)
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # YAML's and Python's line breaks
_ARMCD_LENGTH = 20  # SDTM ARMCD


@dataclass(frozen=True, slots=True)
class Duration:
    months: int = 0
    days: int = 0
    weeks: bool = False  # written in weeks in USDM, so kept in weeks when whole
    exact: bool = True  # False: a part of a day was dropped (USDM time points within a day)

    def __add__(self, other: Duration) -> Duration:
        return Duration(
            self.months + other.months, self.days + other.days, self.weeks and other.weeks, self.exact and other.exact
        )

    def __neg__(self) -> Duration:
        return Duration(-self.months, -self.days, self.weeks, self.exact)

    @property
    def mixed(self) -> bool:
        """Months and days together, which the protocol format cannot express (it refuses `P1M3D`)."""
        return bool(self.months and self.days)

    def text(self) -> str:
        """In the protocol format's own units: 2w, -42d, 1mo (never `mixed`: callers list those as not mapped)."""
        if self.months:
            return f"{self.months}mo"
        if self.weeks and self.days and self.days % 7 == 0:
            return f"{self.days // 7}w"
        return f"{self.days}d"


@dataclass(slots=True)
class Conversion:
    """The YAML written and the report; what the protocol holds is read back by parsing `text`."""

    text: str
    not_mapped: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Visit:
    instance: dict
    code: str
    name: str
    number: int
    ref: str | None = None  # an instance id (a visit's) or None for the timeline's event
    offset: Duration = Duration()
    early: Duration | None = None
    late: Duration | None = None
    timing_note: str = ""
    when: str | None = None
    event: str = ""
    arms: list[str] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    comment: str = ""


class _Reader:
    """Typed access to the JSON, each problem naming its path in the file."""

    def __init__(self, file: str, ignored: list[str] | None = None):
        self.file = file
        self.problems: list[Problem] = []
        self.ignored = set(ignored or ())  # paths `_typed` dropped: of the wrong type, not missing

    def get(self, node: Any, key: str, kind: type, path: str, required: bool = True) -> Any:
        value = node.get(key) if isinstance(node, dict) else None
        if value is None:
            where = f"{path}.{key}" if path else key
            if required and where in self.ignored:
                self.problems.append(
                    Problem(f"'{key}' should be {'an array' if kind is list else 'an object'}", self.file, field=where)
                )
            elif required:
                self.problems.append(Problem(f"missing '{key}'", self.file, field=path))
            return kind()
        if not isinstance(value, kind):
            self.problems.append(
                Problem(
                    f"'{key}' should be a{'n' if kind is list else ''} "
                    f"{ {dict: 'object', list: 'array', str: 'text'}.get(kind, kind.__name__) }",
                    self.file,
                    field=f"{path}.{key}" if path else key,
                )
            )
            return kind()
        return value

    def fail(self) -> None:
        if self.problems:
            raise InvalidInput(self.problems)


def parse_usdm(text: str | bytes, file: str) -> dict:
    try:
        document = json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text)
    except UnicodeDecodeError as error:
        raise InvalidInput([Problem(f"the file is not UTF-8 text (byte {error.start})", file)]) from None
    except json.JSONDecodeError as error:
        raise InvalidInput([Problem(f"not JSON: {error.msg}", file, line=error.lineno, column=error.colno)]) from None
    except (ValueError, RecursionError) as error:  # an integer of thousands of digits, nesting too deep
        raise InvalidInput([Problem(f"not JSON this importer can read: {error}", file)]) from None
    if not isinstance(document, dict) or "study" not in document:
        raise InvalidInput(
            [
                Problem(
                    "not a USDM study: the top level has no 'study' (a USDM v4 JSON file holds "
                    '{"study": {...}, "usdmVersion": "4.0.0"})',
                    file,
                )
            ]
        )
    return document


def duration(text: Any, where: str) -> Duration:
    """An ISO 8601 duration as days (or months); time of day is dropped, and said so."""
    match = _ISO.match(text) if isinstance(text, str) else None
    if match is None or text.strip() in ("P", "PT"):
        raise ValueError(f"{where}: '{text}' is not an ISO 8601 duration such as P14D or P2W")
    sign, years, months, weeks, days, hours, minutes, seconds = match.groups()
    seconds_total = int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)
    result = Duration(
        int(years or 0) * 12 + int(months or 0),
        int(weeks or 0) * 7 + int(days or 0) + int(seconds_total // 86400),
        weeks is not None and not days,
        seconds_total % 86400 == 0,
    )
    return -result if sign == "-" else result


def convert(
    document: dict,
    file: str,
    *,
    study: str | None = None,
    version: str | None = None,
    effective: date | None = None,
    today: date,
) -> Conversion:
    ignored: list[str] = []
    try:
        typed = _typed(document, "", ignored)
    except RecursionError:
        raise InvalidInput([Problem("nested too deeply to be a USDM study", file)]) from None
    converter = _Converter(typed, file, study, version, effective, today)
    converter.reader.ignored = set(ignored)
    if ignored:
        converter.not_mapped.append(f"{len(ignored)} value(s) of the wrong type were ignored: {_listing(ignored)}")
    return converter.run()


_LISTS = {
    "versions",
    "studyDesigns",
    "encounters",
    "activities",
    "epochs",
    "arms",
    "studyCells",
    "scheduleTimelines",
    "instances",
    "timings",
    "conditionAssignments",
    "studyIdentifiers",
    "organizations",
    "titles",
    "dateValues",
    "amendments",
    "conditions",
}
_CODES = {"type", "relativeToFrom"}


def _typed(node: Any, path: str, ignored: list[str]) -> Any:
    """The document with each value the mapping reads of the type it expects: ids and texts are strings, lists
    of objects are lists of objects, codes are objects. Anything else is dropped and its path kept in `ignored`,
    so a damaged or unusual file is reported, never a crash."""
    if not isinstance(node, dict):
        return node
    typed: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}" if path else key
        if key in _LISTS:
            if not isinstance(value, list):
                ignored.append(where)
                continue
            items = [item for item in value if isinstance(item, dict)]
            if len(items) != len(value):
                ignored.append(f"{where}[]")
            typed[key] = [_typed(item, f"{where}[{i}]", ignored) for i, item in enumerate(items)]
        elif key in _CODES or key == "study":
            if isinstance(value, dict):
                typed[key] = _typed(value, where, ignored)
            else:
                ignored.append(where)
        elif key.endswith("Ids"):
            if isinstance(value, list) and all(isinstance(item, str) for item in value):
                typed[key] = value
            else:
                ignored.append(where)
        elif key == "mainTimeline":
            typed[key] = value if isinstance(value, bool) else None
        elif isinstance(value, str) or value is None:
            typed[key] = value
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("Id"):
            typed[key] = str(value)
        elif isinstance(value, (dict, list)) and key not in ("id",) and not key.endswith("Id"):
            typed[key] = value  # not read by the mapping (extensionAttributes, notes, ...)
        else:
            ignored.append(where)
    return typed


class _Converter:
    def __init__(
        self, document: dict, file: str, study: str | None, version: str | None, effective: date | None, today: date
    ):
        self.reader = _Reader(file)
        self.document, self.file = document, file
        self.study_arg, self.version_arg, self.effective_arg, self.today = study, version, effective, today
        self.not_mapped: list[str] = []
        self.assumed: list[str] = []
        self.unwindowed: list[str] = []
        self.subday: list[str] = []
        self.codes: set[str] = set()

    # ---- the study ------------------------------------------------------------------------------------

    def run(self) -> Conversion:
        get = self.reader.get
        study = get(self.document, "study", dict, "")
        versions = get(study, "versions", list, "study")
        self.reader.fail()
        if not versions or not isinstance(versions[0], dict):
            raise InvalidInput([Problem("the study has no version", self.file, field="study.versions")])
        version = versions[0]
        for extra in versions[1:]:
            self.not_mapped.append(
                f"study version {_label(extra)} ({_id(extra)}): one protocol file holds one "
                "version; import it with its own --out"
            )
        designs = get(version, "studyDesigns", list, "study.versions[0]")
        self.reader.fail()
        if not designs:
            raise InvalidInput(
                [Problem("the version has no study design", self.file, field="study.versions[0].studyDesigns")]
            )
        design = designs[0]
        for extra in designs[1:]:
            self.not_mapped.append(f"study design {_label(extra)} ({_id(extra)}): only the first design is imported")
        self.path = "study.versions[0].studyDesigns[0]"
        self.encounters = {
            e.get("id"): e for e in get(design, "encounters", list, self.path, False) if isinstance(e, dict)
        }
        self.activities = {
            a.get("id"): a for a in get(design, "activities", list, self.path, False) if isinstance(a, dict)
        }
        self.epochs = {e.get("id"): e for e in get(design, "epochs", list, self.path, False) if isinstance(e, dict)}
        timelines = [t for t in get(design, "scheduleTimelines", list, self.path) if isinstance(t, dict)]
        self.reader.fail()
        if not timelines:
            raise InvalidInput(
                [
                    Problem(
                        "the study design has no schedule timeline", self.file, field=f"{self.path}.scheduleTimelines"
                    )
                ]
            )
        main = next((t for t in timelines if t.get("mainTimeline") is True), None)
        if main is None:
            main = timelines[0]
            self.assumed.append(
                f"no timeline says mainTimeline: true; the first, {_label(main)} ({_id(main)}), "
                "is taken as the main one"
            )
        header = self._header(study, version, design, main)
        arms = self._arms(design)
        events: dict[str, str] = {}  # name -> its YAML line (with comment)
        visits = self._timeline(main, events, main=True)
        for timeline in timelines:
            if timeline is not main:
                visits += self._timeline(timeline, events, main=False, first_number=len(visits) + 1)
        visits = self._placeable(visits)
        self._consent(visits, events)
        self._conditions(version, visits)
        if self.unwindowed:
            self.assumed.append(
                f"{len(self.unwindowed)} timing(s) give no window ({_listing(self.unwindowed)}): "
                "written as window 0d/0d, the target day itself"
            )
        if self.subday:
            self.assumed.append(f"time of day dropped from {_listing(self.subday)}: trialcoord schedules dates")
        text = self._render(header, events, arms, visits)
        return Conversion(text, self.not_mapped, self.assumed)

    def _header(self, study: dict, version: dict, design: dict, main: dict) -> dict[str, str]:
        identifiers = [i for i in version.get("studyIdentifiers") or [] if isinstance(i, dict) and i.get("text")]
        sponsors = {
            o.get("id")
            for o in version.get("organizations") or []
            if isinstance(o, dict) and "sponsor" in str((o.get("type") or {}).get("decode") or "").lower()
        }
        identifiers.sort(key=lambda i: i.get("scopeId") not in sponsors)  # the sponsor's protocol number first
        code = self.study_arg
        source = "the --out path"
        if code is None:
            raw = identifiers[0]["text"] if identifiers else str(study.get("name") or "")
            code = re.sub(r"[^A-Za-z0-9_-]+", "-", raw).strip("-")
            source = f"studyIdentifiers {_id(identifiers[0])} (the sponsor's)" if identifiers else "study.name"
        if not code:
            raise InvalidInput(
                [
                    Problem(
                        "no study code: the version has no studyIdentifiers and the study no name; "
                        "give --out protocols/STUDY/VERSION.yaml",
                        self.file,
                    )
                ]
            )
        label = self.version_arg or str(version.get("versionIdentifier") or "")
        version_note = "the --out path" if self.version_arg else f"versionIdentifier of {_id(version)}"
        amendments = [a for a in version.get("amendments") or [] if isinstance(a, dict)]
        if amendments:
            self.not_mapped.append(
                f"{len(amendments)} amendment(s) ({_listing([_label(a) for a in amendments])}): "
                "history of how this version came to be; an earlier version is its own file"
            )
        if not label:
            raise InvalidInput(
                [
                    Problem(
                        "no version label: versionIdentifier is empty; give --out protocols/STUDY/VERSION.yaml",
                        self.file,
                        field="study.versions[0]",
                    )
                ]
            )
        titles = {(t.get("type") or {}).get("decode"): t for t in version.get("titles") or [] if isinstance(t, dict)}
        title = next(
            (
                titles[k]
                for k in ("Official Study Title", "Brief Study Title", "Study Acronym")
                if k in titles and titles[k].get("text")
            ),
            None,
        )
        effective, effective_note = self._effective(version)
        return {
            "study": code,
            "study_note": f"{source}; USDM study {_clean(study.get('name')) or _id(study)}",
            "title": str(title["text"]) if title else str(study.get("label") or study.get("name") or code),
            "title_note": f"titles {_id(title)} ({_clean(title['type']['decode'])})" if title else "study name",
            "version": label,
            "version_note": version_note,
            "effective": effective.isoformat(),
            "effective_note": effective_note,
            "design": _clean(f"{_id(design)} {design.get('name') or ''}"),
            "timeline": f"{_id(main)} {_label(main)}",
            "usdm": _clean(self.document.get("usdmVersion") or "?"),
            "system": _clean(f"{self.document.get('systemName') or ''} {self.document.get('systemVersion') or ''}"),
        }

    def _effective(self, version: dict) -> tuple[date, str]:
        if self.effective_arg is not None:
            return self.effective_arg, "--effective"
        dated = []
        for value in version.get("dateValues") or []:
            kind = str((value.get("type") or {}).get("decode") or value.get("name") or "")
            try:
                dated.append(
                    (
                        0 if "effective" in kind.lower() else 1,
                        date.fromisoformat(str(value.get("dateValue"))),
                        f"dateValues {_id(value)} ({kind})",
                    )
                )
            except ValueError:
                self.not_mapped.append(f"date {_id(value)} '{value.get('dateValue')}' is not an ISO date")
        if dated:
            _, day, note = min(dated, key=lambda d: d[0])
            return day, note
        self.assumed.append(
            f"effective: the version has no dateValues; written as {self.today.isoformat()} (the "
            "day of import): set it to the date this version governs from, or give --effective"
        )
        return self.today, "no date in USDM: the day of import (see 'assumed' below)"

    def _arms(self, design: dict) -> list[tuple[str, str, str]]:
        self.arm_codes: dict[str, str] = {}
        arms = []
        for arm in design.get("arms") or []:
            if not isinstance(arm, dict):
                continue
            code = _unique(
                _code(str(arm.get("name") or arm.get("label") or ""))[:_ARMCD_LENGTH] or "ARM",
                set(self.arm_codes.values()),
            )
            self.arm_codes[arm.get("id")] = code
            arms.append((code, str(arm.get("label") or arm.get("name") or code), _id(arm)))
        self.cells: dict[str, set[str]] = {}
        for cell in design.get("studyCells") or []:
            if isinstance(cell, dict) and cell.get("armId") in self.arm_codes:
                self.cells.setdefault(cell.get("epochId"), set()).add(self.arm_codes[cell["armId"]])
        return arms

    # ---- timelines ------------------------------------------------------------------------------------

    def _timeline(self, timeline: dict, events: dict[str, str], main: bool, first_number: int = 1) -> list[_Visit]:
        name = f"timeline {_label(timeline)} ({_id(timeline)})"
        instances = {i.get("id"): i for i in timeline.get("instances") or [] if isinstance(i, dict)}
        timings = [t for t in timeline.get("timings") or [] if isinstance(t, dict)]
        text = " ".join(str(timeline.get(k) or "") for k in ("name", "label"))  # what it is, not what it mentions
        if not main:
            for pattern, why in _SKIPPED_TIMELINES:
                if pattern.search(text):
                    self.not_mapped.append(f"{name}: {why}")
                    return []
        anchor_timing = next((t for t in timings if _kind(t) == "fixed"), None)
        if anchor_timing is None:
            if main:
                raise InvalidInput(
                    [
                        Problem(
                            f"the main {name} has no Fixed Reference timing, so no date anchors its "
                            "visits (Study Day 1)",
                            self.file,
                            field=f"{self.path}.scheduleTimelines",
                        )
                    ]
                )
            self.not_mapped.append(f"{name}: no Fixed Reference timing anchors it")
            return []
        if not main and any(_has_time(t.get("value")) for t in timings if _kind(t) != "fixed"):
            values = ", ".join(str(t.get("value")) for t in timings if _kind(t) != "fixed")
            self.not_mapped.append(
                f"{name}: time points within a day ({values}); trialcoord schedules dates, so "
                "they belong to the procedures of the visit they happen at"
            )
            return []
        anchor = anchor_timing.get("relativeFromScheduledInstanceId")
        if anchor not in instances:
            if main:
                raise InvalidInput(
                    [
                        Problem(
                            f"the Fixed Reference {_id(anchor_timing)} of the main {name} names no "
                            f"instance of it ('{anchor}'), so no date anchors its visits",
                            self.file,
                            field=f"{self.path}.scheduleTimelines",
                        )
                    ]
                )
            self.not_mapped.append(f"{name}: its Fixed Reference {_id(anchor_timing)} names no instance of it")
            return []
        for extra in (t for t in timings if _kind(t) == "fixed" and t is not anchor_timing):
            self.not_mapped.append(f"{name}: a second Fixed Reference {_id(extra)}; only {_id(anchor_timing)} anchors")
        order = _order(timeline, instances)
        event = self._event_name(instances.get(anchor), timeline, main, events)
        ending = not main and bool(_ENDING.search(text))
        events[event] = (
            (f"  {_q(event)}: {{ends_schedule: true}}" if ending else f"  {_q(event)}: {{}}")
            + f"  # {'Fixed Reference' if main else 'entry'} of {name}"
            + (f", instance {_id(instances.get(anchor))}" if anchor in instances else "")
            + (f": {_clean(timeline.get('entryCondition'))}" if not main and timeline.get("entryCondition") else "")
        )
        if main:
            self.day_one = event
        has_encounters = any(i.get("encounterId") for i in instances.values())
        is_visit = {
            iid
            for iid, i in instances.items()
            if (i.get("encounterId") if main or has_encounters else i.get("activityIds"))
            and "Decision" not in str(i.get("instanceType"))
        }
        by_from: dict[str, list[dict]] = {}
        for timing in timings:
            by_from.setdefault(timing.get("relativeFromScheduledInstanceId"), []).append(timing)
        visits: list[_Visit] = []
        codes_taken = set(self.codes)
        seen_encounters: dict[str, int] = {}
        for iid in order:
            instance = instances[iid]
            if "Decision" in str(instance.get("instanceType")):
                self._decision(instance, instances)
                continue
            if iid not in is_visit:
                if iid != anchor and main and instance.get("activityIds"):
                    self.not_mapped.append(
                        f"instance {_id(instance)} ({_label(instance)}) has activities but no "
                        "encounter: not a visit; its timing is kept in the visits counted from it"
                    )
                continue
            encounter = self.encounters.get(instance.get("encounterId")) or {}
            visit_name = str(
                encounter.get("label")
                or encounter.get("name")
                or instance.get("label")
                or instance.get("name")
                or timeline.get("name")
                or _id(instance)
            )
            seen_encounters[visit_name] = seen_encounters.get(visit_name, 0) + 1
            if seen_encounters[visit_name] > 1:
                other = str(instance.get("label") or instance.get("name") or "")
                visit_name = (
                    f"{visit_name} ({other})"
                    if other and other != visit_name
                    else f"{visit_name} #{seen_encounters[visit_name]}"
                )
            code = _unique(
                _code(str(instance.get("name") or "")) or _code(str(encounter.get("name") or "")) or "V",
                codes_taken | set(events),
            )
            codes_taken.add(code)
            visit = _Visit(
                instance, code, visit_name, first_number + len(visits), when=None if main else event, event=event
            )
            visit.comment = f"instance {_id(instance)}" + (f", encounter {_id(encounter)}" if encounter else "")
            epoch = self.epochs.get(instance.get("epochId"))
            if epoch:
                visit.comment += f", epoch {_clean(epoch.get('name')) or _id(epoch)}"
                arms = self.cells.get(instance.get("epochId"), set())
                if arms and arms != set(self.arm_codes.values()):
                    visit.arms = sorted(arms)
            visit.procedures = list(
                dict.fromkeys(
                    str(self.activities[a].get("name") or self.activities[a].get("label"))
                    for a in instance.get("activityIds") or []
                    if a in self.activities
                )
            )
            if instance.get("timelineId"):
                self.not_mapped.append(
                    f"visit {code}: instance {_id(instance)} runs timeline "
                    f"{instance.get('timelineId')} within the visit"
                )
            if self._place(visit, iid, anchor, instances, is_visit, by_from, name):
                visits.append(visit)
        self.codes = codes_taken
        return visits

    def _placeable(self, visits: list[_Visit]) -> list[_Visit]:
        """The visits that can be written: not those counted from a visit that could not be placed, nor those in a
        circle of visits counted from each other (the format needs each `from` defined earlier)."""
        kept, placed = list(visits), set()
        pending = list(kept)
        while pending:  # the order `_dependency_order` will write them in
            ready = [v for v in pending if v.ref is None or v.ref in placed]
            if not ready:
                break
            for visit in ready:
                placed.add(visit.instance.get("id"))
                pending.remove(visit)
        for visit in pending:
            self.not_mapped.append(
                f"visit {visit.code} ({visit.name}): counted from instance {_clean(visit.ref)}, which is no visit"
                " written here (its own date could not be mapped, or the two count from each other)"
            )
        return [v for v in kept if v not in pending]

    def _event_name(self, instance: dict | None, timeline: dict, main: bool, events: dict[str, str]) -> str:
        if main:
            encounter = self.encounters.get((instance or {}).get("encounterId")) or {}
            candidates = [(instance or {}).get("label"), encounter.get("label"), (instance or {}).get("name")]
        else:
            candidates = [
                re.sub(r"\btimeline\b", "", str(timeline.get("name") or ""), flags=re.I),
                timeline.get("label"),
                timeline.get("entryCondition"),
            ]
        for candidate in [*candidates, "day_one" if main else "event"]:
            slug = re.sub(r"[^a-z0-9]+", "_", str(candidate or "").lower()).strip("_")
            if _EVENT_NAME.match(slug) and len(slug) >= 3 and slug not in events:
                return slug
        return _unique("event", set(events))

    def _place(
        self,
        visit: _Visit,
        iid: str,
        anchor: str,
        instances: dict,
        is_visit: set[str],
        by_from: dict[str, list[dict]],
        timeline: str,
    ) -> bool:
        """Offset and reference of a visit: its own timing, walked through instances that are no visit."""
        if iid == anchor:
            timing = next(t for t in by_from.get(iid, []) if _kind(t) == "fixed")
            visit.timing_note = f"{_id(timing)}: the Fixed Reference itself"
            return self._window(visit, timing)
        total, notes, current, first = Duration(weeks=True), [], iid, None
        for _ in range(len(instances) + 1):
            options = [t for t in by_from.get(current, []) if _kind(t) in ("before", "after")]
            if not options:
                self.not_mapped.append(
                    f"visit {visit.code} ({visit.name}, instance {_id(visit.instance)}) in "
                    f"{timeline}: no Before/After timing gives its date"
                    + (f" (walked to {current})" if current != iid else "")
                )
                return False
            timing = next((t for t in options if t.get("relativeToScheduledInstanceId") == anchor), options[0])
            for other in options:
                if other is not timing and current == iid:
                    self.not_mapped.append(f"visit {visit.code}: a second timing {_id(other)}; {_id(timing)} is used")
            first = first or timing
            try:
                step = duration(timing.get("value"), f"timing {_id(timing)} value")
            except ValueError as error:
                self.not_mapped.append(f"visit {visit.code} ({visit.name}): {error}")
                return False
            if not step.exact:
                self.subday.append(f"{_id(timing)} {timing.get('value')}")
            total = total + (-step if _kind(timing) == "before" else step)
            notes.append(_clean(f"{_id(timing)}: {(timing.get('type') or {}).get('decode')} {timing.get('value')}"))
            relation = _clean((timing.get("relativeToFrom") or {}).get("decode"))
            if relation and relation != "Start to Start":
                notes[-1] += f" ({relation})"
            target = timing.get("relativeToScheduledInstanceId")
            if target == anchor or target in is_visit:
                if total.mixed:
                    self.not_mapped.append(
                        f"visit {visit.code} ({visit.name}): its offset ({'; '.join(notes)}) mixes months and days,"
                        " which the protocol format cannot express"
                    )
                    return False
                visit.ref = None if target == anchor else target
                visit.offset = total
                visit.timing_note = "; ".join(notes) + (f" from {target}" if target != anchor else "")
                return self._window(visit, first)
            if target not in instances:
                self.not_mapped.append(
                    f"visit {visit.code} ({visit.name}): timing {_id(timing)} is relative to "
                    f"'{target}', which is not an instance of {timeline}"
                )
                return False
            current = target
        self.not_mapped.append(f"visit {visit.code} ({visit.name}): its timings go round in a circle")
        return False

    def _window(self, visit: _Visit, timing: dict) -> bool:
        """The visit's window from the timing; False (listed as not mapped) when the format cannot express it."""
        sides = []
        for key in ("windowLower", "windowUpper"):
            raw = timing.get(key)
            if raw in (None, ""):
                sides.append(None)
                continue
            try:
                side = duration(raw, f"timing {_id(timing)} {key}")
            except ValueError as error:
                self.not_mapped.append(f"visit {visit.code}: {error}; written as 0d")
                side = Duration()
            if not side.exact:
                self.subday.append(f"{_id(timing)} {key} {raw}")
            sides.append(Duration(abs(side.months), abs(side.days), side.weeks, side.exact))
        for key, side in zip(("windowLower", "windowUpper"), sides):
            if side is not None and side.mixed:
                self.not_mapped.append(
                    f"visit {visit.code} ({visit.name}): {key} {_clean(timing.get(key))} of timing {_id(timing)} mixes"
                    " months and days, which the protocol format cannot express"
                )
                return False
        if sides == [None, None]:
            self.unwindowed.append(_id(timing))
        visit.early, visit.late = (side or Duration() for side in sides)
        if timing.get("windowLabel"):
            visit.timing_note += f"; window {_clean(timing['windowLabel'])}"
        return True

    def _decision(self, instance: dict, instances: dict) -> None:
        default = instances.get(instance.get("defaultConditionId")) or {}
        for branch in instance.get("conditionAssignments") or []:
            target = instances.get(branch.get("conditionTargetId")) or {}
            self.not_mapped.append(
                f"decision {_label(instance)} ({_id(instance)}): branch '{_clean(branch.get('condition'))}' to "
                f"{_label(target)} ({_clean(branch.get('conditionTargetId'))}); the default path, to"
                f" {_label(default)}, is the schedule written"
            )

    def _consent(self, visits: list[_Visit], events: dict[str, str]) -> None:
        """Informed consent as an activity of a visit: the event that records it, so consent checks apply."""
        for visit in visits:
            if visit.when is None and any(re.search(r"informed consent", p, re.I) for p in visit.procedures):
                if "consent" not in events and "CONSENT" not in self.codes:
                    events["consent"] = (
                        f"  consent: {{consent: true}}  # activity 'Informed consent' of visit "
                        f"{visit.code} ({visit.name})"
                    )
                return

    def _conditions(self, version: dict, visits: list[_Visit]) -> None:
        where = {v.instance.get("id"): v.code for v in visits}
        for condition in version.get("conditions") or []:
            if not isinstance(condition, dict):
                continue
            at = [where[i] for i in condition.get("contextIds") or [] if i in where]
            scope = f" at visits {', '.join(at)}" if at else ""
            self.not_mapped.append(
                f"condition {condition.get('name') or ''} ({_id(condition)}){scope}: "
                f"'{_clean(condition.get('text'), 90)}' (free text, not a schedule rule)"
            )

    # ---- YAML -----------------------------------------------------------------------------------------

    def _render(self, header: dict, events: dict[str, str], arms: list, visits: list[_Visit]) -> str:
        lines = [
            f"# Imported from CDISC USDM {header['usdm']} ({header['system'] or 'unknown tool'}) by trialcoord "
            "protocol import-usdm:",
            f"# design {header['design']}, {header['timeline']}.",
            "# Each comment names the USDM object a value came from. Review the file against the protocol",
            "# document before loading it: what could not be mapped is listed at the end.",
            f"study: {_q(header['study'])}  # {header['study_note']}",
            f"title: {_q(header['title'])}  # {header['title_note']}",
            f"version: {_q(header['version'])}  # {header['version_note']}",
            f"effective: {header['effective']}  # {header['effective_note']}",
            f"day_one: {_q(self.day_one)}  # the main timeline's Fixed Reference is Study Day 1",
            "",
            "events:",
            *events.values(),
        ]
        if arms:
            lines += ["", "arms:"] + [
                f"  - {{code: {_q(code)}, name: {_q(name)}}}  # {arm_id}" for code, name, arm_id in arms
            ]
        lines += ["", "visits:"]
        code_of = {v.instance.get("id"): v.code for v in visits}
        for visit in _dependency_order(visits):
            source = visit.event if visit.ref is None else code_of[visit.ref]
            lines += [
                f"  - code: {_q(visit.code)}  # {visit.comment}",
                f"    number: {visit.number}",
                f"    name: {_q(visit.name)}",
                f"    from: {_q(source)}",
                f"    offset: {visit.offset.text()}  # {visit.timing_note}",
                f"    window: {{early: {visit.early.text() if visit.early else '0d'}, "
                f"late: {visit.late.text() if visit.late else '0d'}}}",
            ]
            if visit.when:
                lines.append(f"    when: {_q(visit.when)}  # a visit of that timeline: expected once it starts")
            if visit.arms:
                lines.append(
                    f"    arms: [{', '.join(_q(a) for a in visit.arms)}]  # the arms whose cells hold this epoch"
                )
            if visit.procedures:
                lines.append(f"    procedures: [{', '.join(_q(p) for p in visit.procedures)}]")
        for title, items in (("not mapped", self.not_mapped), ("assumed", self.assumed)):
            lines += ["", f"# {title}:" + ("" if items else " nothing")]
            lines += [f"#   - {_clean(item, 400)}" for item in items]
        # Every value and comment above is one line already; this keeps it so whatever a future edit interpolates.
        return "\n".join(_LINE_BREAK.sub(" ", line) for line in lines) + "\n"


# ---- helpers -------------------------------------------------------------------------------------------


def _dependency_order(visits: list[_Visit]) -> list[_Visit]:
    """Timeline order, except that a visit counted from another comes after it (the format requires it)."""
    placed: set[str] = set()
    pending, ordered = list(visits), []
    while pending:
        ready = [v for v in pending if v.ref is None or v.ref in placed]
        if not ready:  # a circle between visits cannot happen: _place follows timings forward only to visits
            ready = pending[:1]
        visit = ready[0]
        pending.remove(visit)
        ordered.append(visit)
        placed.add(visit.instance.get("id"))
    return ordered


def _order(timeline: dict, instances: dict[str, dict]) -> list[str]:
    """Instances from the entry along each default path, then any not reached, in file order."""
    order, seen = [], set()
    current = timeline.get("entryId")
    while current in instances and current not in seen:
        seen.add(current)
        order.append(current)
        current = instances[current].get("defaultConditionId")
    return order + [iid for iid in instances if iid not in seen]


def _kind(timing: dict) -> str:
    kind = timing.get("type") or {}
    decode = str(kind.get("decode") or "").lower()
    code = kind.get("code")
    if code == "C201358" or "fixed" in decode:
        return "fixed"
    if code == "C201357" or decode == "before":
        return "before"
    if code == "C201356" or decode == "after":
        return "after"
    return decode or "?"


def _has_time(value: Any) -> bool:
    try:
        return not duration(value, "").exact
    except ValueError:
        return False


def _code(text: str) -> str:
    return re.sub(r"[^A-Z0-9_-]+", "_", text.strip().upper()).strip("_")


def _unique(code: str, taken: set[str]) -> str:
    if code not in taken:
        return code
    n = 2
    while f"{code}_{n}" in taken:
        n += 1
    return f"{code}_{n}"


def _id(node: Any) -> str:
    return _clean(node.get("id") or "?") if isinstance(node, dict) else "?"


def _label(node: Any) -> str:
    if not isinstance(node, dict):
        return "?"
    return _clean(node.get("label") or node.get("name") or node.get("id") or "?")


def _clean(text: Any, limit: int = 200) -> str:
    """One line of text (every kind of line break, YAML's included, made a space), valid UTF-8, at most `limit`."""
    flat = " ".join(_utf8(str(text or "")).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _utf8(text: str) -> str:
    """A lone surrogate (from a JSON escape such as \\ud800) becomes '?': it cannot be written as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _listing(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _q(text: str) -> str:
    """A YAML scalar that reads back as this exact text: JSON's double-quoted strings are YAML's."""
    return json.dumps(_clean(text, 10**6), ensure_ascii=False)
