"""A table's column widths from its text, for a word processor that lays the table out at fixed widths (DOCX).

The rule is the one browsers use for automatic table layout (CSS 2.1 §17.5.2.2): each column needs at
least its longest word (or its longest short line, better not broken) and at most its longest line; the
text width goes first to the least of every column, and what is left to the columns in proportion to how
much more they could use. So a date or an ID keeps its one line and free text takes the rest. A column for
writing by hand (a signature, a date to fill in) gets room for it, and what a table does not need. Pure:
text in, widths out.

Text is measured in ems of DejaVu Sans (the documents' font) by a coarse estimate per character class,
slightly generous so that a word estimated to fit does fit.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Collection, Sequence

NARROW = frozenset(" fijltIJ'\"!()[]{},.:;|-/\\`")
WIDE = frozenset("mwMW@%&")
BOLD = 1.1  # header rows are bold: DejaVu Sans Bold runs about a tenth wider
MIN_EMS = 2.5  # ems: no column narrower, even for a one-digit ID
WORD_CAP = 18.0  # ems: a longer word (a hash, a URL) breaks inside rather than widen its column further
LINE_CAP = 60.0  # ems: beyond about 80 characters a line reads badly anyway
SHORT = 8.0  # ems: a line this short ("Week 4", "Age (days)") is not broken between its words
HAND = 12.0  # ems of an empty column for writing by hand: about 40 mm at 10 pt


def text_ems(text: str) -> float:
    """The width of `text` on one line in ems of DejaVu Sans, estimated by character class."""
    total = 0.0
    for char in text:
        if char in NARROW:
            total += 0.4
        elif char in WIDE:
            total += 0.98
        elif char.isascii():
            total += 0.78 if char.isupper() else 0.64
        else:
            total += 1.0 if unicodedata.east_asian_width(char) in ("W", "F") else 0.72
    return total


def _unbroken(line: str) -> list[str]:
    """The pieces a line may not be broken within: its words, or the whole line if it is SHORT."""
    return [line] if text_ems(line) <= SHORT else line.split() or [""]


def _lines(text: str) -> list[str]:
    return text.splitlines() or [""]


def column_widths(
    rows: Sequence[Sequence[str]],
    total: int,
    *,
    header_rows: int = 0,
    handwritten: Collection[int] = (),
    em: float = 200,
    padding: float = 216,
) -> list[int]:
    """Widths (in the unit of `total`, e.g. twentieths of a point) of the columns of `rows`, adding up to
    `total`. `rows` are the cells' texts, the first `header_rows` of them the (bold) header; a cell's text
    may hold line breaks. `em` is the font size and `padding` a cell's left and right margins together, in
    the same unit (10 pt and Word's default 0.19 cm margins by default)."""
    if not rows or not rows[0]:
        raise ValueError("a table needs at least one row and one column")
    count = len(rows[0])
    if any(len(row) != count for row in rows):
        raise ValueError("every row needs the same number of cells")
    if total <= 0:
        raise ValueError(f"the width to fill must be positive, not {total}")
    least, most = [], []
    for col in range(count):
        texts = [(row[col], BOLD if n < header_rows else 1.0) for n, row in enumerate(rows)]
        lines = [text_ems(line) * scale for text, scale in texts for line in _lines(text)]
        words = [text_ems(w) * scale for text, scale in texts for line in _lines(text) for w in _unbroken(line)]
        word, line = max(words), max(lines)
        low, high = max(MIN_EMS, min(word, WORD_CAP)), min(max(line, MIN_EMS), LINE_CAP)
        if col in handwritten:
            low = high = max(low, HAND)
        least.append(low * em + padding)
        most.append(max(high, low) * em + padding)
    return _fill(least, most, total, sorted(set(handwritten) & set(range(count))))


def _fill(least: list[float], most: list[float], total: int, blanks: list[int]) -> list[int]:
    if sum(most) <= total and blanks:  # room for every line: what is left is room to write in
        widths = most[:]
        for col in blanks:
            widths[col] += (total - sum(most)) / len(blanks)
    elif sum(most) <= total:  # room for every line: widen in proportion, so the table fills the text width
        widths = [m * total / sum(most) for m in most]
    elif sum(least) >= total:  # not even every word fits: narrow in proportion, words then break
        widths = [low * total / sum(least) for low in least]
    else:
        spare, wants = total - sum(least), [m - low for low, m in zip(least, most)]
        widths = [low + spare * want / sum(wants) for low, want in zip(least, wants)]
    rounded = [int(w) for w in widths]
    widest = max(range(len(rounded)), key=lambda i: (rounded[i], -i))
    rounded[widest] += total - sum(rounded)  # what rounding left over, so the columns add up exactly
    return rounded
