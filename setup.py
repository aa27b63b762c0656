"""Build hook (the project is configured in pyproject.toml): a wheel carries the top-level folders the product
reads, `document_templates/` and `protocols/`, copied into `trialcoord/_bundled/` at build time so that the
top-level folders stay their one source (trialcoord/bundled.py finds either)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("document_templates", "protocols")


class BuildPyWithFolders(build_py):
    def run(self) -> None:
        super().run()
        for name in BUNDLED:
            target = Path(self.build_lib) / "trialcoord" / "_bundled" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))


setup(cmdclass={"build_py": BuildPyWithFolders})
