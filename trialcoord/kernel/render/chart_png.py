"""The charts of charts.py as PNG, for documents that cannot hold SVG (DOCX): drawn with Pillow (already
installed with WeasyPrint) rather than a general SVG renderer, since charts.py writes only a few elements:
rectangles, lines and text in the shipped Noto Sans (the PDFs' font). An element it does not know is an
error, not a gap in the picture.

Deterministic: the same SVG gives the same bytes with the same Pillow (its FreeType and zlib are its own), as
the DOCX renderings' byte stability needs. Text is laid out by Pillow's basic engine, never by Raqm, which
may or may not be installed.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cache

_SVG = "{http://www.w3.org/2000/svg}"
_ANCHORS = {"start": "ls", "middle": "ms", "end": "rs"}  # SVG's text-anchor on the baseline, in Pillow's terms
SCALE = 2  # pixels per SVG unit: a 600-unit chart becomes 1200 pixels, sharp at half a landscape page


@dataclass(frozen=True)
class ChartImage:
    png: bytes
    width: int  # in SVG units (CSS pixels), for the document to keep the chart's proportions
    height: int
    title: str  # the SVG's <title> and <desc>: the image's alternative text
    description: str


@cache
def _font(size: int, bold: bool):
    """The shipped Noto Sans (a variable font) at the weight asked for: no system font, so the PNG is the same
    on every machine."""
    from PIL import ImageFont

    from trialcoord.kernel.render.fonts import FACES, SANS, path

    face = next(f for f in FACES if f.family == SANS and f.style == "normal")
    font = ImageFont.truetype(str(path(face)), size, layout_engine=ImageFont.Layout.BASIC)
    font.set_variation_by_axes([100, 700 if bold else 400])  # wdth, wght
    return font


def _n(value: str | None) -> float:
    return float(value or 0)


def chart_png(svg: str) -> ChartImage:
    """The chart `svg` (as charts.py writes it) as a PNG at SCALE pixels per unit, with its title and desc."""
    from PIL import Image, ImageDraw

    root = ET.fromstring(svg)
    width, height = round(_n(root.get("width"))), round(_n(root.get("height")))
    image = Image.new("RGB", (width * SCALE, height * SCALE), "white")
    draw = ImageDraw.Draw(image)
    texts = {"title": "", "desc": ""}
    for element in root.iter():
        tag = element.tag.removeprefix(_SVG)
        a, s = element.attrib, SCALE
        if tag in ("svg", "g"):
            continue
        if tag in texts:
            if element in root:  # the chart's own title and desc; a bar's <title> is its tooltip
                texts[tag] = element.text or ""
        elif tag == "rect":
            x, y, w, h = (_n(a.get(k)) * s for k in ("x", "y", "width", "height"))
            if w > 0 and h > 0:
                box = (round(x), round(y), round(x + w) - 1, round(y + h) - 1)
                outline = a.get("stroke")
                draw.rounded_rectangle(box, round(_n(a.get("rx")) * s), fill=a.get("fill"), outline=outline, width=s)
        elif tag == "line":
            ends = [round(_n(a.get(k)) * s) for k in ("x1", "y1", "x2", "y2")]
            draw.line(ends, fill=a.get("stroke"), width=s)
        elif tag == "text":
            font = _font(round(_n(a.get("font-size")) * s), a.get("font-weight") == "bold")
            anchor = _ANCHORS[a.get("text-anchor", "start")]
            draw.text(
                (_n(a.get("x")) * s, _n(a.get("y")) * s),
                element.text or "",
                fill=a.get("fill"),
                font=font,
                anchor=anchor,
            )
        else:
            raise ValueError(f"chart_png does not draw the SVG element <{tag}>")
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(96 * SCALE, 96 * SCALE))
    return ChartImage(out.getvalue(), width, height, texts["title"], texts["desc"])
