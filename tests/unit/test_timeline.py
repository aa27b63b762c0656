"""The timeline geometry: windows, marks and legend follow the visit rows, with no I/O."""

from datetime import date

from tests.unit.builders import Row
from trialcoord.scheduling.timeline import LABEL_WIDTH, PLOT_WIDTH, STATUS_COLOURS, build_timeline

AS_OF = date(2024, 3, 20)


def test_window_bar_covers_both_inclusive_ends_and_marks_sit_inside():
    row = Row("V2", "late", date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21), actual=date(2024, 3, 23))
    timeline = build_timeline([row], AS_OF)
    drawn = timeline.rows[0]
    left, width = drawn.bar
    per_day = PLOT_WIDTH / (timeline.end - timeline.start).days
    assert round(width / per_day) == 7  # 15th to 21st inclusive
    assert left < drawn.target < left + width < drawn.actual
    assert drawn.colour == STATUS_COLOURS["late"]
    assert "late" in drawn.title.lower() and "done 2024-03-23" in drawn.title


def test_range_spans_every_date_and_the_as_of_line():
    rows = [
        Row("SCR", "on_time", date(2024, 2, 26), date(2024, 2, 19), date(2024, 3, 3), actual=date(2024, 2, 27)),
        Row("V3", "upcoming", date(2024, 4, 3), date(2024, 3, 31), date(2024, 4, 6), appointment=date(2024, 4, 2)),
    ]
    timeline = build_timeline(rows, AS_OF)
    assert timeline.start < date(2024, 2, 19) and timeline.end > date(2024, 4, 6)
    assert LABEL_WIDTH < timeline.as_of < LABEL_WIDTH + PLOT_WIDTH
    assert timeline.rows[1].appointment is not None
    xs = [tick.x for tick in timeline.ticks]
    assert xs == sorted(xs) and all(LABEL_WIDTH <= x <= LABEL_WIDTH + PLOT_WIDTH for x in xs)


def test_unbounded_side_runs_to_the_plot_edge_and_pending_has_no_bar():
    rows = [
        Row("V1", "due", date(2024, 3, 18), None, date(2024, 3, 25)),
        Row("V9", "pending"),
    ]
    timeline = build_timeline(rows, AS_OF)
    assert timeline.rows[0].bar[0] == LABEL_WIDTH
    assert timeline.rows[1].bar is None and timeline.rows[1].target is None


def test_legend_lists_present_statuses_in_a_stable_order():
    rows = [Row("A", "missed", date(2024, 3, 1), date(2024, 3, 1), date(2024, 3, 2)), Row("B", "on_time")]
    legend = build_timeline(rows, AS_OF).legend
    assert [entry.label for entry in legend] == ["On time", "Missed"]


def test_no_dates_at_all_still_gives_a_drawable_timeline():
    timeline = build_timeline([Row("V1", "pending")], AS_OF)
    assert timeline.start is None and timeline.rows[0].bar is None and timeline.height > 0


def test_long_ranges_label_months_without_crowding():
    rows = [Row("V1", "upcoming", date(2024, 1, 1), date(2024, 1, 1), date(2025, 12, 31))]
    ticks = build_timeline(rows, AS_OF).ticks
    assert 2 <= len(ticks) <= 12 and ticks[0].label.endswith("2024")


def test_a_highlighted_visit_is_marked_and_named_in_its_title():
    rows = [
        Row("V2", "late", date(2024, 3, 18), date(2024, 3, 15), date(2024, 3, 21), actual=date(2024, 3, 25)),
        Row("V3", "on_time", date(2024, 4, 1), date(2024, 3, 29), date(2024, 4, 4), actual=date(2024, 4, 1)),
    ]
    marked = build_timeline(rows, AS_OF, highlight="V2").rows
    assert [r.highlighted for r in marked] == [True, False]
    assert marked[0].title.endswith("(the visit in question)") and "in question" not in marked[1].title
    assert not any(r.highlighted for r in build_timeline(rows, AS_OF).rows)
