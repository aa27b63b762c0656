"""Untrusted archives and JSON (issue 17): ZIP bombs, members whose headers lie and JSON nested past any use are
each refused with a named problem, while the memory of the process reading them stays bounded."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.unit.test_binder_package import NOW, registry, write
from trialcoord.documents import package_layout, package_verification
from trialcoord.kernel import archives
from trialcoord.kernel.archives import BoundedZip, Limits, load_json
from trialcoord.kernel.problems import InvalidInput

MiB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]


def deflated(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def lying(data: bytes, name: str, size: int) -> bytes:
    """The archive with `name`'s uncompressed size stated as `size` in its local and central headers."""
    raw = bytearray(data)
    for signature, at_name, at_length, at_size in ((b"PK\x03\x04", 30, 26, 22), (b"PK\x01\x02", 46, 28, 24)):
        header = raw.find(signature)
        while raw[header + at_name : header + at_name + len(name.encode())] != name.encode() or struct.unpack_from(
            "<H", raw, header + at_length
        ) != (len(name.encode()),):
            header = raw.find(signature, header + 4)
        struct.pack_into("<I", raw, header + at_size, size)
    return bytes(raw)


def refusal(run) -> str:
    with pytest.raises(InvalidInput) as refused:
        run()
    return str(refused.value)


# --- the bounded ZIP ---------------------------------------------------------------------------------------


def test_a_highly_compressed_member_is_refused_from_its_header_unread():
    bomb = deflated({"word/document.xml": b"<w:p/>" * (2 * MiB)})  # 12 MiB from some 12 kB
    with BoundedZip(io.BytesIO(bomb), "icf.docx") as archive:
        said = refusal(archive.check)
    assert said.startswith("icf.docx: word/document.xml: unpacks at over 100:1") and "ZIP bomb" in said


def test_the_limits_hold_while_decompressing_when_the_directory_is_not_checked():
    bomb = deflated({"big.bin": os.urandom(3 * MiB)})  # random: passes the ratio
    with BoundedZip(io.BytesIO(bomb), "p.zip", Limits(member=2 * MiB)) as archive:
        said = refusal(lambda: archive.read("big.bin"))
    assert said == f"p.zip: big.bin: unpacks to over {2 * MiB} bytes, the limit for it"
    zeros = deflated({"zeros.bin": bytes(3 * MiB)})
    with BoundedZip(io.BytesIO(zeros), "p.zip") as archive:
        said = refusal(lambda: archive.read("zeros.bin"))
    assert said.startswith("p.zip: zeros.bin: unpacks at over 100:1")


def test_a_member_whose_header_lies_about_its_size_is_named_and_never_unpacked_past_it():
    honest = deflated({"manifest.json": b" " * (50 * MiB)})
    bomb = lying(honest, "manifest.json", 1000)  # says 1000 bytes, holds 50 MiB
    produced: list[int] = []
    with BoundedZip(io.BytesIO(bomb), "p.zip") as archive:
        archive.check()  # the directory looks harmless
        said = refusal(lambda: archive.stream("manifest.json", lambda chunk: produced.append(len(chunk))))
    assert said.startswith("p.zip: manifest.json: unreadable (Bad CRC-32")
    assert sum(produced) <= 1000


def test_too_many_members_and_too_many_bytes_in_all_are_refused():
    many = deflated({f"{n}.txt": b"x" for n in range(11)})
    with BoundedZip(io.BytesIO(many), "p.zip", Limits(members=10)) as archive:
        assert refusal(archive.check) == "p.zip: 11 members; the limit is 10"
    two = deflated({"a": os.urandom(MiB), "b": os.urandom(MiB)})
    with BoundedZip(io.BytesIO(two), "p.zip", Limits(total=MiB + 1)) as archive:
        assert refusal(archive.check) == f"p.zip: the members unpack to {2 * MiB} bytes; the limit is {MiB + 1}"


def test_a_real_binder_sized_pdf_member_is_within_the_package_limits():
    assert archives.PACKAGE.member >= 100 * MiB * 5 and archives.WORD.member >= 20 * MiB


# --- bounded JSON ------------------------------------------------------------------------------------------


def test_json_nested_100000_deep_is_refused_without_a_recursion_error():
    deep = b"[" * 100_000 + b"]" * 100_000
    assert (
        refusal(lambda: load_json(deep, "manifest.json"))
        == "manifest.json: JSON nested deeper than 64 levels, the limit"
    )
    unbalanced = b'{"a":' * 100_000  # never closed: the parser says it is not JSON, whatever the depth
    assert refusal(lambda: load_json(unbalanced, "manifest.json")).startswith("manifest.json: not JSON")


