"""Where a visit falls: its offset and the visit or event it counts from, from its timings (walked through
instances that are no visit), and its window. What the protocol format cannot express is listed as not mapped."""

from __future__ import annotations

from trialcoord.scheduling.usdm.durations import Duration, duration
from trialcoord.scheduling.usdm.text import _clean, _id
from trialcoord.scheduling.usdm.visits import _Visit


class _Placing:
    """Part of the converter (converter.py): the report's lists it adds to are the converter's."""

    not_mapped: list[str]
    unwindowed: list[str]
    subday: list[str]

    def _place(
        self,
        visit: _Visit,
        iid: str | None,
        anchor: str | None,
        instances: dict[str | None, dict],
        is_visit: set[str | None],
        by_from: dict[str | None, list[dict]],
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
        sides: list[Duration | None] = []
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
        for key, bound in zip(("windowLower", "windowUpper"), sides):
            if bound is not None and bound.mixed:
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
