"""Deviation charts: well-formed, escaped, accessible SVG whose bars are to scale, the same bytes every time,
and accepted by WeasyPrint."""

import io
import math
import xml.etree.ElementTree as ET

import pikepdf
import pytest
import weasyprint

from trialcoord.kernel.render.charts import PALETTE, bars, histogram, nice_ticks, stacked_bars
from trialcoord.kernel.render.fonts import FONT_STACK

NS = {"svg": "http://www.w3.org/2000/svg"}
MONTHS = ["Jan 2025", "Feb 2025", "Mar 2025"]
BY_CATEGORY = {"visit schedule": [3, 0, 6], "eligibility": [1, 0, 2], "informed consent": [0, 0, 1]}


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def heights(root: ET.Element) -> list[float]:
    return [float(r.get("height")) for r in root.iterfind(".//svg:rect[@class='bar']", NS)]


def widths(root: ET.Element) -> list[float]:
    return [float(r.get("width")) for r in root.iterfind(".//svg:rect[@class='bar']", NS)]


def texts(root: ET.Element) -> list[str]:
    return [t.text for t in root.iterfind(".//svg:text", NS)]


def values(root: ET.Element) -> list[str]:
    """The value written on each bar: the last text of its group."""
    return [g.findall("svg:text", NS)[-1].text for g in root.iterfind(".//svg:g", NS)]


def every_chart(title="Deviations", label="Site 101"):
    return [
        stacked_bars(title, [label, "Feb"], {label: [1, 2], "other": [3, 0]}, y_label=label),
        bars(title, [(label, 4), ("102", 2.5)], unit="days"),
        bars(title, [(label, 4), ("102", 2.5)], unit=label, horizontal=False),
        histogram(title, [1, 2, 9, 15], unit="days"),
        histogram(title, [], unit="days"),
    ]


def test_every_chart_is_an_accessible_scalable_image():
    for svg in every_chart():
        root = parse(svg)
        assert root.get("role") == "img"
        assert root.get("font-family") == FONT_STACK  # the shipped fonts: a system sans-serif is refused in a PDF
        width, height = float(root.get("width")), float(root.get("height"))
        assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}" and width > 0 and height > 0
        title, desc = root.find("svg:title", NS), root.find("svg:desc", NS)
        assert title.text == "Deviations" and desc.text
        assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"


def test_hostile_labels_are_escaped_text_never_markup():
    hostile = '<script>alert("x")</script> & "Q" \x00\x1b'
    for svg in every_chart(title=hostile, label=hostile):
        assert "<script" not in svg
        root = parse(svg)  # a stray & or < would make the document ill-formed
        assert not root.findall(".//script") and not root.findall(".//svg:script", NS)
        assert root.find("svg:title", NS).text == '<script>alert("x")</script> & "Q" '
    root = parse(bars("t", [(hostile, 1)]))
    assert root.find(".//svg:g/svg:title", NS).text == '<script>alert("x")</script> & "Q" : 1'
    assert '<script>alert("x")</s…' in texts(root)  # long labels are shortened on the picture only
    assert hostile.strip("\x00\x1b") + ": 1." == root.find("svg:desc", NS).text


def test_description_gives_every_number_in_words():
    desc = parse(stacked_bars("By month", MONTHS, BY_CATEGORY, y_label="deviations")).find("svg:desc", NS).text
    assert desc == (
        "Deviations by period. Jan 2025: 4 in all (visit schedule 3, eligibility 1, informed consent 0). "
        "Feb 2025: 0 in all (visit schedule 0, eligibility 0, informed consent 0). "
        "Mar 2025: 9 in all (visit schedule 6, eligibility 2, informed consent 1)."
    )
    desc = parse(bars("Median", [("101", 12.5), ("102", 1250)], unit="days")).find("svg:desc", NS).text
    assert desc == "101: 12.5 days. 102: 1,250 days."
    desc = parse(histogram("Closure", [0, 3, 7, 40, 99], [(0, 7), (7, 30), (30, math.inf)])).find("svg:desc", NS).text
    assert desc == ("5 values. From 0 to 6 days: 2. From 7 to 29 days: 1. 30 days or more: 2.")  # whole days


def test_vertical_bar_heights_are_proportional_to_values():
    root = parse(bars("Deviations by site", [("101", 8), ("102", 2), ("103", 5)], horizontal=False))
    h = heights(root)
    assert h[0] / 8 == pytest.approx(h[1] / 2, abs=0.05) == pytest.approx(h[2] / 5, abs=0.05)
    assert values(root) == ["8", "2", "5"]


def test_horizontal_bar_lengths_are_proportional_to_values_and_labelled():
    root = parse(bars("Median days to closure", [("101", 12.5), ("102", 5), ("103", 0)], unit="days"))
    w = widths(root)
    assert w[0] / 12.5 == pytest.approx(w[1] / 5, abs=0.05) and w[2] == 0
    assert values(root) == ["12.5", "5", "0"] and {"101", "102", "103", "days"} <= set(texts(root))


def test_stacked_segments_add_up_to_each_total_on_one_scale():
    root = parse(stacked_bars("By month", MONTHS, BY_CATEGORY, y_label="deviations"))
    segments = heights(root)  # zero segments are not drawn: Jan 3+1, Mar 6+2+1
    assert len(segments) == 5
    unit = segments[0] / 3
    assert segments == pytest.approx([3 * unit, 1 * unit, 6 * unit, 2 * unit, 1 * unit], abs=0.1)
    stacks = root.findall(".//svg:g", NS)
    assert [g.find("svg:title", NS).text for g in stacks] == ["Jan 2025: 4", "Feb 2025: 0", "Mar 2025: 9"]
    assert values(root) == ["4", "0", "9"]
    mar = stacks[2].findall("svg:rect", NS)
    assert [r.get("fill") for r in mar] == list(PALETTE[:3])
    assert float(mar[0].get("y")) == pytest.approx(float(mar[1].get("y")) + float(mar[1].get("height")))  # stacked


