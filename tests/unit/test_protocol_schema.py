"""The JSON Schema of protocol files (for editors) accepts every shipped protocol and rejects broken ones."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest
import yaml

from trialcoord.scheduling.protocol_files import SCHEMA_PATH, parse_protocol, validate_protocol_file

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL_FILES = sorted((ROOT / "protocols").rglob("*.yaml"))


def as_json(value):
    """YAML dates become ISO strings, as an editor's JSON view of the file shows them."""
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return value.isoformat() if isinstance(value, date) else value


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_demo_protocols_are_shipped():
    names = {path.relative_to(ROOT / "protocols").as_posix() for path in PROTOCOL_FILES}
    assert {"DEMO-001/1.0.yaml", "ONC-201/1.0.yaml"} <= names


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_protocol_file_fits_the_schema(validator, path):
    document = as_json(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert [error.message for error in validator.iter_errors(document)] == []


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_protocol_file_loads_without_problems(path):
    assert validate_protocol_file(path) == []


VALID = {
    "study": "S-1",
    "title": "t",
    "version": "1.0",
    "effective": "2025-01-15",
    "day_one": "randomization",
    "events": {"randomization": {}, "stop": {"ends_schedule": True}},
    "visits": [
        {
            "code": "V1",
            "name": "Day 1",
            "from": "randomization",
            "offset": "0d",
            "window": {"early": "P1D", "late": "unbounded"},
        },
        {
            "code": "C{n}",
            "name": "Cycle {n}",
            "from": "randomization",
            "offset": "-1w",
            "repeat": {"every": "21d", "count": "open"},
            "chain": "planned",
        },
    ],
}


def with_change(path: tuple, value) -> dict:
    document = json.loads(json.dumps(VALID))
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return document


def test_the_reference_document_is_valid_for_schema_and_loader(validator):
    assert list(validator.iter_errors(VALID)) == []
    assert parse_protocol(yaml.safe_dump(VALID)).visits[1].repeat.count is None


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("version",), 2.0),
        (("study",), "S 1"),
        (("effective",), "15/01/2025"),
        (("visits", 0, "ofset"), "1d"),
        (("visits", 0, "offset"), "14"),
        (("visits", 0, "window", "early"), "-3d"),
        (("visits", 0, "window", "late"), "later"),
        (("visits", 0, "chain"), "actual"),
        (("visits", 0, "code"), "V{n}"),
        (("visits", 1, "code"), "C1"),
        (("visits", 1, "repeat", "every"), "0d"),
        (("visits", 1, "repeat", "count"), 0),
        (("visits", 1, "reference"), "plan"),
        (("events", "stop", "ends_schedule"), "yes please"),
        (("events", "stop", "collection"), "halts"),
        (("events", "randomization", "collection"), "stops"),  # only on an event that ends the schedule
        (("visits", 0, "after_end"), "yes"),
        (("calendars",), {"weekdays": {}}),
    ],
    ids=lambda part: "/".join(map(str, part)) if isinstance(part, tuple) else None,
)
def test_broken_documents_fail_the_schema(validator, path, value):
    assert list(validator.iter_errors(with_change(path, value))) != []
