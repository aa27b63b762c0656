"""Documents as PDF/A-3b from the HTML templates of `document_templates/`, via Jinja and WeasyPrint, carrying
their data as `data.json`; a template draws its charts with `chart` (`draw_chart`)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import jinja2
from markupsafe import Markup

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.render.document_data import prepare
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


_JINJA.globals["chart"] = draw_chart
_UNDEFINED = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'|no element '?([^']+?)'?$")


def render_pdf(template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> bytes:
    prepared = prepare("pdf", template, data, created_at, title, version_label)
    try:
        html = _JINJA.get_template(f"{template}.html").render({**data, "doc": prepared.doc})
    except jinja2.UndefinedError as error:  # a key the schema does not list: still the data's fault
        found = _UNDEFINED.search(str(error))
        name = next(filter(None, found.groups())) if found else "data"
        raise InvalidInput([Problem(f"is required ({error})", field=name)]) from None
    return reproducible_pdf(
        html,
        created_at=created_at,
        base_url=str(TEMPLATE_DIR),
        attachments=[("data.json", prepared.canonical, "The data this document was rendered from, as canonical JSON")],
    )
