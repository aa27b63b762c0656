"""A wheel built from the project works outside the checkout: installed (not editable) into a fresh virtualenv,
`trialcoord setup`, a PDF from `document_templates/` and `trialcoord serve` work in an empty directory, with the
demo protocols and templates read from the wheel itself (issue 13)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def test_a_wheel_installed_into_a_fresh_venv_sets_up_and_serves(tmp_path):
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(ROOT), cwd=tmp_path)
    wheel = next(dist.glob("trialcoord-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for source in ("document_templates", "protocols"):  # every file of the top-level folders travels inside
        expected = {
            f"trialcoord/_bundled/{source}/{p.relative_to(ROOT / source)}"
            for p in (ROOT / source).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert expected and expected <= set(names), source
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    _run(str(venv / "bin" / "pip"), "install", "--quiet", str(wheel), cwd=tmp_path)
    site = tmp_path / "site"
    site.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIALCOORD_")}
    env.update(TRIALCOORD_DATA_DIR=str(site / "data"), TRIALCOORD_TIME_ZONE="UTC", PYTHONPATH="")
    trialcoord = str(venv / "bin" / "trialcoord")
    where = _run(
        str(venv / "bin" / "python"),
        "-c",
        "import trialcoord.kernel.bundled as b; print(b.folder('protocols'))",
        cwd=site,
        env=env,
    )
    assert where.strip().startswith(str(venv)) and "_bundled" in where  # not the checkout's folders
    assert "demo study loaded" in _run(trialcoord, "setup", cwd=site, env=env)
    _run(
        trialcoord,
        "binder",
        "checklist",
        "DEMO-001",
        "--site",
        "101",
        "--pdf",
        str(site / "checklist.pdf"),
        cwd=site,
        env=env,
    )
    assert (site / "checklist.pdf").read_bytes().startswith(b"%PDF-")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [trialcoord, "serve", "--port", str(port)],
        cwd=site,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, status = time.monotonic() + 60, None
        while time.monotonic() < deadline and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
            except OSError:
                time.sleep(0.2)
        assert status == 200, server.stderr.read() if server.poll() is not None else "no answer"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/site.css", timeout=5)
        assert page.status == 200 and page.read()
    finally:
        server.terminate()
        server.wait(timeout=10)
