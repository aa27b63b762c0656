"""Which characters of a rendered PDF have no glyph in the shipped fonts: a PDF/A showing empty boxes is refused.

Read from the PDF's own bytes (pikepdf, fontTools), not from WeasyPrint's internals: for each composite font,
its ToUnicode map says which character each glyph id stands for, and its embedded font program says which ids
exist. WeasyPrint gives a character no font has an id past the font's last glyph (drawn as .notdef); a font
that is not one of the shipped ones came from the machine's fonts (Pango's fallback), so the same document
would look different, or empty, elsewhere: its characters count as missing too.
"""

from __future__ import annotations

import io
import re

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.fonts import FACES

_SHIPPED = tuple(sorted({face.family.replace(" ", "-") for face in FACES}, key=len, reverse=True))
_PAIR = re.compile(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]*)>")
_BFCHAR = re.compile(rb"beginbfchar(.*?)endbfchar", re.S)
_BFRANGE = re.compile(rb"beginbfrange(.*?)endbfrange", re.S)


def describe(characters: str) -> str:
    """`U+13000 '𓀀', U+0041 'A'`: the code point and, for those who have a font for it, the character."""
    return ", ".join(f"U+{ord(c):04X} {c!r}" for c in characters)


def problem(characters: str, source: str, field: str = "") -> Problem:
    return Problem(
        f"has characters no font of trialcoord's PDFs can draw ({describe(characters)}); "
        f"the {source} would show empty boxes, so no PDF/A is made",
        field=field,
    )


class MissingGlyphs(InvalidInput):
    """Characters no shipped font can draw, found in the PDF rendered from `source` (field unknown)."""

    def __init__(self, characters: str, source: str):
        self.characters, self.source = characters, source
        super().__init__([problem(characters, source)])


def _to_unicode(cmap: bytes) -> dict[int, str]:
    """A ToUnicode CMap's glyph id -> text (bfchar pairs and bfrange runs, as WeasyPrint and others write)."""
    text = {}
    for block in _BFCHAR.findall(cmap):
        for cid, target in _PAIR.findall(block):  # a target may be empty (<>): a glyph that stands for no text
            text[int(cid, 16)] = bytes.fromhex(target.decode()).decode("utf-16-be", "replace")
    for block in _BFRANGE.findall(cmap):
        for low, high, start in re.findall(rb"<(\w+)>\s*<(\w+)>\s*<(\w+)>", block):
            first = int.from_bytes(bytes.fromhex(start.decode()), "big")
            for offset in range(int(high, 16) - int(low, 16) + 1):
                text[int(low, 16) + offset] = chr(first + offset)
    return text


def _glyph_count(descriptor) -> int:
    from fontTools.ttLib import TTFont

    program = descriptor.get("/FontFile2") or descriptor.get("/FontFile3")
    if program is None:  # not embedded: nothing a reader can draw from it
        return 0
    data = program.read_bytes()
    if program.get("/Subtype") == "/CIDFontType0C":  # bare CFF, not wrapped in OpenType
        from fontTools.cffLib import CFFFontSet

        cff = CFFFontSet()
        cff.decompile(io.BytesIO(data), None)
        return len(cff[cff.fontNames[0]].charset)
    return TTFont(io.BytesIO(data), lazy=True)["maxp"].numGlyphs


def missing_characters(pdf: bytes) -> str:
    """The characters of `pdf` drawn as .notdef or from a font that is not shipped, in code point order."""
    import pikepdf

    missing: set[str] = set()
    with pikepdf.open(io.BytesIO(pdf)) as document:
        for font in document.objects:
            if not isinstance(font, pikepdf.Dictionary) or font.get("/Type") != "/Font" or "/ToUnicode" not in font:
                continue
            text = _to_unicode(font.ToUnicode.read_bytes())
            name = str(font.get("/BaseFont", "")).lstrip("/").partition("+")[2]
            if font.get("/Subtype") != "/Type0" or not name.startswith(_SHIPPED):
                missing.update(text.values())
                continue
            count = _glyph_count(font.DescendantFonts[0].FontDescriptor)
            missing.update(chars for cid, chars in text.items() if cid == 0 or cid >= count)
    return "".join(sorted({c for chars in missing for c in chars if not c.isspace()}))
