"""The error summary at the top of a page after a failed form (the GOV.UK pattern), read from the page itself.

Pages pass their messages in several shapes (`errors`, `failed.errors` of the one form that failed, a form's own
dict) and give their fields ids with prefixes of their own, so the summary is not rebuilt from those. It lists the
messages the page shows, in page order: each field's message (class "error", id "<field id>-note", as macros.html
writes it) linking to its field, and the message that names no field (id "form-error") linking to itself. A
message whose field has no id on the page links to the message; one without an id of its own is listed without a
link. The summary never says more than the page.
"""

from __future__ import annotations

from html.parser import HTMLParser

FORM_ERROR = "form-error"
_NOTE = "-note"
_VOID = frozenset({"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})


class _Messages(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.found: list[tuple[str, str]] = []  # (the message's id, its text)
        self._open: str | None = None  # the id of the message being read
        self._depth = 0
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        element_id = named.get("id") or ""
        if element_id:
            self.ids.add(element_id)
        if tag in _VOID:
            return
        if self._open is not None:
            self._depth += 1
        elif element_id == FORM_ERROR or "error" in (named.get("class") or "").split():
            self._open, self._depth, self._text = element_id, 1, []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element_id = dict(attrs).get("id")
        if element_id:
            self.ids.add(element_id)

    def handle_endtag(self, tag: str) -> None:
        if self._open is None or tag in _VOID:
            return
        self._depth -= 1
        if self._depth == 0:
            self.found.append((self._open, " ".join("".join(self._text).split())))
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)


def error_summary(html: str) -> list[tuple[str, str]]:
    """(the id to link to, or "" for none, the message) of every message `html` shows, in page order."""
    text = str(html)
    if "error" not in text:  # every message carries "error" in its class or id: most pages need no parsing
        return []
    parser = _Messages()
    parser.feed(text)
    parser.close()
    return [(_target(message_id, parser.ids), text) for message_id, text in parser.found if text]


def _target(message_id: str, ids: set[str]) -> str:
    """The field of a message "<field id>-note" if the page has it, else the message itself."""
    field = message_id.removesuffix(_NOTE)
    return field if message_id.endswith(_NOTE) and field in ids else message_id
