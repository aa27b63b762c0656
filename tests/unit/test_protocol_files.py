"""Protocol definition files: every rule reports its message, field and line; valid files build Protocols."""

from __future__ import annotations

from datetime import date

import pytest

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.calendars import BUILTIN_CALENDARS, CalendarError, build_calendar
from trialcoord.scheduling.protocol_files import (
    SCHEMA_PATH,
    load_protocol,
    parse_protocol,
    validate_protocol_file,
)
from trialcoord.scheduling.rules.durations import BUSINESS_DAYS, DAYS, MONTHS, Duration
from trialcoord.scheduling.rules.protocol import PLANNED, Arm, Event, Repeat, Window

BASE = """\
study: TEST-1
title: Test protocol
version: "1.0"
effective: 2025-01-15
day_one: randomization
events:
  consent: {}
  randomization: {}
  last_dose: {}
  early_termination: {ends_schedule: true}
arms:
  - {code: A, name: Active}
  - {code: P, name: Placebo}
visits:
  - code: SCR
    name: Screening
    from: randomization
    offset: -7d
    window: {early: 7d, late: 6d}
    procedures: [eligibility, labs]
  - code: V2
    name: Week 2
    from: randomization
    offset: 2w
    window: {early: 3d, late: 3d}
  - code: V3
    name: Week 4
    from: V2
    offset: 2w
    window: {early: 3d}
    arms: [A]
  - code: ET
    name: Early termination
    from: early_termination
    when: early_termination
    offset: 0d
    window: {early: 0d, late: unbounded}
"""

