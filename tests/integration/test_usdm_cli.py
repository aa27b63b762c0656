"""`trialcoord protocol import-usdm` as a separate process: the three shared CDISC examples written, validated by
`protocol validate` and scheduled; exit codes and nothing written after a failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli import run

USDM = Path(__file__).resolve().parents[1] / "data" / "usdm"  # the public CDISC examples (README there)
EXAMPLES = ["Alexion_NCT04573309_Wilsons.json", "devices.json", "observational.json"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    out = tmp_path_factory.mktemp("usdm") / "protocols"
    done = {}
    for name in EXAMPLES:
        if not (USDM / name).exists():
            pytest.fail(f"the USDM examples are missing: {USDM / name}")
        target = out / f"U-{Path(name).stem[:12]}" / "1.0.yaml"
        result = run("protocol", "import-usdm", str(USDM / name), "--out", str(target))
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        done[name] = (target, result.stdout + result.stderr)
    return done


def test_the_three_examples_pass_protocol_validate(imported):
    files = [str(path) for path, _ in imported.values()]
    result = run("protocol", "validate", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": valid") == 3


def test_the_report_lists_what_was_not_mapped_and_the_file_keeps_it(imported):
    path, output = imported["Alexion_NCT04573309_Wilsons.json"]
    assert "not mapped: timeline PKPD Timeline (ScheduleTimeline_3)" in output
    assert "passes protocol validate" in output and "51 visits" in output
    text = path.read_text(encoding="utf-8")
    assert 'study: "U-Alexion_NCT0"  # the --out path' in text and 'version: "1.0"' in text
    assert "#   - timeline PKPD Timeline (ScheduleTimeline_3)" in text


def test_an_imported_protocol_schedules(imported):
    path, _ = imported["devices.json"]
    result = run("schedule", str(path), "--event", "dose=2024-03-04", "--as-of", "2024-03-04", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {row["visit"]: row for row in json.loads(result.stdout)}
    assert (rows["WK12"]["target"], rows["WK12"]["earliest"], rows["WK12"]["latest"]) == (
        "2024-05-27",
        "2024-05-23",
        "2024-05-31",
    )  # P12W after the dose, windowLower/Upper P4D


def test_an_existing_file_is_kept_unless_replaced(imported, tmp_path):
    path, _ = imported["observational.json"]
    before = path.read_bytes()
    result = run("protocol", "import-usdm", str(USDM / "devices.json"), "--out", str(path))
    assert result.returncode == 3 and "exists" in result.stderr and "--replace" in result.stderr
    assert path.read_bytes() == before
    copy = tmp_path / "protocols" / "OBS" / "1.0.yaml"
    copy.parent.mkdir(parents=True)
    copy.write_text("old")
    result = run("protocol", "import-usdm", str(USDM / "observational.json"), "--out", str(copy), "--replace")
    assert result.returncode == 0, result.stderr
    assert copy.read_text().startswith("# Imported from CDISC USDM")


def test_json_report_and_standard_output(tmp_path):
    result = run(
        "protocol",
        "import-usdm",
        str(USDM / "observational.json"),
        "--out",
        str(tmp_path / "o.yaml"),
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["study"], report["visits"], report["events"]) == (
        "AP1234",
        6,
        ["treatment"],
    )  # the sponsor's identifier, not the registry's
    assert any("if opted out" in item for item in report["not_mapped"])
    result = run("protocol", "import-usdm", str(USDM / "observational.json"), "--out", "-")
    assert result.returncode == 0 and result.stdout.startswith("# Imported from CDISC USDM")
    assert "passes protocol validate" in result.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"study": {"versions": []}}', "the study has no version"),
        ("{oops", "not JSON"),
    ],
)
def test_bad_input_names_the_file_and_writes_nothing(tmp_path, content, message):
    source = tmp_path / "bad.json"
    source.write_text(content)
    target = tmp_path / "protocols" / "BAD" / "1.yaml"
    result = run("protocol", "import-usdm", str(source), "--out", str(target))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and str(source) in result.stderr and "Traceback" not in result.stderr
    assert not target.exists() and not target.parent.exists()


def test_the_file_is_written_owner_only_and_a_directory_is_refused(tmp_path):
    target = tmp_path / "protocols" / "OBS" / "1.0.yaml"
    assert run("protocol", "import-usdm", str(USDM / "observational.json"), "--out", str(target)).returncode == 0
    assert target.stat().st_mode & 0o077 == 0  # every command runs with umask 077 (docs/operations.md)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    result = run("protocol", "import-usdm", str(USDM / "observational.json"), "--out", str(tmp_path), "--replace")
    assert result.returncode == 2 and "is a directory" in result.stderr and "Traceback" not in result.stderr


def test_a_study_code_the_format_refuses_writes_nothing(tmp_path):
    target = tmp_path / "protocols" / "bad code!" / "1.yaml"
    result = run("protocol", "import-usdm", str(USDM / "devices.json"), "--out", str(target))
    assert result.returncode == 1, result.stderr
    assert "study code 'bad code!'" in result.stderr and "nothing was written" in result.stderr
    assert not target.exists()
