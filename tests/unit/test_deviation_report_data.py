"""The reports' figures on known rows (domain/deviation_trends.py), and the chart helper templates draw with."""

from datetime import date
from types import SimpleNamespace

import pytest

from trialcoord.deviations.rules import deviation_trends as t
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.pdf_documents import draw_chart


def row(
    id_,
    site="101",
    rule="visit_late",
    category="visit schedule",
    occurred="2024-03-05",
    detected="2024-03-10T08:00:00.000000Z",
    state="detected",
    classification="non_important",
    closed=None,
):
    return SimpleNamespace(  # the figures read a deviation's attributes, as `queue.listing` gives them
        **{
            "id": id_,
            "site": site,
            "rule": rule,
            "category": category,
            "occurred_on": occurred,
            "detected_at": detected,
            "closed_at": closed,
            "state": state,
            "classification": classification,
            "open": state not in ("closed", "resolved_by_data_correction"),
        }
    )


ROWS = [
    row(1),
    row(2, occurred="2024-03-20", state="closed", closed="2024-03-17T10:00:00.000000Z"),  # 7 days to closure
    row(
        3,
        occurred="2024-05-02",
        detected="2024-05-03T00:00:00.000000Z",
        state="closed",
        closed="2024-06-12T00:00:00.000000Z",
    ),  # 40 days
    row(4, site="102", rule="visit_missed", occurred=None, detected="2024-04-30T23:59:00.000000Z"),
    row(5, site="102", rule=None, category="informed consent", occurred="2024-05-15"),  # manual
    row(6, state="resolved_by_data_correction"),  # a data error: left out
    row(7, classification="not_a_protocol_deviation", state="closed", closed="2024-03-11T00:00:00.000000Z"),
]


def test_trends_count_standing_deviations_by_month_category_site_and_rule():
    trend = t.trends(ROWS)
    assert (trend["total"], trend["excluded"]) == (5, 2)
    # April is quiet but shown; row 4 has no occurrence date, so its detection month counts
    assert trend["months"] == ["2024-03", "2024-04", "2024-05"]
    assert trend["by_month_and_category"] == {"informed consent": [0, 0, 1], "visit schedule": [2, 1, 1]}
    assert trend["by_site"] == [("101", 3), ("102", 2)]
    assert trend["by_rule"] == [("visit_late", 3), ("manual", 1), ("visit_missed", 1)]


def test_repeats_are_site_rule_category_groups_seen_more_than_once_per_month():
    [repeat] = t.trends(ROWS)["repeats"]
    assert repeat == {
        "site": "101",
        "rule": "visit_late",
        "category": "visit schedule",
        "total": 3,
        "by_month": [2, 0, 1],
        "first": "2024-03",
        "last": "2024-05",
    }


def test_time_to_closure_counts_calendar_days_of_closed_deviations_only():
    trend = t.trends(ROWS)
    assert sorted(trend["days_to_closure"]) == [7, 40]
    assert trend["closure"] == {"closed": 2, "median_days": 23.5, "mean_days": 23.5, "max_days": 40}
    assert t.closure_summary([])["median_days"] is None


def test_months_between_crosses_a_year():
    assert t.months_between("2023-11", "2024-02") == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert t.by_month_and_category([]) == ([], {})


@pytest.mark.parametrize(
    "detected, bucket",
    [
        ("2024-06-30", "0-30"),
        ("2024-05-31", "0-30"),
        ("2024-05-30", "31-60"),
        ("2024-05-01", "31-60"),
        ("2024-04-30", "61-90"),
        ("2024-04-01", "61-90"),
        ("2024-03-31", ">90"),
    ],
)
def test_open_deviations_by_age_at_each_bucket_edge(detected, bucket):
    as_of = date(2024, 6, 30)  # 2024-05-31 is 30 days before, 2024-05-01 60, 2024-04-01 90
    ages = t.age_buckets([row(1, detected=detected + "T12:00:00Z")], as_of)
    assert ages == {**dict.fromkeys(("0-30", "31-60", "61-90", ">90"), 0), bucket: 1}


def test_closed_deviations_have_no_age():
    closed = row(1, state="closed", closed="2024-01-02", detected="2023-01-01")
    assert sum(t.age_buckets([closed], date(2024, 6, 30)).values()) == 0


def test_visit_rates_divide_done_by_due_and_on_time_by_done():
    statuses = (
        ["on_time"] * 6
        + ["late", "early"]
        + ["missed"] * 2
        + ["due", "upcoming", "not_applicable", "unscheduled", "pending"]
    )
    assert t.visit_rates(statuses) == {
        "due": 10,
        "done": 8,
        "on_time": 6,
        "missed": 2,
        "completion_rate": 0.8,
        "on_time_rate": 0.75,
    }
    assert t.visit_rates(["upcoming"])["completion_rate"] is None


def test_a_chart_spec_becomes_escaped_svg_and_a_bad_one_a_problem_naming_charts():
    svg = draw_chart({"kind": "bars", "title": "<script>x</script>", "items": [["101", 3]]})
    assert svg.startswith("<svg") and "<script>" not in svg and "&lt;script&gt;" in svg
    histogram = draw_chart({"kind": "histogram", "title": "Closure", "values": [7, 40], "bins": [[0, 8], [8, None]]})
    assert "8+" in histogram
    for bad in (
        {"kind": "pie", "title": "x"},
        {"kind": "bars", "title": "x", "items": [["a", "many"]]},
        {"kind": "stacked", "title": "x", "periods": ["a"], "series": {"s": [1, 2]}},
    ):
        with pytest.raises(InvalidInput) as error:
            draw_chart(bad)
        assert [p.field for p in error.value.problems] == ["charts"]


def test_the_month_axis_shows_the_last_36_months_and_groups_older_ones():
    rows = [row(m, occurred=f"{2020 + m // 12}-{m % 12 + 1:02d}-10") for m in range(48)]
    trend = t.trends(rows)
    assert len(trend["months"]) == 37 and trend["months"][:2] == ["earlier", "2021-01"]
    assert sum(next(iter(trend["by_month_and_category"].values()))) == 48
    assert next(iter(trend["by_month_and_category"].values()))[0] == 12


def test_an_overflowing_chart_is_a_problem_naming_charts():
    with pytest.raises(InvalidInput) as refused:
        draw_chart({"kind": "bars", "title": "t", "items": [["a", 10**400]]})
    assert refused.value.problems[0].field == "charts"


def test_report_page_estimates_grow_with_rows_and_charts():
    from trialcoord.kernel.render.page_estimate import estimate_pages

    entry = {
        "id": "1",
        "participant": "1001",
        "visit": "V2",
        "category": "visit schedule",
        "description": "x" * 200,
        "identified": "2024-04-01",
        "age_days": 3,
        "classification": "important",
        "status": "open",
    }
    small = estimate_pages("monitoring_visit_report", {"entries": [entry] * 10, "capas": []})
    big = estimate_pages("monitoring_visit_report", {"entries": [entry] * 400, "capas": []})
    assert small < 20 <= big
    log = {"entries": [entry] * 60}
    assert estimate_pages("deviation_log", {**log, "charts": [{}] * 4}) > estimate_pages("deviation_log", log)