CYCLES = """\
  - code: C{n}D1
    name: Cycle {n} Day 1
    from: randomization
    offset: 0d
    repeat: {every: 21d, count: 6}
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, f"{old!r} must occur once"
    return text.replace(old, new)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(InvalidInput) as raised:
        parse_protocol(text, "p.yaml")
    return raised.value.problems


def line_of(text: str, snippet: str | int) -> int:
    """The line where `snippet` starts (it must occur once), or the line number itself."""
    if isinstance(snippet, int):
        return snippet
    assert text.count(snippet) == 1, f"{snippet!r} must occur once"
    return text[: text.index(snippet)].count("\n") + 1


def the_problem(problems: list[Problem], words: str) -> Problem:
    found = [problem for problem in problems if words in problem.message]
    assert len(found) == 1, f"{words!r} in {[p.message for p in problems]}"
    return found[0]


# (rule, old text, new text, words of the message, field, a snippet of the reported line)
RULES = [
    (
        "top unknown key",
        "title: Test protocol\n",
        "title: Test protocol\ntitel: x\n",
        "unknown key 'titel'; did you mean 'title'?",
        "titel",
        "titel: x",
    ),
    ("top missing key", "title: Test protocol\n", "", "missing required key 'title'", "title", "study: TEST-1"),
    ("version as number", 'version: "1.0"', "version: 1.0", 'write it in quotes: "1.0"', "version", "version: 1.0"),
    ("study code pattern", "study: TEST-1", "study: TEST 1", "letters, digits, '-' and '_'", "study", "study: TEST 1"),
    (
        "effective not a date",
        "effective: 2025-01-15",
        "effective: mid January",
        "expected an ISO date such as 2025-01-15",
        "effective",
        "effective:",
    ),
    (
        "effective impossible date",
        "effective: 2025-01-15",
        "effective: 2025-02-30",
        "'2025-02-30' is not a valid date",
        "effective",
        "effective:",
    ),
    (
        "effective with a time",
        "effective: 2025-01-15",
        "effective: 2025-01-15 10:00:00",
        "(no time)",
        "effective",
        "effective:",
    ),
    (
        "day_one unknown",
        "day_one: randomization",
        "day_one: randomisation",
        "'randomisation' is not an event of this protocol; did you mean 'randomization'?",
        "day_one",
        "day_one:",
    ),
    (
        "event unknown key",
        "early_termination: {ends_schedule: true}",
        "early_termination: {ends_schedul: true}",
        "did you mean 'ends_schedule'?",
        "events.early_termination.ends_schedul",
        "ends_schedul:",
    ),
    (
        "ends_schedule not boolean",
        "{ends_schedule: true}",
        "{ends_schedule: maybe}",
        "event early_termination ends_schedule: expected true or false",
        "events.early_termination.ends_schedule",
        "ends_schedule:",
    ),
    (
        "duplicate event",
        "  last_dose: {}",
        "  consent: {}",
        "'consent' appears twice; the first is on line 7",
        "events",
        9,
    ),
    (
        "duplicate arm",
        "{code: P, name: Placebo}",
        "{code: A, name: Placebo}",
        "arm code 'A' is listed twice",
        "arms[1].code",
        "name: Placebo",
    ),
    (
        "arm without name",
        "{code: P, name: Placebo}",
        "{code: P}",
        "missing required key 'name'",
        "arms[1].name",
        "{code: P}",
    ),
    (
        "visit unknown key",
        "offset: -7d",
        "ofset: -7d",
        "visit SCR: unknown key 'ofset'; did you mean 'offset'?",
        "visits[0].ofset",
        "ofset:",
    ),
    (
        "visit missing key",
        "    name: Week 2\n",
        "",
        "visit V2: missing required key 'name'",
        "visits[1].name",
        "code: V2",
    ),
    (
        "optional not boolean",
        "    name: Week 2\n",
        "    name: Week 2\n    optional: maybe\n",
        "visit V2 optional: expected true or false, found the text 'maybe'",
        "visits[1].optional",
        "optional:",
    ),
    (
        "number not a number",
        "    name: Week 2\n",
        "    name: Week 2\n    number: two\n",
        "expected a number",
        "visits[1].number",
        "number: two",
    ),
    (
        "duplicate number",
        "    name: Week 2\n",
        "    name: Week 2\n    number: 1\n",
        "visit number 1 is already used by visit SCR",
        "visits[1].number",
        "number: 1",
    ),
    (
        "procedures not a list",
        "procedures: [eligibility, labs]",
        "procedures: eligibility",
        "expected a list of procedure names",
        "visits[0].procedures",
        "procedures:",
    ),
    (
        "procedure not text",
        "procedures: [eligibility, labs]",
        "procedures: [eligibility, {labs: 1}]",
        "expected text, found a mapping",
        "visits[0].procedures[1]",
        "procedures:",
    ),
    (
        "name not text",
        "name: Week 2",
        "name: [Week, 2]",
        "visit V2 name: expected text, found a list",
        "visits[1].name",
        "name: [Week",
    ),
    ("bad duration", "offset: -7d", "offset: -7x", "'-7x' is not a duration", "visits[0].offset", "offset: -7x"),
    (
        "duration without unit",
        "offset: -7d",
        "offset: 14",
        "'14' has no unit; write it as '14d'",
        "visits[0].offset",
        "offset: 14",
    ),
    (
        "iso duration mixing units",
        "offset: -7d",
        "offset: P1M2D",
        "mixes months and days",
        "visits[0].offset",
        "offset: P1M2D",
    ),
    (
        "negative window side",
        "{early: 7d, late: 6d}",
        "{early: -7d, late: 6d}",
        "'-7d' is negative",
        "visits[0].window.early",
        "{early: -7d",
    ),
    (
        "bad window side",
        "{early: 7d, late: 6d}",
        "{early: 7d, late: soon}",
        "'soon' is not a duration",
        "visits[0].window.late",
        "late: soon",
    ),
    (
        "window unknown side",
        "{early: 7d, late: 6d}",
        "{early: 7d, lates: 6d}",
        "did you mean 'late'?",
        "visits[0].window.lates",
        "lates:",
    ),
    (
        "window not a mapping",
        "{early: 7d, late: 6d}",
        "7d",
        "expected a mapping with keys such as early, late",
        "visits[0].window",
        "window: 7d",
    ),
    (
        "duplicate visit code",
        "  - code: V3",
        "  - code: V2",
        "visit code 'V2' is already used by the visit on line 21",
        "visits[2].code",
        26,
    ),
    (
        "from unknown",
        "from: V2",
        "from: V9",
        "'V9' is neither an event nor a visit of this protocol",
        "visits[2].from",
        "from: V9",
    ),
    (
        "from misspelt event",
        "from: early_termination",
        "from: early_terminaton",
        "did you mean 'early_termination'?",
        "visits[3].from",
        "from: early_terminaton",
    ),
    (
        "from later visit",
        "from: randomization\n    offset: -7d",
        "from: V3\n    offset: -7d",
        "'V3' is defined later (line 26); move this visit after visit V3",
        "visits[0].from",
        "from: V3",
    ),
    ("from itself", "from: V2", "from: V3", "a visit cannot count from itself", "visits[2].from", "from: V3"),
    (
        "mutual reference",
        "from: randomization\n    offset: 2w",
        "from: V3\n    offset: 2w",
        "visits count from each other in a loop (V2 -> V3 -> V2)",
        "visits[1].from",
        "from: V3",
    ),
    (
        "when unknown",
        "when: early_termination",
        "when: early_stop",
        "'early_stop' is not an event of this protocol",
        "visits[3].when",
        "when:",
    ),
    ("arms unknown", "arms: [A]", "arms: [X]", "'X' is not an arm of this protocol", "visits[2].arms[0]", "arms: [X]"),
    ("arms not a list", "arms: [A]", "arms: A", "expected a list of arm codes", "visits[2].arms", "arms: A"),
    ("arms empty", "arms: [A]", "arms: []", "lists no arm", "visits[2].arms", "arms: []"),
    (
        "arms without arms section",
        "arms:\n  - {code: A, name: Active}\n  - {code: P, name: Placebo}\n",
        "",
        "the protocol defines no arms",
        "visits[2].arms",
        "arms: [A]",
    ),
    (
        "reference not a mode",
        "    name: Week 4\n",
        "    name: Week 4\n    reference: plan\n",
        "'plan' is not allowed; write actual or planned",
        "visits[2].reference",
        "reference:",
    ),
    (
        "chain without repeat",
        "    name: Week 4\n",
        "    name: Week 4\n    chain: planned\n",
        "'chain' applies only to a repeating visit",
        "visits[2].chain",
        "chain:",
    ),
    (
        "occurrence mark without repeat",
        "code: V3",
        "code: V{n}",
        "'{n}' stands for the occurrence number of a repeating visit",
        "visits[2].code",
        "code: V{n}",
    ),
    (
        "visit code clashes with event",
        "code: V3",
        "code: consent",
        "'consent' is also an event name",
        "visits[2].code",
        "code: consent",
    ),
    (
        "business days without calendar",
        "{early: 3d}",
        "{early: 3bd}",
        "'3bd' counts business days, but the protocol names no calendar",
        "visits[2].window.early",
        "{early: 3bd}",
    ),
    (
        "unknown calendar",
        "day_one: randomization\n",
        "day_one: randomization\ncalendar: busines-us\n",
        "'busines-us' is not a known calendar; did you mean 'business-us'?",
        "calendar",
        "calendar:",
    ),
    (
        "after_end not a choice",
        "    name: Week 4\n",
        "    name: Week 4\n    after_end: yes\n",
        "'yes' is not allowed; write expected or not_applicable",
        "visits[2].after_end",
        "after_end:",
    ),
    (
        "collection not a choice",
        "{ends_schedule: true}",
        "{ends_schedule: true, collection: halts}",
        "'halts' is not allowed; write stops or continues",
        "events.early_termination.collection",
        "collection:",
    ),
    (
        "collection without ending",
        "  last_dose: {}",
        "  last_dose: {collection: stops}",
        "'collection' applies only to an event that ends the schedule",
        "events.last_dose.collection",
        "collection:",
    ),
    (
        "two consent events",
        "  last_dose: {}",
        "  last_dose: {consent: true}\n  icf: {consent: true}",
        "only one event records informed consent; 'last_dose' already says 'consent: true'",
        "events.icf.consent",
        "icf:",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "words", "field", "line"), [rule[1:] for rule in RULES], ids=[rule[0] for rule in RULES]
)
def test_each_rule_reports_message_field_and_line(old, new, words, field, line):
    text = edit(old, new)
    problem = the_problem(problems_of(text), words)
    assert problem.field == field
    assert problem.line == line_of(text, line)
    assert problem.file == "p.yaml"
    assert problem.column is not None and problem.column >= 1


CYCLE_RULES = [
    (
        "repeat without every",
        "{every: 21d, count: 6}",
        "{count: 6}",
        "missing required key 'every'",
        "visits[4].repeat.every",
    ),
    ("repeat every zero", "every: 21d", "every: 0d", "'0d' does not move forward", "visits[4].repeat.every"),
    ("repeat every negative", "every: 21d", "every: -21d", "'-21d' does not move forward", "visits[4].repeat.every"),
    (
        "repeat every not a duration",
        "every: 21d",
        "every: often",
        "'often' is not a duration",
        "visits[4].repeat.every",
    ),
    (
        "repeat count zero",
        "count: 6",
        "count: 0",
        "whole number of occurrences (1 or more) or 'open'",
        "visits[4].repeat.count",
    ),
    ("repeat count fraction", "count: 6", "count: 2.5", "found the number 2.5", "visits[4].repeat.count"),
    ("repeat count words", "count: 6", "count: forever", "found the text 'forever'", "visits[4].repeat.count"),
    (
        "repeat without count",
        "{every: 21d, count: 6}",
        "{every: 21d}",
        "missing required key 'count'",
        "visits[4].repeat.count",
    ),
    (
        "repeating code without mark",
        "code: C{n}D1",
        "code: CD1",
        "a repeating visit's code needs '{n}'",
        "visits[4].code",
    ),
    ("repeating code with two marks", "code: C{n}D1", "code: C{n}D{n}", "needs '{n}' exactly once", "visits[4].code"),
]


@pytest.mark.parametrize(
    ("old", "new", "words", "field"), [rule[1:] for rule in CYCLE_RULES], ids=[rule[0] for rule in CYCLE_RULES]
)
def test_repeat_rules(old, new, words, field):
    text = BASE + edit(old, new, CYCLES)
    problem = the_problem(problems_of(text), words)
    assert problem.field == field
    assert problem.line == line_of(text, new)


def test_from_a_repeating_visit_is_ambiguous():
    text = BASE + CYCLES + "  - code: X\n    name: After cycles\n    from: C{n}D1\n    offset: 1d\n"
    problem = the_problem(problems_of(text), "ambiguous which occurrence (C1D1, C2D1, ...)")
    assert (problem.field, problem.line) == ("visits[5].from", line_of(text, "from: C{n}D1"))


def test_from_an_expanded_occurrence_names_the_repeating_visit():
    text = BASE + CYCLES + "  - {code: X, name: After cycle 2, from: C2D1, offset: 1d}\n"
    problem = the_problem(problems_of(text), "'C2D1' is an occurrence of repeating visit 'C{n}D1'")
    assert problem.field == "visits[5].from"


def test_visit_code_that_is_an_occurrence_of_a_repeating_visit():
    text = BASE + CYCLES + "  - {code: C3D1, name: Extra, from: randomization, offset: 1d}\n"
    problem = the_problem(problems_of(text), "'C3D1' is also an occurrence of repeating visit 'C{n}D1'")
    assert problem.field == "visits[5].code"


def test_three_separate_errors_are_all_reported():
    text = edit('version: "1.0"', "version: 1.0")
    text = edit("offset: -7d", "offset: -7x", text)
    text = edit("when: early_termination", "when: early_stop", text)
    problems = problems_of(text)
    assert [p.field for p in problems] == ["version", "visits[0].offset", "visits[3].when"]
    assert [p.line for p in problems] == [3, 18, 35]


def test_an_unknown_from_causes_no_further_reference_problems():
    text = edit("from: V2", "from: V9")
    assert len(problems_of(text)) == 1


def test_an_unreadable_visit_code_does_not_make_references_to_it_unknown():
    text = edit("  - code: V2", "  - code: [V2]")
    problems = problems_of(text)
    assert [p.field for p in problems] == ["visits[1].code"]


def test_a_loop_is_reported_once():
    text = edit("from: randomization\n    offset: 2w", "from: V3\n    offset: 2w")
    assert len(problems_of(text)) == 1


def test_a_three_visit_loop_names_every_visit():
    text = edit("from: randomization\n    offset: -7d", "from: V3\n    offset: -7d")
    text = edit("from: randomization\n    offset: 2w", "from: SCR\n    offset: 2w", text)
    problem = the_problem(problems_of(text), "loop")
    assert "SCR -> V3 -> V2 -> SCR" in problem.message


def test_yaml_syntax_error_has_its_line_and_column():
    text = edit("title: Test protocol", "title: [Test protocol")
    [problem] = problems_of(text)
    assert "not valid YAML" in problem.message
    assert (problem.line, problem.column) == (3, 8)


def test_tab_indentation_gets_a_hint():
    [problem] = problems_of("study: X\nvisits:\n\t- code: V1\n")
    assert "indent with spaces, never tabs" in problem.message
    assert problem.line == 3


def test_top_level_must_be_a_mapping():
    [problem] = problems_of("- study: X\n")
    assert "a mapping that starts with 'study:'; this file holds a list" in problem.message
    assert problem.line == 1


def test_empty_file():
    [problem] = problems_of("# nothing yet\n")
    assert "the file is empty" in problem.message


def test_visits_must_not_be_empty():
    text = BASE[: BASE.index("visits:")] + "visits: []\n"
    problem = the_problem(problems_of(text), "list at least one visit")
    assert (problem.field, problem.line) == ("visits", 14)


def test_problems_are_in_line_order():
    text = edit("when: early_termination", "when: early_stop", edit("study: TEST-1", "study: TEST 1"))
    assert [p.line for p in problems_of(text)] == [1, 35]


# ---- values built from a valid file --------------------------------------------------------------


def test_valid_file_builds_the_protocol():
    protocol = parse_protocol(BASE + CYCLES.replace("count: 6", "count: open") + "    chain: planned\n")
    assert (protocol.study, protocol.title, protocol.version) == ("TEST-1", "Test protocol", "1.0")
    assert protocol.effective == date(2025, 1, 15)
    assert protocol.day_one == "randomization"
    assert protocol.events["early_termination"] == Event("early_termination", ends_schedule=True)
    assert protocol.events["consent"] == Event("consent")
    assert protocol.arms == (Arm("A", "Active"), Arm("P", "Placebo"))
    assert protocol.calendar is None
    scr, v2, v3, et, cycles = protocol.visits
    assert scr.offset == Duration(-7, DAYS, "-7d")
    assert scr.window == Window(Duration(7, DAYS, "7d"), Duration(6, DAYS, "6d"))
    assert scr.procedures == ("eligibility", "labs")
    assert v2.offset.amount == 14 and v2.offset.unit == DAYS
    assert v3.reference_name == "V2"
    assert v3.window.late == Duration(0, DAYS, "0d")  # an omitted side is zero days
    assert v3.arms == frozenset({"A"})
    assert scr.arms is None
    assert et.window.late is None and et.when == "early_termination"
    assert cycles.repeat == Repeat(Duration(21, DAYS, "21d"), None)
    assert cycles.chain == PLANNED
    assert [visit.number for visit in protocol.visits] == [1, 2, 3, 4, 5]
    assert protocol.resolve_visit_code("C7D1") == (cycles, 7)


def test_ending_event_and_follow_up_keys_build_the_protocol():
    text = edit("{ends_schedule: true}", "{ends_schedule: true, collection: stops}")
    text = edit("    name: Week 4\n", "    name: Week 4\n    after_end: expected\n", text)
    protocol = parse_protocol(text)
    assert protocol.events["early_termination"] == Event("early_termination", True, stops_collection=True)
    assert protocol.visits_by_code["V3"].after_end and not protocol.visits_by_code["V2"].after_end
    assert protocol.consent_event == "consent"
    marked = parse_protocol(edit("  consent: {}", "  icf_signed: {consent: true}", text))
    assert marked.consent_event == "icf_signed"
    assert parse_protocol(edit("  consent: {}\n", "", text)).consent_event is None


def test_optional_values_and_explicit_numbers():
    text = edit("    name: Week 2\n", "    name: Week 2\n    number: 2.1\n    optional: true\n    reference: planned\n")
    v2 = parse_protocol(text).visits[1]
    assert (v2.number, v2.optional, v2.reference) == (2.1, True, PLANNED)


def test_omitted_window_is_zero_days_on_both_sides():
    text = edit("    window: {early: 3d, late: 3d}\n", "")
    assert parse_protocol(text).visits[1].window == Window(Duration(0, DAYS, "0d"), Duration(0, DAYS, "0d"))


def test_iso_month_and_business_day_durations():
    text = edit("day_one: randomization\n", "day_one: randomization\ncalendar: weekdays\n")
    text = edit("{early: 3d}", "{early: 2bd, late: unbounded}", text)
    text = edit("offset: 2w\n    window: {early: 3d, late: 3d}", "offset: P1M", text)
    protocol = parse_protocol(text)
    assert protocol.visits[1].offset == Duration(1, MONTHS, "P1M")
    assert protocol.visits[2].window == Window(Duration(2, BUSINESS_DAYS, "2bd"), None)
    assert protocol.calendar.name == "weekdays"


def test_extra_keys_description_and_empty_event_are_accepted():
    text = edit("  consent: {}", "  consent:", "description: Test study\n" + BASE)
    text = edit("    name: Week 2\n", "    name: Week 2\n    description: two weeks after day 1\n", text)
    assert parse_protocol(text).events["consent"] == Event("consent")


# ---- calendars ---------------------------------------------------------------------------------


def test_business_us_follows_observed_federal_holidays():
    calendar = build_calendar("business-us")
    assert not calendar.is_business_day(date(2026, 7, 3))  # July 4 2026 is a Saturday, observed Friday
    assert calendar.add_business_days(date(2026, 7, 2), 1) == date(2026, 7, 6)
    assert not calendar.is_business_day(date(2031, 12, 25))  # years expand on demand


def test_weekdays_has_no_holidays():
    calendar = build_calendar("weekdays")
    assert calendar.is_business_day(date(2026, 7, 3))
    assert not calendar.is_business_day(date(2026, 7, 4))
    assert set(BUILTIN_CALENDARS) == {"business-us", "weekdays"}


def test_unknown_builtin_calendar():
    with pytest.raises(CalendarError, match="not a built-in calendar"):
        build_calendar("lunar")


SITE_CALENDAR = """\
calendar: site-berlin
calendars:
  site-berlin:
    weekend: [sat, sun]
    holidays: [2025-12-24, 2025-12-31]
    rules: us-federal
