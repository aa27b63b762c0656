"""CDISC USDM v4 -> protocol definition: the three public CDISC examples, windows pinned against their JSON,
and hand-made edge cases of files the importer has never seen."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling.protocol_files import parse_protocol
from trialcoord.scheduling.rules.schedule import evaluate
from trialcoord.scheduling.usdm import convert, parse_usdm
from trialcoord.scheduling.usdm.durations import duration

USDM = Path(__file__).resolve().parents[1] / "data" / "usdm"  # the public CDISC examples (README there)
EXAMPLES = {
    "Alexion_NCT04573309_Wilsons.json": "ALXN1840-WD-204",
    "devices.json": "H2Q-MC-LZZT",
    "observational.json": "AP1234",
}  # each the sponsor's identifier (a registry's comes first in one)
TODAY = date(2026, 12, 6)
DAY_ONE = date(2024, 3, 4)


def _convert(document: dict, **options):
    result = convert(document, "study.json", today=TODAY, **options)
    return result, parse_protocol(result.text, "out.yaml")


def _visit(protocol, code: str):
    return protocol.visits_by_code[code]


def _example(name: str) -> dict:
    path = USDM / name
    if not path.exists():
        pytest.fail(f"the USDM examples are missing: {path}")
    return parse_usdm(path.read_bytes(), str(path))


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_shared_example_becomes_a_valid_protocol(name):
    result, protocol = _convert(_example(name))
    assert protocol.study == EXAMPLES[name]
    assert protocol.visits and protocol.day_one in protocol.events
    assert result.text.startswith("# Imported from CDISC USDM 4.0.0")
    assert "# not mapped:" in result.text and "# assumed:" in result.text
    assert result.text == _convert(_example(name))[0].text  # the same file gives the same bytes, codes included


def _days(text: str) -> int:
    """The test's own reading of an ISO duration in whole days (independent of the importer); the examples'
    times of day are all under a day (PT4H), so they count 0."""
    match = re.fullmatch(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:[0-9]|1[0-9]|2[0-3])H)?", text)
    assert match, text
    return int(match[1] or 0) * 7 + int(match[2] or 0)


@pytest.mark.parametrize("name", ["devices.json", "Alexion_NCT04573309_Wilsons.json"])
def test_windows_equal_the_values_in_the_json(name):
    """Every visit timed from the main timeline's anchor: target, earliest and latest as the JSON says."""
    document = _example(name)
    design = document["study"]["versions"][0]["studyDesigns"][0]
    main = next(t for t in design["scheduleTimelines"] if t["mainTimeline"])
    anchor = next(t for t in main["timings"] if t["type"]["decode"] == "Fixed Reference")[
        "relativeToScheduledInstanceId"
    ]
    labels = {e["id"]: e["label"] for e in design["encounters"]}
    instances = {i["id"]: i for i in main["instances"]}
    expected = {}
    for timing in main["timings"]:
        instance = instances[timing["relativeFromScheduledInstanceId"]]
        if (
            timing["relativeToScheduledInstanceId"] != anchor
            or not instance.get("encounterId")
            or timing["type"]["decode"] == "Fixed Reference"
            or "T" in timing["value"]
        ):
            continue
        sign = -1 if timing["type"]["decode"] == "Before" else 1
        target = DAY_ONE + timedelta(days=sign * _days(timing["value"]))
        expected[labels[instance["encounterId"]]] = (
            target,
            target - timedelta(days=_days(timing.get("windowLower") or "P0D")),
            target + timedelta(days=_days(timing.get("windowUpper") or "P0D")),
        )
    assert len(expected) >= 10
    _, protocol = _convert(document)
    rows = {
        row.name: (row.target, row.earliest, row.latest)
        for row in evaluate(protocol, {protocol.day_one: DAY_ONE}, {}, DAY_ONE)
    }
    assert {label: rows[label] for label in expected} == expected


