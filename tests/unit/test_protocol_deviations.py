"""The protocol's optional `deviations:` section: classification defaults per rule for new deviation records.

Every example is checked twice: the loader reports it (message, field, line and column) and the shipped JSON
Schema rejects it, so editors and `trialcoord protocol validate` agree.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.unit.builders import protocol as built_protocol
from tests.unit.test_protocol_files import BASE, problems_of, the_problem
from tests.unit.test_protocol_schema import as_json
from trialcoord.deviations.rules.deviations import (
    DEFAULTS,
    Classification,
    ClassificationDefaults,
    Finding,
    Rule,
    Threshold,
)
from trialcoord.scheduling.protocol_files import SCHEMA_PATH, load_protocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]
IMPORTANT, NON_IMPORTANT, NOT_A_DEVIATION = (
    Classification.IMPORTANT,
    Classification.NON_IMPORTANT,
    Classification.NOT_A_DEVIATION,
)

SECTION = """\
deviations:
  visit_late:
    classification: non_important
    thresholds:
      - over_days: 7
        classification: important
  visit_before_consent:
    classification: important
"""


def finding(rule: Rule, days_outside: int = 0) -> Finding:
    return Finding("101-001", "V2", 1, rule, date(2025, 3, 20), days_outside)


def position_of(section: str, snippet: str) -> tuple[int, int]:
    """Line and column (both from 1) in BASE + section where `snippet` starts; it occurs once in the section."""
    assert section.count(snippet) == 1, f"{snippet!r} must occur once"
    before = BASE + section[: section.index(snippet)]
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def schema_errors(validator, text: str) -> list[str]:
    return [error.message for error in validator.iter_errors(as_json(yaml.safe_load(text)))]


# ---- valid sections --------------------------------------------------------------------------------


def test_the_section_parses_to_classification_defaults():
    defaults = parse_protocol(BASE + SECTION).deviations
    assert defaults == ClassificationDefaults(
        {**DEFAULTS.by_rule, Rule.VISIT_LATE: NON_IMPORTANT, Rule.VISIT_BEFORE_CONSENT: IMPORTANT},
        {Rule.VISIT_LATE: (Threshold(7, IMPORTANT),)},
    )


@pytest.mark.parametrize(
    ("days_outside", "expected"), [(0, NON_IMPORTANT), (7, NON_IMPORTANT), (8, IMPORTANT), (30, IMPORTANT)]
)
def test_more_than_over_days_late_starts_important(days_outside, expected):
    defaults = parse_protocol(BASE + SECTION).deviations
    assert defaults.classify(finding(Rule.VISIT_LATE, days_outside)) == expected


def test_rules_the_section_leaves_out_keep_the_defaults():
    defaults = parse_protocol(BASE + SECTION).deviations
    assert defaults.classify(finding(Rule.VISIT_EARLY, -20)) == NON_IMPORTANT  # no threshold of its own
    assert defaults.classify(finding(Rule.VISIT_UNDER_SUPERSEDED_CONSENT)) == IMPORTANT
    assert defaults.classify(finding(Rule.SCREENING_OUT_OF_WINDOW, 2)) == IMPORTANT
    assert defaults.classify(finding(Rule.VISIT_MISSED)) == NON_IMPORTANT


def test_a_rule_given_only_thresholds_keeps_its_default_classification():
    section = (
        "deviations:\n  screening_out_of_window:\n    thresholds:\n      - {over_days: 0, classification: important}\n"
    )
    defaults = parse_protocol(BASE + section).deviations
    assert defaults.by_rule[Rule.SCREENING_OUT_OF_WINDOW] == IMPORTANT
    assert defaults.thresholds[Rule.SCREENING_OUT_OF_WINDOW] == (Threshold(0, IMPORTANT),)


def test_thresholds_in_any_order_the_highest_passed_wins_and_early_counts_days_before():
    section = """\
deviations:
  visit_early:
    classification: not_a_protocol_deviation
    thresholds:
      - {over_days: 14, classification: important}
      - {over_days: 2, classification: non_important}
