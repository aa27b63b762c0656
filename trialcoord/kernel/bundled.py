"""The project's top-level folders that the product reads (`document_templates/`, `protocols/`): the source
checkout's own when running from it, else the copies a wheel carries (setup.py bundles them at build time, so
the top-level folders stay the one source)."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # trialcoord/, from trialcoord/kernel/
FOLDERS = ("document_templates", "protocols")


def folder(name: str) -> Path:
    if name not in FOLDERS:
        raise ValueError(f"{name} is not a folder the package carries ({', '.join(FOLDERS)})")
    checkout = _PACKAGE.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return _PACKAGE / "_bundled" / name