def test_pinned_visits_of_the_alexion_study():
    """Read off the JSON by hand: Screening Day -42 with window 0..33 days, EOS Day 54 (P53D) +-2 days,
    Day -6 through -5 one day after Day -7 through the instance without an encounter between them."""
    _, protocol = _convert(_example("Alexion_NCT04573309_Wilsons.json"))
    rows = {row.visit: row for row in evaluate(protocol, {"day_1": DAY_ONE}, {}, DAY_ONE)}
    assert (rows["SCREEN"].target, rows["SCREEN"].earliest, rows["SCREEN"].latest) == (
        DAY_ONE - timedelta(42),
        DAY_ONE - timedelta(42),
        DAY_ONE - timedelta(9),
    )
    assert rows["SCREEN"].study_day == -42
    assert (rows["EOS"].target, rows["EOS"].earliest, rows["EOS"].latest) == (
        DAY_ONE + timedelta(53),
        DAY_ONE + timedelta(51),
        DAY_ONE + timedelta(55),
    )
    assert rows["D-6-5"].target == rows["D-7"].target + timedelta(1) == DAY_ONE - timedelta(6)
    assert _visit(protocol, "D-6-5").reference_name == "D-7"
    assert rows["D40"].study_day == 40 and rows["D1"].study_day == 1
    assert protocol.events["early_termination"].ends_schedule
    assert _visit(protocol, "ET").when == "early_termination"
    assert protocol.events["consent"].consent


def test_what_cannot_be_mapped_is_listed_in_the_file_and_the_result():
    result, _ = _convert(_example("Alexion_NCT04573309_Wilsons.json"))
    listed = "\n".join(result.not_mapped)
    for expected in (
        "Adverse Event Timeline",
        "PKPD Timeline",
        "Unscheduled Timeline",
        "branch 'Day = -6'",
        "ScheduledActivityInstance_19",
        "COND26",
        "amendment",
    ):
        assert expected in listed, expected
    block = result.text.split("# not mapped:")[1]
    assert all(item[:60] in block for item in result.not_mapped)
    assert any("give no window" in item for item in result.assumed)
    assert any("no dateValues" in item and "2026-12-06" in item for item in result.assumed)


def test_the_devices_example_keeps_two_instances_of_one_encounter_apart():
    _, protocol = _convert(_example("devices.json"))
    assert _visit(protocol, "WK8").name == "Week 8" and _visit(protocol, "WK8N").name == "Week 8 (Week NPI)"
    assert _visit(protocol, "WK8N").reference_name == "WK8"
    assert str(protocol.effective) == "2006-06-01"
    assert [arm.code for arm in protocol.arms] == ["PLACEBO", "XANOMELINE_LOW_DOSE", "XANOMELINE_HIGH_DOSE"]


def test_study_and_version_can_come_from_the_caller():
    result, protocol = _convert(
        _example("observational.json"), study="SCOPE-1", version="1.0", effective=date(2023, 1, 2)
    )
    assert (protocol.study, protocol.version, str(protocol.effective)) == ("SCOPE-1", "1.0", "2023-01-02")
    assert "# the --out path" in result.text


# ---- hand-made edge cases ----------------------------------------------------------------------------


def _timing(tid, kind, value, source, target, lower=None, upper=None):
    codes = {"Before": "C201357", "After": "C201356", "Fixed Reference": "C201358"}
    return {
        "id": tid,
        "type": {"code": codes.get(kind, "X"), "decode": kind},
        "value": value,
        "windowLower": lower,
        "windowUpper": upper,
        "relativeFromScheduledInstanceId": source,
        "relativeToScheduledInstanceId": target,
        "relativeToFrom": {"decode": "Start to Start"},
    }


def _instance(iid, encounter=None, name=None, after=None, epoch=None, activities=()):
    return {
        "id": iid,
        "instanceType": "ScheduledActivityInstance",
        "encounterId": encounter,
        "name": name or iid,
        "label": "",
        "defaultConditionId": after,
        "epochId": epoch,
        "activityIds": list(activities),
    }


