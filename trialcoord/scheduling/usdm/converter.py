"""The converter: the study, its first version and first design, the header and the arms; each timeline's visits
(timelines.py) and the YAML (writer.py) are its parts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.usdm.text import _clean, _code, _id, _label, _listing, _unique
from trialcoord.scheduling.usdm.timelines import _Timelines
from trialcoord.scheduling.usdm.typed_json import _Reader
from trialcoord.scheduling.usdm.visits import _Visit
from trialcoord.scheduling.usdm.writer import _Writer

_ARMCD_LENGTH = 20  # SDTM ARMCD


@dataclass(slots=True)
class Conversion:
    """The YAML written and the report; what the protocol holds is read back by parsing `text`."""

    text: str
    not_mapped: list[str] = field(default_factory=list)
    assumed: list[str] = field(default_factory=list)


class _Converter(_Timelines, _Writer):
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
        self.arm_codes: dict[str | None, str] = {}
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
        self.cells: dict[str | None, set[str]] = {}
        for cell in design.get("studyCells") or []:
            if isinstance(cell, dict) and cell.get("armId") in self.arm_codes:
                self.cells.setdefault(cell.get("epochId"), set()).add(self.arm_codes[cell["armId"]])
        return arms

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
