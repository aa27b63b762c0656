"""Each schedule timeline of the study design as visits: its Fixed Reference is an event, its instances with an
encounter (in timeline order) are visits, each placed by its timings (placing.py); timelines the protocol format
has no place for are listed as not mapped."""

from __future__ import annotations

import re

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.usdm.durations import _has_time
from trialcoord.scheduling.usdm.placing import _kind, _Placing
from trialcoord.scheduling.usdm.text import _clean, _code, _id, _label, _q, _unique
from trialcoord.scheduling.usdm.visits import _Visit

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


class _Timelines(_Placing):
    """Part of the converter (converter.py): reads the design's encounters, activities, epochs and arms' cells the
    converter collected, and adds to its codes and report."""

    file: str
    path: str
    encounters: dict
    activities: dict
    epochs: dict
    arm_codes: dict[str | None, str]  # by arm id (None: an arm without one)
    cells: dict[str | None, set[str]]  # arm codes by epoch id
    codes: set[str]
    day_one: str

    # ---- timelines ------------------------------------------------------------------------------------

    def _timeline(self, timeline: dict, events: dict[str, str], main: bool, first_number: int = 1) -> list[_Visit]:
        name = f"timeline {_label(timeline)} ({_id(timeline)})"
        instances: dict[str | None, dict] = {
            i.get("id"): i for i in timeline.get("instances") or [] if isinstance(i, dict)
        }
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
        by_from: dict[str | None, list[dict]] = {}
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

    def _decision(self, instance: dict, instances: dict) -> None:
        default = instances.get(instance.get("defaultConditionId")) or {}
        for branch in instance.get("conditionAssignments") or []:
            target = instances.get(branch.get("conditionTargetId")) or {}
            self.not_mapped.append(
                f"decision {_label(instance)} ({_id(instance)}): branch '{_clean(branch.get('condition'))}' to "
                f"{_label(target)} ({_clean(branch.get('conditionTargetId'))}); the default path, to"
                f" {_label(default)}, is the schedule written"
            )


# ---- helpers -------------------------------------------------------------------------------------------


def _order(timeline: dict, instances: dict[str | None, dict]) -> list[str | None]:
    """Instances from the entry along each default path, then any not reached, in file order."""
    order: list[str | None] = []
    seen: set[str | None] = set()
    current = timeline.get("entryId")
    while current in instances and current not in seen:
        seen.add(current)
        order.append(current)
        current = instances[current].get("defaultConditionId")
    return order + [iid for iid in instances if iid not in seen]
