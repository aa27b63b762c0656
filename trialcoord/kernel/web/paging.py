"""Keyset pages for every list page: a sort column, its direction, an opaque cursor and a page size.

A list is read `size + 1` rows at a time past the cursor (the sort key of the last row shown, with the row's
unique tail so ties never repeat or skip), never with OFFSET, so page 70 costs what page 1 costs. The cursor is
opaque to users (URL-safe base64 of JSON) and checked on the way in: a tampered one is a 400 naming `after`.
Stores build their SQL from `PageRequest.sort`, `descending` and `after`; lists computed in Python (a few
hundred rows at most) use `page_in_memory` with the same links."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from litestar.exceptions import ValidationException

T = TypeVar("T")
Key = tuple[Any, ...]
DEFAULT_SIZE = 50
MAX_SIZE = 500


@dataclass(frozen=True)
class PageRequest:
    sort: str
    descending: bool = False
    after: Key | None = None
    size: int = DEFAULT_SIZE

    @property
    def order(self) -> str:
        return "desc" if self.descending else "asc"


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    request: PageRequest
    next_after: str | None  # the cursor of the next page, None on the last
    first: bool  # no cursor was given: this is the first page

    def link(self, base: str, params: Mapping[str, Any], **changes: str | None) -> str:
        """This list's URL with its filters, the sort and direction, and `changes` (`after=...`, `sort=...`)."""
        query = {**params, "sort": self.request.sort, "order": self.request.order, **changes}
        if self.request.size != DEFAULT_SIZE:
            query.setdefault("size", str(self.request.size))
        kept = {name: value for name, value in query.items() if value not in (None, "", [], ())}
        return f"{base}?{urlencode(kept, doseq=True)}" if kept else base

    def sort_link(self, base: str, params: Mapping[str, Any], column: str) -> str:
        """The link a column header carries: sort by it, or flip its direction when it is the current sort."""
        order = ("asc" if self.request.descending else "desc") if column == self.request.sort else "asc"
        return self.link(base, params, sort=column, order=order, after=None)

    def aria_sort(self, column: str) -> str:
        if column != self.request.sort:
            return "none"
        return "descending" if self.request.descending else "ascending"


def encode_cursor(key: Key) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, width: int) -> Key:
    """A cursor back to its key; anything else is a 400 naming the `after` parameter."""
    try:
        values = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        values = None
    if not isinstance(values, list) or len(values) != width or not all(_scalar(v) for v in values):
        message = "after: not a cursor of this list (follow the page's Next link)"
        raise ValidationException(message, extra=[{"key": "after", "message": message}])
    return tuple(values)


def _scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def page_request(
    sort: str | None,
    order: str | None,
    after: str | None,
    size: int | None,
    *,
    sorts: Sequence[str],
    default: str,
    key_width: int,
    descending_default: bool = False,
) -> PageRequest:
    """The query parameters of a list page, checked: a sort it offers, asc/desc, a cursor of `key_width` values."""
    chosen = sort or default
    if chosen not in sorts:
        message = f"sort: '{chosen}' is not a column of this list; choose one of {', '.join(sorts)}"
        raise ValidationException(message, extra=[{"key": "sort", "message": message}])
    if order not in (None, "", "asc", "desc"):
        message = "order: choose asc or desc"
        raise ValidationException(message, extra=[{"key": "order", "message": message}])
    descending = descending_default if not order else order == "desc"
    if size is not None and not 1 <= size <= MAX_SIZE:
        message = f"size: choose 1 to {MAX_SIZE} rows a page"
        raise ValidationException(message, extra=[{"key": "size", "message": message}])
    cursor = decode_cursor(after, key_width) if after else None
    return PageRequest(chosen, descending, cursor, size or DEFAULT_SIZE)


def page_of(fetched: list[T], request: PageRequest, key: Callable[[T], Key]) -> Page[T]:
    """The page from `size + 1` rows read past the cursor: the extra row only says that a next page exists."""
    rows = fetched[: request.size]
    more = len(fetched) > request.size
    return Page(rows, request, encode_cursor(key(rows[-1])) if more and rows else None, request.after is None)


def page_in_memory(rows: Sequence[T], request: PageRequest, key: Callable[[T], Key]) -> Page[T]:
    """The same page over rows already in memory, sorted by `key` (None sorts first), rows past the cursor."""
    ordered = sorted(rows, key=lambda row: _sortable(key(row)), reverse=request.descending)
    if request.after is not None:
        mark = _sortable(request.after)
        ordered = [
            row for row in ordered if (_sortable(key(row)) < mark if request.descending else _sortable(key(row)) > mark)
        ]
    return page_of(ordered[: request.size + 1], request, key)


def _sortable(key: Key) -> tuple[tuple[int, Any], ...]:
    # None first, then numbers, then text (dates are ISO text in cursors); tagging each value by its kind keeps a
    # cursor whose values are of another kind than the list's (a tampered one) comparable: no TypeError, no 500.
    return tuple(_tagged(value) for value in key)


def _tagged(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def first_page(request: PageRequest) -> PageRequest:
    return replace(request, after=None)