"""
    defaults = parse_protocol(BASE + section).deviations
    assert defaults.thresholds[Rule.VISIT_EARLY] == (Threshold(2, NON_IMPORTANT), Threshold(14, IMPORTANT))
    classify = [defaults.classify(finding(Rule.VISIT_EARLY, days)) for days in (-2, -3, -14, -15)]
    assert classify == [NOT_A_DEVIATION, NON_IMPORTANT, NON_IMPORTANT, IMPORTANT]


def test_without_the_section_the_protocol_has_the_defaults():
    assert parse_protocol(BASE).deviations is DEFAULTS
    assert built_protocol().deviations is DEFAULTS  # a Protocol built in code, too


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_the_demo_protocol_uses_the_section(version):
    defaults = load_protocol(ROOT / "protocols" / "DEMO-001" / f"{version}.yaml").deviations
    assert defaults.classify(finding(Rule.VISIT_LATE, 7)) == NON_IMPORTANT
    assert defaults.classify(finding(Rule.VISIT_LATE, 8)) == IMPORTANT
    assert defaults.classify(finding(Rule.VISIT_BEFORE_CONSENT)) == IMPORTANT
    assert defaults.classify(finding(Rule.VISIT_UNDER_SUPERSEDED_CONSENT)) == IMPORTANT


VALID_SECTIONS = {
    "the reference example": SECTION,
    "only a classification": "deviations:\n  visit_missed: {classification: not_a_protocol_deviation}\n",
    "only thresholds, over_days 0": "deviations:\n  visit_late:\n    thresholds: [{over_days: 0, classification: "
    "important}]\n",
    "every rule": "deviations:\n" + "".join(f"  {rule}: {{classification: important}}\n" for rule in Rule),
}


@pytest.mark.parametrize("section", VALID_SECTIONS.values(), ids=VALID_SECTIONS.keys())
def test_valid_sections_pass_the_loader_and_the_schema(validator, section):
    assert isinstance(parse_protocol(BASE + section).deviations, ClassificationDefaults)
    assert schema_errors(validator, BASE + section) == []


# ---- mistakes --------------------------------------------------------------------------------------

CLASSIFICATIONS = "write important, non_important or not_a_protocol_deviation"

# (id, section, words of the message, field, the snippet where the problem is reported)
MISTAKES = [
    (
        "unknown rule",
        "deviations:\n  visit_lat: {classification: important}\n",
        "unknown deviation rule 'visit_lat'; did you mean 'visit_late'?",
        "deviations.visit_lat",
        "visit_lat:",
    ),
    (
        "unknown rule far from any",
        "deviations:\n  lost_to_follow_up: {classification: important}\n",
        "unknown deviation rule 'lost_to_follow_up'; rules: screening_out_of_window, visit_after_ending_event, "
        "visit_before_consent, visit_early, visit_late, visit_missed, visit_under_superseded_consent",
        "deviations.lost_to_follow_up",
        "lost_to_follow_up:",
    ),
    (
        "unknown key of a rule",
        "deviations:\n  visit_late:\n    clasification: important\n",
        "deviation rule visit_late: unknown key 'clasification'; did you mean 'classification'?",
        "deviations.visit_late.clasification",
        "clasification:",
    ),
    (
        "unknown key of a threshold",
        "deviations:\n  visit_late:\n    thresholds:\n      - over_day: 7\n        classification: important\n",
        "unknown key 'over_day'; did you mean 'over_days'?",
        "deviations.visit_late.thresholds[0].over_day",
        "over_day:",
    ),
    (
        "bad classification of a rule",
        "deviations:\n  visit_missed: {classification: major}\n",
        f"deviation rule visit_missed classification: 'major' is not a classification; {CLASSIFICATIONS}",
        "deviations.visit_missed.classification",
        "major",
    ),
    (
        "misspelt classification of a threshold",
        "deviations:\n  visit_late:\n    thresholds: [{over_days: 7, classification: importnat}]\n",
        f"'importnat' is not a classification (did you mean 'important'?); {CLASSIFICATIONS}",
        "deviations.visit_late.thresholds[0].classification",
        "importnat",
    ),
    (
        "classification not text",
        "deviations:\n  visit_missed: {classification: [important]}\n",
        "expected text, found a list",
        "deviations.visit_missed.classification",
        "[important]",
    ),
    (
        "thresholds on a rule without days outside",
        "deviations:\n  visit_missed:\n    thresholds: [{over_days: 7, classification: important}]\n",
        "visit_missed has no days outside a window, so it takes no thresholds (only visit_early, visit_late and "
        "screening_out_of_window do)",
        "deviations.visit_missed.thresholds",
        "thresholds:",
    ),
    (
        "thresholds on a consent rule",
        "deviations:\n  visit_before_consent:\n    thresholds: [{over_days: 7, classification: important}]\n",
        "visit_before_consent has no days outside a window",
        "deviations.visit_before_consent.thresholds",
        "thresholds:",
    ),
    (
        "over_days negative",
        "deviations:\n  visit_late:\n    thresholds: [{over_days: -1, classification: important}]\n",
        "threshold 1 over_days: expected a whole number of days outside the window (0 or more), such as 7, "
        "found the number -1",
        "deviations.visit_late.thresholds[0].over_days",
        "-1",
    ),
    (
        "over_days a fraction",
        "deviations:\n  visit_early:\n    thresholds: [{over_days: 7.5, classification: important}]\n",
        "found the number 7.5",
        "deviations.visit_early.thresholds[0].over_days",
        "7.5",
    ),
    (
        "over_days words",
        "deviations:\n  visit_late:\n    thresholds: [{over_days: a week, classification: important}]\n",
        "found the text 'a week'",
        "deviations.visit_late.thresholds[0].over_days",
        "a week",
    ),
    (
        "over_days true",
        "deviations:\n  visit_late:\n    thresholds: [{over_days: true, classification: important}]\n",
        "found the true/false value true",
        "deviations.visit_late.thresholds[0].over_days",
        "true",
    ),
    (
        "threshold without over_days",
        "deviations:\n  visit_late:\n    thresholds: [{classification: important}]\n",
        "deviation rule visit_late threshold 1: missing required key 'over_days'",
        "deviations.visit_late.thresholds[0].over_days",
        "{classification",
    ),
    (
        "threshold not a mapping",
        "deviations:\n  visit_late:\n    thresholds: [7]\n",
        "expected a mapping with keys such as over_days, classification, found the number 7",
        "deviations.visit_late.thresholds[0]",
        "7]",
    ),
    (
        "duplicate over_days",
        "deviations:\n  screening_out_of_window:\n    thresholds:\n"
        "      - {over_days: 3, classification: non_important}\n"
        "      - {over_days: 3, classification: important}\n",
        "deviation rule screening_out_of_window threshold 2 over_days: over_days 3 is already given by the "
        "threshold on line 41; give each threshold its own number of days",
        "deviations.screening_out_of_window.thresholds[1].over_days",
        "3, classification: important",
    ),
    ("empty section", "deviations: {}\n", "names no rule; give at least one rule", "deviations", "{}"),
    ("section without a value", "deviations:\n", "names no rule", "deviations", "deviations:\n"),
    (
        "section not a mapping",
        "deviations: [visit_late]\n",
        "expected a mapping of deviation rules, such as 'visit_late: {classification: important}', found a list",
        "deviations",
        "[visit_late]",
    ),
    (
        "empty rule",
        "deviations:\n  visit_late: {}\n",
        "deviation rule visit_late: is empty; give its 'classification', its 'thresholds', or both",
        "deviations.visit_late",
        "visit_late:",
    ),
    (
        "rule without a value",
        "deviations:\n  visit_late:\n",
        "deviation rule visit_late: is empty",
        "deviations.visit_late",
        "visit_late:",
    ),
    (
        "empty thresholds",
        "deviations:\n  visit_late: {thresholds: []}\n",
        "lists no threshold; list at least one, or remove 'thresholds'",
        "deviations.visit_late.thresholds",
        "[]",
    ),
    (
        "thresholds not a list",
        "deviations:\n  visit_late: {thresholds: {over_days: 7}}\n",
        "expected a list of thresholds",
        "deviations.visit_late.thresholds",
        "{over_days",
    ),
]
SCHEMA_CANNOT_TELL = {"duplicate over_days"}  # uniqueness of one property among list items: the loader's check


@pytest.mark.parametrize(
    ("section", "words", "field", "snippet"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_each_mistake_is_reported_with_line_column_and_field(section, words, field, snippet):
    text = BASE + section
    problem = the_problem(problems_of(text), words)
    assert problem.field == field
    assert problem.file == "p.yaml"
    line, column = position_of(section, snippet)
    assert problem.line == line
    if not snippet.endswith("\n"):  # an empty value is reported where the line ends
        assert problem.column == column


@pytest.mark.parametrize(("name", "section"), [m[:2] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_the_schema_rejects_the_same_mistakes(validator, name, section):
    errors = schema_errors(validator, BASE + section)
    if name in SCHEMA_CANNOT_TELL:
        assert errors == []
    else:
        assert errors != []


def test_mistakes_in_the_section_are_reported_with_the_others_in_line_order():
    text = BASE.replace("study: TEST-1", "study: TEST 1") + (
        "deviations:\n  visit_lat: {classification: important}\n  visit_missed: {classification: major}\n"
    )
    assert [(p.line, p.field) for p in problems_of(text)] == [
        (1, "study"),
        (39, "deviations.visit_lat"),
        (40, "deviations.visit_missed.classification"),
    ]