def test_json_depth_counts_brackets_outside_strings_only():
    at_limit = "[" * 64 + "]" * 64
    assert load_json(at_limit, "f.json") == json.loads(at_limit)
    assert "limit" in refusal(lambda: load_json("[" + at_limit + "]", "f.json"))
    quoted = json.dumps({"note": "[[[[{{{{" * 100 + '\\"]]', "rows": [[1, {"a": [2]}]]})
    assert load_json(quoted, "f.json") == json.loads(quoted)


def test_json_over_its_size_limit_is_refused_before_parsing():
    assert refusal(lambda: load_json(b"[" + b"0," * 600 + b"0]", "f.json", limit=1000)) == (
        "f.json: 1203 bytes of JSON; the limit is 1000"
    )
    assert refusal(lambda: load_json(b"\xff{}", "f.json")) == "f.json: not UTF-8 text (byte 0)"


# --- `trialcoord verify` of a binder package ----------------------------------------------------------------


@pytest.fixture
def package(tmp_path) -> Path:
    path = tmp_path / "binder.zip"
    write(path)
    return path


def with_manifest(package: Path, target: Path, manifest: bytes) -> Path:
    with zipfile.ZipFile(package) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename != package_layout.MANIFEST:
                new.writestr(info, old.read(info))
        new.writestr(package_layout.MANIFEST, manifest)
    return target


def problems_of(path: Path) -> tuple[str, ...]:
    return package_verification.verify_package(path, registry(), now=NOW).problems


def test_a_manifest_nested_100000_deep_is_a_named_problem(package, tmp_path):
    deep = with_manifest(package, tmp_path / "deep.zip", b"[" * 100_000 + b"]" * 100_000)
    assert problems_of(deep) == ("manifest.json: does not parse (JSON nested deeper than 64 levels, the limit)",)


def test_a_manifest_bomb_is_refused_unread(package, tmp_path):
    bomb = with_manifest(package, tmp_path / "bomb.zip", b"[" + b"{}," * (10 * MiB) + b"{}]")
    assert bomb.stat().st_size < 200_000
    (problem,) = problems_of(bomb)
    assert problem.startswith("manifest.json: unpacks at over 100:1") and "ZIP bomb" in problem


def test_verify_on_the_command_line_names_each_bomb_and_stays_small(package, tmp_path):
    """Run as a user runs it: exit 1, the problem named, no traceback; its peak memory far below the bomb's."""
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps(registry()))
    # 30 MiB of "{}," in 30 kB: parsed whole, ten million dicts (over a GiB); a manifest of 30 MiB of
    # spaces whose header says 1 kB; a manifest nested 100,000 deep.
    bombs = {
        "ratio.zip": with_manifest(package, tmp_path / "r.zip", b"[" + b"{}," * (10 * MiB) + b"{}]"),
        "deep.zip": with_manifest(package, tmp_path / "d.zip", b"[" * 100_000 + b"]" * 100_000),
    }
    honest = with_manifest(package, tmp_path / "h.zip", b" " * (30 * MiB)).read_bytes()
    (tmp_path / "l.zip").write_bytes(lying(honest, package_layout.MANIFEST, 1000))
    bombs["lying.zip"] = tmp_path / "l.zip"
    expected = {
        "ratio.zip": "manifest.json: unpacks at over 100:1",
        "deep.zip": "manifest.json: does not parse (JSON nested deeper than 64 levels",
        "lying.zip": "manifest.json: unreadable (Bad CRC-32",
    }
    for name, path in bombs.items():
        child = subprocess.run(
            [sys.executable, "-c", _PEAK, "verify", str(path), "--registry", str(reg)],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )
        *said, peak = child.stderr.splitlines()
        assert child.returncode == 1, (name, child.stdout, child.stderr)
        assert f"{path}: {expected[name]}" in "\n".join(said) and "Traceback" not in child.stderr, (name, said)
        assert int(peak) < 300 * 1024, (name, peak)  # KiB: the interpreter and trialcoord take ~100 MiB


# The command line in-process, then its peak resident size (KiB) as the last line of stderr: VmHWM, the peak of
# this program's own memory; ru_maxrss would also count the forked parent's pages (a big pytest worker) from
# before exec.
_PEAK = """
import re, runpy, sys
sys.argv = ["trialcoord", *sys.argv[1:]]
try:
    runpy.run_module("trialcoord", run_name="__main__", alter_sys=True)
finally:
    with open("/proc/self/status") as status:
        print(re.search(r"VmHWM:\\s+(\\d+) kB", status.read())[1], file=sys.stderr)
"""


# --- `trialcoord verify` of a sponsor package ---------------------------------------------------------------


def test_a_sponsor_manifest_nested_100000_deep_is_a_named_problem():
    from trialcoord.exports import verification

    deep = deflated({"manifest.json": b'{"format":' + b"[" * 100_000 + b"]" * 100_000 + b"}"})
    assert verification.verify_package(io.BytesIO(deep)).problems == [
        "manifest.json: does not parse (JSON nested deeper than 64 levels, the limit)"
    ]