def test_legend_names_every_series_in_its_colour():
    root = parse(stacked_bars("By month", MONTHS, BY_CATEGORY))
    legend = [r for r in root.iterfind("svg:rect", NS) if r.get("class") != "bar"]
    assert [r.get("fill") for r in legend] == list(PALETTE[:3])
    assert {"visit schedule", "eligibility", "informed consent"} <= set(texts(root))


def test_empty_input_says_no_data_yet():
    for svg in (
        stacked_bars("By month", [], {}),
        stacked_bars("By month", MONTHS, {}),
        bars("By site", []),
        histogram("Closure", []),
    ):
        root = parse(svg)
        assert "No data yet" in texts(root) and root.find("svg:desc", NS).text == "No data yet."
        assert heights(root) == []


def test_zero_counts_are_data_not_an_empty_chart():
    root = parse(stacked_bars("By month", MONTHS, {"visit schedule": [0, 0, 0]}))
    assert "No data yet" not in texts(root) and texts(root).count("0") >= 3


def test_same_input_gives_the_same_bytes_and_different_charts_different_ids():
    assert every_chart() == every_chart()
    ids = {parse(svg).find("svg:title", NS).get("id") for svg in every_chart()}
    assert len(ids) == 5


def test_ticks_are_round_numbers_from_zero_covering_the_maximum():
    assert nice_ticks(7) == [0, 2, 4, 6, 8]
    assert nice_ticks(10) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(23) == [0, 5, 10, 15, 20, 25]
    assert nice_ticks(1000) == [0, 200, 400, 600, 800, 1000]
    assert nice_ticks(0.3) == [0, 0.1, 0.2, 0.3]
    assert nice_ticks(3, integer=True) == [0, 1, 2, 3]  # counts: never 0.5 of a deviation
    assert nice_ticks(0) == [0, 1]
    root = parse(stacked_bars("By month", MONTHS, BY_CATEGORY))
    assert [t for t in texts(root) if t in {"0", "2", "4", "6", "8", "10"}][:6] == ["0", "2", "4", "6", "8", "10"]


def test_histogram_counts_values_into_half_open_bins():
    root = parse(histogram("Closure", [0, 6.9, 7, 29, 30, 365], [(0, 7), (7, 30), (30, math.inf)]))
    h = heights(root)
    assert h[0] == pytest.approx(h[1]) == pytest.approx(h[2])  # 2 each
    assert {"0–7", "7–30", "30+", "days"} <= set(texts(root))


def test_histogram_default_bins_are_round_and_cover_every_value():
    desc = parse(histogram("Closure", [0, 1, 4, 12, 38])).find("svg:desc", NS).text
    assert desc.startswith("5 values. From 0 to 4 days: 3. From 5 to 9 days: 0.")
    assert desc.endswith("From 35 to 39 days: 1.") and "outside" not in desc
    assert "From 4 to 4 days: 3." in parse(histogram("Closure", [4, 4, 4])).find("svg:desc", NS).text


def test_histogram_says_how_many_values_fall_outside_the_bins():
    desc = parse(histogram("Closure", [1, 50], [(0, 7)])).find("svg:desc", NS).text
    assert desc.endswith("1 outside these bins, not shown.")


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="'eligibility' has 2 values for 3 periods"):
        stacked_bars("t", MONTHS, {"eligibility": [1, 2]})
    with pytest.raises(ValueError, match="0 or more"):
        bars("t", [("101", -1)])
    with pytest.raises(ValueError, match="finite"):
        histogram("t", [math.nan])
    with pytest.raises(ValueError, match="bin"):
        histogram("t", [1], [(5, 5)])
    with pytest.raises(ValueError, match="at least one bin"):
        histogram("t", [1], [])


def test_weasyprint_draws_the_chart_into_a_pdf():
    svg = stacked_bars("Deviations by month", MONTHS, BY_CATEGORY, y_label="deviations")
    pdf = weasyprint.HTML(string=f"<!doctype html><html><body>{svg}</body></html>").write_pdf()
    assert pdf.startswith(b"%PDF")
    document = pikepdf.open(io.BytesIO(pdf))
    page = document.pages[0]
    assert page.Resources.Font.keys()  # the only text on the page is the chart's
    drawn = page.Contents.read_bytes()
    assert b"0 0.447059 0.698039 rg" in drawn  # the first series' blue (#0072B2) filled the bars


def test_whole_day_bins_are_labelled_inclusively_as_people_read_them():
    from trialcoord.deviations.trends import CLOSURE_BINS

    bins = [(lo, math.inf if hi is None else hi) for lo, hi in CLOSURE_BINS]
    root = parse(histogram("Closure", [0, 7, 8, 30, 31, 91], bins))
    assert {"0–7", "8–30", "31–60", "61–90", "91+"} <= set(texts(root))
    assert "From 8 to 30 days: 2." in root.find("svg:desc", NS).text


def test_values_too_large_to_draw_or_to_add_up_are_value_errors():
    for items in ([("a", 10**400)], [("a", 1e308), ("b", 1e308)]):
        with pytest.raises(ValueError):
            bars("t", items)
    with pytest.raises(ValueError):
        stacked_bars("t", ["2024-01"], {"a": [1e308], "b": [1e308]})
