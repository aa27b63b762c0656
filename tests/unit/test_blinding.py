"""A protocol's `blinding:` (open, single or double): read from the file and the JSON Schema, a bad value named with
its field and line, and the demo's double-blind study saying so."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from tests.unit.test_protocol_files import BASE, edit, problems_of
from tests.unit.test_protocol_schema import VALID, with_change
from trialcoord.kernel.rules.access import Blinding
from trialcoord.scheduling.protocol_files import SCHEMA_PATH, load_protocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]


def with_blinding(value: str) -> str:
    return edit("day_one: randomization\n", f"day_one: randomization\nblinding: {value}\n")


def test_a_protocol_without_blinding_is_open_label():
    assert parse_protocol(BASE).blinding is Blinding.OPEN
    assert not parse_protocol(BASE).blinding.blinded


@pytest.mark.parametrize("value", ["open", "single", "double"])
def test_each_blinding_is_read(value):
    protocol = parse_protocol(with_blinding(value))
    assert protocol.blinding is Blinding(value)
    assert protocol.blinding.blinded is (value != "open")


@pytest.mark.parametrize("value", ["triple", "true", "Double", "''"])
def test_another_blinding_is_refused_naming_the_field_and_line(value):
    text = with_blinding(value)
    [problem] = problems_of(text)
    assert problem.field == "blinding"
    assert problem.file == "p.yaml"
    assert problem.line == text.splitlines().index(f"blinding: {value}") + 1
    assert "write open or single or double" in problem.message or value == "''" and "is empty" in problem.message
    if value == "triple":
        assert str(problem) == (
            f"p.yaml:{problem.line}:11: blinding: 'triple' is not allowed; write open or single or double"
        )


def test_the_schema_knows_blinding_and_refuses_triple():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
    assert list(validator.iter_errors(with_change(("blinding",), "double"))) == []
    [error] = list(validator.iter_errors(with_change(("blinding",), "triple")))
    assert list(error.path) == ["blinding"]
    assert "'triple' is not one of ['open', 'single', 'double']" in error.message
    assert "blinding" not in VALID  # optional: open by default


def test_the_demo_double_blind_study_says_so_and_the_open_label_one_does_not():
    for version in ("1.0", "2.0"):
        assert load_protocol(ROOT / "protocols" / "DEMO-001" / f"{version}.yaml").blinding is Blinding.DOUBLE
    assert load_protocol(ROOT / "protocols" / "ONC-201" / "1.0.yaml").blinding is Blinding.OPEN