def _study(instances, timings, encounters, timelines=(), **design_extra):
    main = {
        "id": "TL1",
        "name": "Main Timeline",
        "mainTimeline": True,
        "entryId": instances[0]["id"],
        "instances": instances,
        "timings": timings,
    }
    design = {
        "id": "D1",
        "name": "Design",
        "encounters": [{"id": e, "name": e, "label": label} for e, label in encounters.items()],
        "activities": [{"id": "A1", "name": "Informed consent"}],
        "epochs": [],
        "scheduleTimelines": [main, *timelines],
        **design_extra,
    }
    return {
        "usdmVersion": "4.0.0",
        "study": {
            "id": "S",
            "name": "Edge: study",
            "versions": [
                {
                    "id": "SV1",
                    "versionIdentifier": "3",
                    "studyIdentifiers": [{"id": "I1", "text": "EDGE 01"}],
                    "titles": [
                        {
                            "id": "T1",
                            "type": {"decode": "Official Study Title"},
                            "text": 'A "quoted": title\nover two lines',
                        }
                    ],
                    "dateValues": [
                        {
                            "id": "G1",
                            "name": "Effective",
                            "dateValue": "2025-02-03",
                            "type": {"decode": "Protocol Effective Date"},
                        }
                    ],
                    "studyDesigns": [design],
                }
            ],
        },
    }


def _simple(**design_extra):
    return _study(
        [
            _instance("I1", "E1", "SCR", "I2", activities=["A1"]),
            _instance("I2", "E2", "BASE", "I3"),
            _instance("I3", "E3", "W4"),
        ],
        [
            _timing("T1", "Before", "P14D", "I1", "I2", "P7D", "P0D"),
            _timing("T2", "Fixed Reference", "P1D", "I2", "I2"),
            _timing("T3", "After", "P4W", "I3", "I2", "P3D", "P3D"),
        ],
        {"E1": "Screening", "E2": "Baseline", "E3": "Week 4"},
        **design_extra,
    )


def test_a_minimal_study_maps_every_field():
    result, protocol = _convert(_simple())
    assert (protocol.study, protocol.version, str(protocol.effective)) == ("EDGE-01", "3", "2025-02-03")
    assert protocol.title == 'A "quoted": title over two lines'
    assert protocol.day_one == "baseline" and protocol.events["consent"].consent
    screening, week4 = _visit(protocol, "SCR"), _visit(protocol, "W4")
    assert (screening.offset.text, screening.window.early.text, screening.window.late.text) == ("-14d", "7d", "0d")
    assert (week4.offset.text, week4.window.early.text, week4.window.late.text) == ("4w", "3d", "3d")
    assert [v.number for v in protocol.visits] == [1, 2, 3]
    assert "# instance I3, encounter E3" in result.text and "# T3: After P4W" in result.text
    assert result.not_mapped == []


