"""Keyset pages: every row once across the pages in either direction, ties broken by the row's tail, cursors
checked on the way in, and links that keep the list's filters."""

from __future__ import annotations

import pytest
from litestar.exceptions import ValidationException

from trialcoord.kernel.web.paging import decode_cursor, encode_cursor, page_in_memory, page_request

ROWS = [
    {"id": n, "site": "101" if n % 3 else "102", "due": None if n == 4 else f"2026-12-{n:02d}"} for n in range(1, 12)
]


def _walk(sort: str, order: str, size: int) -> list[int]:
    seen: list[int] = []
    after = None
    for _ in range(20):
        request = page_request(sort, order, after, size, sorts=("due", "site"), default="due", key_width=2)
        page = page_in_memory(ROWS, request, lambda row: (row[sort], row["id"]))
        seen += [row["id"] for row in page.rows]
        if page.next_after is None:
            return seen
        after = page.next_after
    raise AssertionError("the pages never ended")


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("sort", ["due", "site"])
def test_every_row_appears_once_across_the_pages(sort, order):
    walked = _walk(sort, order, 4)
    assert sorted(walked) == list(range(1, 12)), walked
    assert walked == _walk(sort, order, 50)  # the same order whatever the page size


def test_an_empty_due_date_sorts_first_ascending():
    assert _walk("due", "asc", 3)[0] == 4
    assert _walk("due", "desc", 3)[-1] == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"sort": "name"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"size": 0}, "size"),
        ({"size": 501}, "size"),
        ({"after": "not-a-cursor"}, "after"),
        ({"after": encode_cursor(("2026-12-01",))}, "after"),  # a cursor of another list (one value, not two)
        ({"after": encode_cursor(({"nested": 1}, 2))}, "after"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs, field):
    arguments = {"sort": None, "order": None, "after": None, "size": None, **kwargs}
    with pytest.raises(ValidationException) as raised:
        page_request(**arguments, sorts=("due", "site"), default="due", key_width=2)
    assert raised.value.extra[0]["key"] == field
    assert str(raised.value.detail).startswith(f"{field}:")


def test_cursor_round_trip_and_links_keep_filters():
    assert decode_cursor(encode_cursor(("2026-12-01", 7)), 2) == ("2026-12-01", 7)
    request = page_request("site", "desc", None, 2, sorts=("due", "site"), default="due", key_width=2)
    page = page_in_memory(ROWS, request, lambda row: (row["site"], row["id"]))
    assert page.first and page.next_after
    nxt = page.link("/studies/S/participants", {"q": "101-0", "site": ""}, after=page.next_after)
    assert nxt.startswith("/studies/S/participants?q=101-0&sort=site&order=desc&after=")
    assert "size=2" in nxt and "site=&" not in nxt
    assert page.sort_link("/x", {}, "site") == "/x?sort=site&order=asc&size=2"  # flips the current sort
    assert page.sort_link("/x", {}, "due") == "/x?sort=due&order=asc&size=2"
    assert page.aria_sort("site") == "descending" and page.aria_sort("due") == "none"


def test_a_cursor_of_another_kind_of_value_pages_on_without_an_error():
    request = page_request("due", None, encode_cursor((7, "x")), 3, sorts=("due",), default="due", key_width=2)
    page = page_in_memory(ROWS, request, lambda row: (row["due"], row["id"]))  # text dates past a number
    assert [row["id"] for row in page.rows] == [1, 2, 3]


def test_links_carry_a_filter_of_several_values():
    request = page_request(None, None, None, None, sorts=("due",), default="due", key_width=2)
    page = page_in_memory(ROWS, request, lambda row: (row["due"], row["id"]))
    assert page.link("/q", {"state": ["open", "closed"]}) == "/q?state=open&state=closed&sort=due&order=asc"
