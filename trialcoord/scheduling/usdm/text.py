"""USDM values as one line of text: ids and labels for comments and the report, codes, YAML scalars."""

from __future__ import annotations

import json
import re
from typing import Any

# ---- helpers -------------------------------------------------------------------------------------------


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
