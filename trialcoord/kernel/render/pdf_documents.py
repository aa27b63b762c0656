"""Documents as PDF/A-3b from the HTML templates of `document_templates/`, via Jinja and WeasyPrint, carrying
their data as `data.json`; a template draws its charts with `chart` (`draw_chart`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import jinja2
from markupsafe import Markup

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render import fonts
from trialcoord.kernel.render.document_data import prepare
from trialcoord.kernel.render.glyphs import MissingGlyphs, problem
from trialcoord.kernel.render.pdf import reproducible_pdf
from trialcoord.kernel.render.templates import TEMPLATE_DIR

_JINJA = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def draw_chart(spec: Mapping) -> Markup:
    """A chart of the data as inline SVG, drawn by charts.py (which escapes every text): data that reaches a
    template never becomes markup itself, whoever supplied it."""
    from trialcoord.kernel.render.charts import chart_of_spec

    return Markup(chart_of_spec(spec))


_JINJA.globals.update(chart=draw_chart, fonts_css=fonts.css, direction=fonts.direction)
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")


def render_pdf(template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> bytes:
    prepared = prepare("pdf", template, data, created_at, title, version_label)
    try:
        html = _JINJA.get_template(f"{template}.html").render({**data, "doc": prepared.doc})
    except jinja2.UndefinedError as error:  # a key the schema does not list: still the data's fault
        found = _UNDEFINED.search(str(error))
        name = next(filter(None, found.groups())) if found else "data"
        raise InvalidInput([Problem(f"is required ({error})", field=name)]) from None
    try:
        return reproducible_pdf(
            html,
            source=f"{template} template",
            created_at=created_at,
            base_url=str(TEMPLATE_DIR),
            attachments=[
                ("data.json", prepared.canonical, "The data this document was rendered from, as canonical JSON")
            ],
        )
    except MissingGlyphs as missing:
        raise _in_fields(missing, data) from None


def _in_fields(missing: MissingGlyphs, data: Mapping) -> InvalidInput:
    """The fields of `data` holding the characters no shipped font draws, each named by its path."""
    texts: dict[str, str] = {}
    for path, text in _strings(data, ""):
        texts[path] = texts.get(path, "") + text
    found = [
        problem(chars, missing.source, path)
        for path, text in texts.items()
        if (chars := "".join(c for c in missing.characters if c in text))
    ]
    return InvalidInput(found) if found else missing  # else the template's own text: no field to name


def _strings(value, path: str):
    """(path, text) of every string in `value`, keys included (under their value's path), paths like
    `sections[0].paragraphs[1]`."""
    if isinstance(value, str):
        yield path or "data", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            inner = f"{path}.{key}" if path else str(key)
            yield inner, str(key)
            yield from _strings(item, inner)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _strings(item, f"{path}[{n}]")
