"""The data a document is rendered from: checked against its template, as canonical JSON, and the facts its
footer shows (where the rendering came from); `validate` refuses what rendering would refuse, without rendering."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.pdf import instant, stamp
from trialcoord.kernel.render.templates import Template, template_named


def canonical_json(data: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as error:  # a date, a set, a circular reference: not JSON
        raise InvalidInput([Problem(f"must be JSON values only: {error}", field="data")]) from None


def check_data(template: Template, data: Mapping[str, Any]) -> None:
    """Every missing required key at once, each named by its path, before a template trips over the first."""
    problems = [
        Problem("is required", field=key) for key in template.fields if not key.endswith("?") and key not in data
    ]
    for key, item_keys in template.rows.items():
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
            problems.append(Problem("must be a list of objects", field=key))
            continue
        for n, item in enumerate(items):
            for spec in item_keys:
                name = spec.rstrip("?[]")
                if name not in item:
                    if not spec.endswith("?"):
                        problems.append(Problem("is required", field=f"{key}[{n}].{name}"))
                elif spec.endswith("[]") and not isinstance(item[name], list):  # a string would iterate by letter
                    problems.append(Problem("must be a list", field=f"{key}[{n}].{name}"))
    if problems:
        raise InvalidInput(problems)


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """What rendering adds to checked data: the footer's facts, which templates read as `doc`, and the data's
    canonical JSON, attached to the document."""

    doc: dict[str, str]  # title, version_label, created_at, stamp, short_hash
    canonical: bytes


def prepare(
    kind: str, template: str, data: Mapping[str, Any], created_at: str, title: str, version_label: str
) -> PreparedDocument:
    spec = template_named(template, kind)
    if not isinstance(data, Mapping):
        raise InvalidInput([Problem("must be an object", field="data")])
    try:
        instant(created_at)
    except (TypeError, ValueError):
        raise InvalidInput([Problem(f"is not an ISO 8601 instant: {created_at!r}", field="created_at")]) from None
    check_data(spec, data)
    canonical = canonical_json(data)
    # The footer shows where this rendering came from: a reader can hash the attached data.json and compare.
    doc = {
        "title": title,
        "version_label": version_label,
        "created_at": created_at,
        "stamp": stamp(created_at),
        "short_hash": "data sha256:" + hashlib.sha256(canonical).hexdigest()[:12],
    }
    return PreparedDocument(doc, canonical)


def validate(
    kind: str, template: str, data: Mapping[str, Any], *, created_at: str, title: str, version_label: str
) -> None:
    """Raise the InvalidInput `render_pdf`/`render_docx` would raise for these inputs, without rendering."""
    if kind not in ("pdf", "docx"):
        raise InvalidInput([Problem(f"must be pdf or docx, not {kind!r}", field="kind")])
    prepare(kind, template, data, created_at, title, version_label)
