"""The architecture's contracts (import-linter, in pyproject.toml) hold, and they bite: a copy of the package with
a library or a use case imported by rules, a store or file format importing a use case, a lower use case importing
a higher one of its feature, a feature importing one above it, the kernel importing a feature, a feature reaching
into another's store, and a cycle inside the kernel breaks its contract. Function-level imports count: the import
graph is read from the source, not from what one run happened to load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LINT, "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def _statuses(output: str) -> dict[str, str]:
    """Each contract's name -> KEPT or BROKEN, from lint-imports' summary (where long names wrap)."""
    summary = output.split("dependencies.", 1)[1].split("Contracts:", 1)[0]
    words = " ".join(summary.replace("-", " ").split())
    return {name.strip(): status for name, status in re.findall(r"(.+?) (KEPT|BROKEN)", words)}


def test_the_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    statuses = _statuses(result.stdout)
    assert len(statuses) == 19 and set(statuses.values()) == {"KEPT"}, statuses


def _sneak(statement: str) -> str:
    return f"def _sneak():\n    {statement}  # noqa\n"


@pytest.mark.parametrize(
    "module, bad_import, contract",
    [
        ("scheduling/rules/durations.py", _sneak("import yaml"), "Rules are pure"),
        ("documents/rules/consent.py", _sneak("from trialcoord.kernel import audit_log"), "Rules are pure"),
        (
            "scheduling/rules/schedule.py",
            _sneak("from trialcoord.scheduling import schedules"),
            "Layers within scheduling",
        ),
        (
            "scheduling/sdtm/datasets.py",
            _sneak("from trialcoord.scheduling import importing"),
            "Layers within scheduling",
        ),
        ("deviations/store.py", _sneak("from trialcoord.deviations import records"), "Layers within deviations"),
        # the use cases' own order inside a feature: a lower one may not reach a higher one
        ("scheduling/sites.py", _sneak("from trialcoord.scheduling import visits"), "Layers within scheduling"),
        ("accounts/users.py", _sneak("from trialcoord.accounts import sessions"), "Layers within accounts"),
        ("scheduling/schedules.py", _sneak("from trialcoord.deviations import detection"), "Features"),
        ("kernel/audit_log.py", _sneak("from trialcoord.scheduling import schedules"), "Features"),
        ("documents/documents.py", _sneak("from trialcoord.scheduling import store"), "Only scheduling itself"),
        ("deviations/detection.py", _sneak("from trialcoord.documents import consent_store"), "Only documents itself"),
        ("kernel/render/pdf.py", _sneak("from trialcoord.kernel.render import document_data"), "No import cycles"),
        ("home/store.py", _sneak("from trialcoord.home import work"), "Layers within home"),
        ("home/rules/tasks.py", _sneak("from trialcoord.kernel import audit_log"), "Rules are pure"),
        ("exports/packages.py", _sneak("from trialcoord.home import counts"), "Features"),
        ("overviews/pages/studies.py", _sneak("from trialcoord.home import store"), "Only home itself"),
    ],
)
def test_a_bad_import_breaks_its_contract(tmp_path, module, bad_import, contract):
    shutil.copytree(ROOT / "trialcoord", tmp_path / "trialcoord", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "trialcoord" / module).open("a", encoding="utf-8") as source:
        source.write("\n\n" + bad_import)
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout[-2000:]
    statuses = _statuses(result.stdout)
    assert [status for name, status in statuses.items() if name.startswith(contract)] == ["BROKEN"], statuses
