"""The protocol YAML: header, events, arms and visits, each value with a comment naming the USDM object it came
from, then what was not mapped and what was assumed."""

from __future__ import annotations

import re

from trialcoord.scheduling.usdm.text import _clean, _q
from trialcoord.scheduling.usdm.visits import _Visit

_LINE_BREAK = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # YAML's and Python's line breaks


class _Writer:
    """Part of the converter (converter.py): writes what it found, and its report."""

    day_one: str
    not_mapped: list[str]
    assumed: list[str]

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
    placed: set[str | None] = set()  # instance ids (None: an instance without one)
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