def test_a_main_timeline_without_a_fixed_reference_is_refused_naming_it():
    document = _simple()
    timings = document["study"]["versions"][0]["studyDesigns"][0]["scheduleTimelines"][0]["timings"]
    timings[1]["type"] = {"code": "C201356", "decode": "After"}
    with pytest.raises(InvalidInput) as error:
        _convert(document)
    assert "Main Timeline (TL1) has no Fixed Reference" in str(error.value)
    assert "study.json" in str(error.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        (b"{not json", "not JSON"),
        (b'{"usdmVersion": "4.0.0"}', "no 'study'"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_usdm_is_bad_input_naming_it(text, expected):
    with pytest.raises(InvalidInput) as error:
        parse_usdm(text, "x.json")
    assert expected in str(error.value) and "x.json" in str(error.value)


def test_missing_structure_names_the_path():
    with pytest.raises(InvalidInput) as error:
        convert({"study": {"versions": [{"id": "V", "studyDesigns": "nope"}]}}, "s.json", today=TODAY)
    assert "study.versions[0].studyDesigns" in str(error.value)


def test_a_visit_without_timing_is_listed_and_the_rest_kept():
    document = _simple()
    timeline = document["study"]["versions"][0]["studyDesigns"][0]["scheduleTimelines"][0]
    timeline["timings"] = [t for t in timeline["timings"] if t["id"] != "T3"]
    result, protocol = _convert(document)
    assert [v.code for v in protocol.visits] == ["SCR", "BASE"]
    assert any("W4" in item and "no Before/After timing" in item for item in result.not_mapped)


def test_offsets_walk_through_instances_without_an_encounter_and_references_come_first():
    """I4 (no encounter) is 2 days after W4; V5 is 1 week after I4; SCR counts from a visit listed after it."""
    document = _study(
        [
            _instance("I1", "E1", "SCR", "I2"),
            _instance("I2", "E2", "BASE", "I3"),
            _instance("I3", "E3", "W4", "I4"),
            _instance("I4", None, "GAP", "I5", activities=["A1"]),
            _instance("I5", "E5", "V5"),
        ],
        [
            _timing("T1", "Before", "P3D", "I1", "I3"),
            _timing("T2", "Fixed Reference", "P1D", "I2", "I2"),
            _timing("T3", "After", "P1M", "I3", "I2", "P1W", "P1M"),
            _timing("T4", "After", "P2D", "I4", "I3"),
            _timing("T5", "After", "P1W", "I5", "I4"),
        ],
        {"E1": "Screening", "E2": "Baseline", "E3": "Month 1", "E5": "Visit 5"},
    )
    result, protocol = _convert(document)
    codes = [v.code for v in protocol.visits]
    assert codes.index("W4") < codes.index("SCR")  # `from` must name a visit defined earlier
    assert _visit(protocol, "SCR").number == 1 and _visit(protocol, "SCR").reference_name == "W4"
    assert _visit(protocol, "V5").reference_name == "W4" and _visit(protocol, "V5").offset.text == "9d"
    assert (_visit(protocol, "W4").offset.text, _visit(protocol, "W4").window.late.text) == ("1mo", "1mo")
    rows = {r.visit: r for r in evaluate(protocol, {"baseline": DAY_ONE}, {}, DAY_ONE)}
    assert rows["V5"].target == date(2024, 4, 4) + timedelta(9)
    assert any("GAP" in item and "no encounter" in item for item in result.not_mapped)


def test_codes_stay_unique_and_never_clash_with_event_names():
    document = _study(
        [
            _instance("I1", "E1", "visit one", "I2"),
            _instance("I2", "E2", "Visit-One", "I3"),
            _instance("I3", "E3", "診察", "I4"),
            _instance("I4", "E4", ""),
        ],
        [
            _timing("T1", "Fixed Reference", "P1D", "I1", "I1"),
            _timing("T2", "After", "P1D", "I2", "I1"),
            _timing("T3", "After", "P2D", "I3", "I1"),
            _timing("T4", "After", "P3D", "I4", "I1"),
        ],
        {"E1": "Visit one", "E2": "Visit One (again)", "E3": "第2週の診察", "E4": "Week 3"},
    )
    _, protocol = _convert(document)
    codes = [v.code for v in protocol.visits]
    assert len(set(codes)) == 4 and codes[:2] == ["VISIT_ONE", "VISIT-ONE"]
    assert _visit(protocol, codes[2]).name == "第2週の診察"  # non-Latin names are kept as written
    assert not set(codes) & set(protocol.events)


def test_arms_limit_visits_by_the_study_cells_of_their_epoch():
    document = _simple(
        arms=[{"id": "ARM1", "name": "Active"}, {"id": "ARM2", "name": "Placebo"}],
        studyCells=[
            {"armId": "ARM1", "epochId": "EP1"},
            {"armId": "ARM2", "epochId": "EP1"},
            {"armId": "ARM1", "epochId": "EP2"},
        ],
    )
    design = document["study"]["versions"][0]["studyDesigns"][0]
    design["epochs"] = [{"id": "EP1", "name": "Screening"}, {"id": "EP2", "name": "Open label"}]
    instances = design["scheduleTimelines"][0]["instances"]
    instances[0]["epochId"] = instances[1]["epochId"] = "EP1"
    instances[2]["epochId"] = "EP2"
    _, protocol = _convert(document)
    assert _visit(protocol, "SCR").arms is None and _visit(protocol, "W4").arms == frozenset({"ACTIVE"})


def test_other_timelines_become_events_and_conditional_visits():
    follow_up = {
        "id": "TL2",
        "name": "Survival Follow-up Timeline",
        "entryCondition": "Subject stops treatment",
        "entryId": "F1",
        "instances": [_instance("F1", "E9", "FU1", "F2"), _instance("F2", "E10", "FU2")],
        "timings": [
            _timing("T9", "Fixed Reference", "P1D", "F1", "F1"),
            _timing("T10", "After", "P3M", "F2", "F1", "P14D", "P14D"),
        ],
    }
    withdrawal = {
        "id": "TL3",
        "name": "Withdrawal Timeline",
        "entryId": "W1",
        "instances": [_instance("W1", None, "WD", activities=["A1"])],
        "timings": [_timing("T11", "Fixed Reference", "PT0M", "W1", "W1")],
    }
    document = _simple()
    design = document["study"]["versions"][0]["studyDesigns"][0]
    design["scheduleTimelines"] += [follow_up, withdrawal]
    design["encounters"] += [
        {"id": "E9", "name": "E9", "label": "Follow-up 1"},
        {"id": "E10", "name": "E10", "label": "Follow-up 2"},
    ]
    _, protocol = _convert(document)
    assert not protocol.events["survival_follow_up"].ends_schedule
    assert protocol.events["withdrawal"].ends_schedule
    assert (
        _visit(protocol, "FU2").when == "survival_follow_up"
        and _visit(protocol, "FU2").reference_name == "survival_follow_up"
    )
    assert _visit(protocol, "FU2").offset.text == "3mo"
    assert _visit(protocol, "WD").when == "withdrawal" and _visit(protocol, "WD").number == 6


def test_bad_durations_and_unknown_references_are_listed_not_guessed():
    document = _simple()
    timings = document["study"]["versions"][0]["studyDesigns"][0]["scheduleTimelines"][0]["timings"]
    timings[2]["value"] = "four weeks"
    timings[0]["relativeToScheduledInstanceId"] = "I99"
    result, protocol = _convert(document)
    assert [v.code for v in protocol.visits] == ["BASE"]
    listed = "\n".join(result.not_mapped)
    assert "'four weeks' is not an ISO 8601 duration" in listed and "'I99'" in listed


@pytest.mark.parametrize(
    "text, months, days, exact",
    [
        ("P2W", 0, 14, True),
        ("P1Y2M", 14, 0, True),
        ("-P3D", 0, -3, True),
        ("PT36H", 0, 1, False),
        ("PT48H", 0, 2, True),
        ("P1DT12H", 0, 1, False),
    ],
)
def test_iso_durations(text, months, days, exact):
    value = duration(text, "x")
    assert (value.months, value.days, value.exact) == (months, days, exact)


@pytest.mark.parametrize("text", ["", "P", "PT", "14 days", None, 3])
def test_iso_durations_refuse_what_is_not_one(text):
    with pytest.raises(ValueError, match="not an ISO 8601 duration"):
        duration(text, "timing T1 value")


def test_extra_versions_and_designs_are_listed():
    document = _simple()
    version = document["study"]["versions"][0]
    version["studyDesigns"].append({"id": "D2", "name": "Extension"})
    document["study"]["versions"].append({"id": "SV2", "versionIdentifier": "4"})
    result, _ = _convert(document)
    assert any("D2" in item for item in result.not_mapped) and any("SV2" in item for item in result.not_mapped)


def _mutations(document, rng, count: int):
    """Copies of the document, each with one value somewhere replaced by null, a string, a list or removed."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((*path, key))
                walk(value, (*path, key))
        elif isinstance(node, list):
            for index, value in enumerate(node[:3]):
                paths.append((*path, index))
                walk(value, (*path, index))

    walk(document, ())
    for path in rng.sample(paths, count):
        copy = json.loads(json.dumps(document))
        parent = copy
        for step in path[:-1]:
            parent = parent[step]
        replacement = rng.choice([None, "x", [], {}, 3, "DELETE"])
        if replacement == "DELETE" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement
        yield path, copy


def test_damaged_files_give_bad_input_or_a_protocol_never_a_crash():
    """A file the importer has never seen: any single value damaged anywhere gives InvalidInput naming the
    problem, or a text that the protocol reader accepts or refuses with its own problems, never a traceback."""
    import random

    document = _example("devices.json")
    for path, damaged in _mutations(document, random.Random(12), 200):
        try:
            result = convert(damaged, "damaged.json", today=TODAY)
        except InvalidInput as error:
            assert error.problems and all(p.file == "damaged.json" for p in error.problems), path
            continue
        try:
            parse_protocol(result.text, "out.yaml")
        except InvalidInput:
            pass  # reported by the command ("does not validate; nothing was written")


# ---- found by a review ---------------------------------------------------------------------------------


def test_a_visit_counted_from_a_visit_that_could_not_be_placed_is_listed_not_a_crash():
    document = _simple()
    timeline = document["study"]["versions"][0]["studyDesigns"][0]["scheduleTimelines"][0]
    timeline["instances"][2]["defaultConditionId"] = "I4"
    timeline["instances"].append(_instance("I4", "E4", "W5"))
    document["study"]["versions"][0]["studyDesigns"][0]["encounters"].append({"id": "E4", "name": "E4", "label": "W5"})
    timeline["timings"][2]["value"] = "four weeks"  # W4 cannot be placed; W5 counts from it
    timeline["timings"].append(_timing("T4", "After", "P7D", "I4", "I3"))
    result, protocol = _convert(document)
    assert [v.code for v in protocol.visits] == ["SCR", "BASE"]
    assert any("W5" in item and "counted from instance I3" in item for item in result.not_mapped)


def test_text_from_the_file_never_leaves_its_line():
    """A name holding a line break (or YAML's own, U+2028) cannot add a key to the protocol written."""
    document = _simple()
    design = document["study"]["versions"][0]["studyDesigns"][0]
    design["epochs"] = [{"id": "EP1", "name": "Treatment\n    optional: true"}]
    design["scheduleTimelines"][0]["instances"][2]["epochId"] = "EP1"
    design["encounters"][2]["label"] = "Week 4\u2028    optional: true \ud800"
    document["systemName"] = "Tool\nstudy: OTHER"
    result, protocol = _convert(document)
    assert _visit(protocol, "W4").optional is False and protocol.study == "EDGE-01"
    assert not re.search(r"^\s*(optional|study):", result.text.replace('study: "EDGE-01"', ""), re.M)
    assert _visit(protocol, "W4").name == "Week 4 optional: true ?"


def test_a_timeline_ends_the_schedule_by_its_name_not_by_what_it_mentions():
    follow_up = {
        "id": "TL2",
        "name": "Survival Follow-up Timeline",
        "entryId": "F1",
        "entryCondition": "Subject discontinues study treatment",
        "description": "follow-up after an adverse event or the end of treatment",
        "instances": [_instance("F1", "E9", "FU1")],
        "timings": [_timing("T9", "Fixed Reference", "P1D", "F1", "F1")],
    }
    document = _simple()
    design = document["study"]["versions"][0]["studyDesigns"][0]
    design["scheduleTimelines"].append(follow_up)
    design["encounters"].append({"id": "E9", "name": "E9", "label": "Follow-up"})
    _, protocol = _convert(document)
    assert not protocol.events["survival_follow_up"].ends_schedule
    assert _visit(protocol, "FU1").when == "survival_follow_up"


@pytest.mark.parametrize("where, value", [("value", "P1M3D"), ("windowUpper", "P1M7D")])
def test_months_and_days_together_are_listed_not_written(where, value):
    document = _simple()
    timings = document["study"]["versions"][0]["studyDesigns"][0]["scheduleTimelines"][0]["timings"]
    timings[2][where] = value
    result, protocol = _convert(document)
    assert "W4" not in protocol.visits_by_code and [v.code for v in protocol.visits] == ["SCR", "BASE"]
    assert any("W4" in item and "mixes months and days" in item for item in result.not_mapped)


def test_names_yaml_would_read_as_other_types_stay_text():
    document = _simple()
    version = document["study"]["versions"][0]
    version["studyIdentifiers"] = [{"id": "I1", "text": "12345"}]
    instances = version["studyDesigns"][0]["scheduleTimelines"][0]["instances"]
    instances[0]["name"], instances[1]["label"] = "YES", "null"
    _, protocol = _convert(document)
    assert protocol.study == "12345" and "YES" in protocol.visits_by_code


@pytest.mark.parametrize("text", [b'{"study": 1' + b"0" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000])
def test_numbers_and_nesting_beyond_what_json_reads_are_bad_input(text):
    with pytest.raises(InvalidInput, match="x.json"):
        parse_usdm(text, "x.json")


def test_a_usdm_file_nested_100000_deep_is_bad_input_not_a_recursion_error():
    with pytest.raises(InvalidInput) as error:
        parse_usdm(b'{"study":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "x.json")
    assert str(error.value) == "x.json: JSON nested deeper than 64 levels, the limit"