"""


def test_protocol_defined_calendar():
    protocol = parse_protocol(edit("day_one: randomization\n", "day_one: randomization\n" + SITE_CALENDAR))
    calendar = protocol.calendar
    assert calendar.name == "site-berlin"
    assert not calendar.is_business_day(date(2025, 12, 24))
    assert not calendar.is_business_day(date(2025, 12, 25))  # from the US federal rules
    assert calendar.is_business_day(date(2025, 12, 23))


def test_calendar_with_other_weekend_and_no_rules():
    spec = "calendar: gulf\ncalendars:\n  gulf: {weekend: [fri, sat]}\n"
    calendar = parse_protocol(edit("day_one: randomization\n", "day_one: randomization\n" + spec)).calendar
    assert calendar.weekend == frozenset({4, 5})
    assert calendar.is_business_day(date(2025, 12, 25))


@pytest.mark.parametrize(
    ("old", "new", "words", "field"),
    [
        ("[sat, sun]", "[sat, sunday]", "'sunday' is not a day name", "calendars.site-berlin.weekend[1]"),
        ("2025-12-31]", "Dec 31]", "expected an ISO date", "calendars.site-berlin.holidays[1]"),
        ("rules: us-federal", "rules: us", "'us' is not allowed; write us-federal", "calendars.site-berlin.rules"),
        ("    rules: us-federal", "    rule: us-federal", "did you mean 'rules'?", "calendars.site-berlin.rule"),
        ("  site-berlin:", "  weekdays:", "'weekdays' is a built-in calendar", "calendars.weekdays"),
    ],
)
def test_calendar_definition_rules(old, new, words, field):
    text = edit("day_one: randomization\n", "day_one: randomization\n" + edit(old, new, SITE_CALENDAR))
    problem = the_problem(problems_of(text), words)
    assert problem.field == field
    assert problem.line == line_of(text, new.strip())


# ---- files -------------------------------------------------------------------------------------


def test_load_and_validate_a_file(tmp_path):
    path = tmp_path / "1.0.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_protocol(path).study == "TEST-1"
    assert validate_protocol_file(path) == []
    path.write_text(edit("offset: -7d", "offset: -7x"), encoding="utf-8")
    [problem] = validate_protocol_file(str(path))
    assert problem.file == str(path)
    assert str(problem).startswith(f"{path}:18:13: visits[0].offset: visit SCR offset: '-7x'")


def test_missing_file_is_one_problem(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(InvalidInput) as raised:
        load_protocol(path)
    [problem] = raised.value.problems
    assert problem.file == str(path) and "cannot read the file" in problem.message


def test_non_utf8_file_is_one_problem(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(BASE.replace("Test protocol", "Étude").encode("latin-1"))
    [problem] = validate_protocol_file(path)
    assert "not UTF-8" in problem.message


def test_schema_path_points_at_the_schema():
    assert SCHEMA_PATH.name == "protocol.schema.json" and SCHEMA_PATH.is_file()
