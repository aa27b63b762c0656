"""The offline check of a sponsor package on untrusted ZIPs: every failure a named problem (never a traceback),
contents parsed only under a holding signature, bounded resources, and CSV cells compared as the writer writes
them. Packages are made here from two small datasets, without a database."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from datetime import datetime

import pikepdf
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trialcoord.exports import transport, verification, writing
from trialcoord.exports.define_xml import define_xml
from trialcoord.exports.report import FIGURES_FILE, single_associated_files
from trialcoord.exports.rules.sdtm import Dataset, Kind, Variable
from trialcoord.kernel.rules.audit_entries import canonical_json
from trialcoord.kernel.rules.audit_verification import Checkpoint
from trialcoord.kernel.signing_keys import sign_checkpoint

AT = "2026-03-01T23:59:59Z"
KEY = Ed25519PrivateKey.generate()
DM_VARS = ("STUDYID", "DOMAIN", "USUBJID", "SUBJID", "SITEID", "SEX", "COUNTRY")
DM_ROWS = (("S-1", "DM", "S-1-001", "001", "01", "F", "FRA"), ("S-1", "DM", "S-1-002", "002", "02", "M", "FRA"))
DV_ROWS = (("S-1", "DV", "S-1-001", 1.0, "Visit out of window"), ("S-1", "DV", "S-1-002", 2.0, "Missed dose"))


def _dm(rows=DM_ROWS) -> Dataset:
    return Dataset("DM", "Demographics", tuple(Variable(v, v.title()) for v in DM_VARS), rows)


def _dv(rows=DV_ROWS) -> Dataset:
    kinds = {"DVSEQ": Kind.NUMBER}
    names = ("STUDYID", "DOMAIN", "USUBJID", "DVSEQ", "DVTERM")
    return Dataset(
        "DV", "Protocol Deviations", tuple(Variable(v, v.title(), kinds.get(v, Kind.TEXT)) for v in names), rows
    )


def _report(per_site: dict, figures: bytes | None = None) -> bytes:
    blank = io.BytesIO()
    with pikepdf.new() as pdf:
        pdf.add_blank_page()
        pdf.save(blank)
    figures = figures if figures is not None else canonical_json({"deviations": {"per_site": per_site}})
    return single_associated_files(blank.getvalue(), [(FIGURES_FILE, figures, "figures")], AT)


def _package(
    dm: Dataset | None = None, dv: Dataset | None = None, *, report: bytes | None = None, extra=(), csv=None
) -> bytes:
    """A signed package of DM and DV: `csv` replaces a CSV member's bytes by name, `extra` adds members."""
    datasets = [dm or _dm(), dv or _dv()]
    at = datetime(2026, 3, 1, 23, 59, 59)
    members = []
    for data in datasets:
        members.append(
            writing.Member(f"{data.name.lower()}.xpt", "application/x-sas-xport", transport.xpt_bytes(data, at))
        )
        name = f"{data.name.lower()}.csv"
        members.append(writing.Member(name, "text/csv", (csv or {}).get(name, transport.csv_bytes(data))))
    members.append(
        writing.Member(
            writing.DEFINE,
            "application/xml",
            define_xml(datasets, study="S-1", title="T", protocol="P", generated_at=AT),
        )
    )
    members.append(
        writing.Member(writing.REPORT, "application/pdf", report if report is not None else _report({"01": 1, "02": 1}))
    )
    members += list(extra)
    manifest = {
        "study": "S-1",
        "trialcoord_version": "0",
        "parameters": {"as_of": AT[:10], "sites": [], "privacy": "coded", "arms_shown": False, "transfer": 1},
        "generated_at": AT,
        "datasets": [
            {"name": d.name, "rows": len(d.rows), "xpt": f"{d.name.lower()}.xpt", "csv": f"{d.name.lower()}.csv"}
            for d in datasets
        ],
        # the site's audit checkpoint, signed by the manifest's key: an anchor the sponsor holds (issue 17)
        "checkpoint": sign_checkpoint(Checkpoint(3, "ab" * 32, "2026-03-01T23:59:59.000000Z"), KEY).to_json(),
    }
    out = io.BytesIO()
    writing.write(out, members, manifest=manifest, key=KEY)
    return out.getvalue()


@pytest.fixture(scope="module")
def valid() -> bytes:
    return _package()


def _problems(data: bytes) -> list[str]:
    verification.is_sponsor_package(io.BytesIO(data))  # must not raise either
    return verification.verify_package(io.BytesIO(data)).problems


def _patched(data: bytes, name: str, *, flag: int = 0, method: int | None = None) -> bytes:
    """The ZIP with member `name`'s general purpose flags or'ed with `flag` and its method set, in its local and
    central headers (what zipfile will not write)."""
    patched = bytearray(data)
    encoded = name.encode()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(name).header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(encoded)] != encoded:
        central = data.index(b"PK\x01\x02", central + 4)
    for flags_at in (local + 6, central + 8):
        patched[flags_at] |= flag
        if method is not None:
            patched[flags_at + 2 : flags_at + 4] = method.to_bytes(2, "little")
    return bytes(patched)


def test_a_valid_package_verifies(valid):
    assert verification.is_sponsor_package(io.BytesIO(valid))
    checked = verification.verify_package(io.BytesIO(valid))
    assert checked.problems == [] and checked.datasets_checked == 2 and checked.files_checked == 7
    assert checked.checkpoint.startswith("audit checkpoint of 3 entries, root " + "ab" * 32)


def test_a_signed_report_that_is_not_a_pdf_is_named():
    problems = _problems(_package(report=b"%PDF-1.7\nnot really a PDF"))
    assert len(problems) == 1 and problems[0].startswith("compliance-report.pdf: its attached figures do not read")


def test_a_deviation_of_a_subject_missing_from_dm_is_named():
    dv = _dv(((*DV_ROWS[0][:2], "S-1-999", *DV_ROWS[0][3:]),))
    problems = _problems(_package(dv=dv, report=_report({"01": 1})))
    assert problems == [
        "compliance-report.pdf: its figures cannot be counted: dataset DV, row 1: USUBJID S-1-999 is not in DM"
    ]


def test_an_encrypted_member_or_manifest_is_named(valid):
    assert "dm.csv: encrypted, which a sponsor package never is" in _problems(_patched(valid, "dm.csv", flag=1))
    encrypted = _patched(valid, writing.MANIFEST, flag=1)
    assert not verification.is_sponsor_package(io.BytesIO(encrypted))
    assert "manifest.json: encrypted, which a sponsor package never is" in _problems(encrypted)


def test_an_unsupported_compression_method_is_named(valid):
    problems = _problems(_patched(valid, "dm.csv", method=97))
    assert "dm.csv: compression method 97, not stored or deflate as written" in problems
    assert not verification.is_sponsor_package(io.BytesIO(_patched(valid, writing.MANIFEST, method=97)))


def test_contents_are_parsed_only_under_a_holding_signature(valid, monkeypatch):
    with zipfile.ZipFile(io.BytesIO(valid)) as source:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                data = source.read(info)
                target.writestr(info, bytes(64) if info.filename == writing.SIGNATURE else data)
    monkeypatch.setattr(verification._Checker, "check_xpt", lambda *a: pytest.fail("parsed unsigned contents"))
    problems = _problems(out.getvalue())
    assert problems[-1] == (
        "the members' contents (XPT, CSV, define.xml, report) were not checked: the signature fails"
    )
    assert any(p.startswith("manifest.json.sig: does not verify") for p in problems)


def test_a_highly_compressed_member_is_refused_as_a_bomb():
    rare = bytes(range(1, 256)) * 5  # one byte in ~1000 set: ~300:1, under deflate's ~1029:1, a real member ~50:1
    bomb = writing.Member("notes.txt", "text/plain", b"".join(bytes([b]) + bytes(999) for b in rare))
    assert 200 < len(bomb.data) / _packed(bomb) < 1000
    problems = _problems(_package(extra=[bomb]))
    assert problems == [f"notes.txt: {len(bomb.data)} bytes unpacked from {_packed(bomb)}: refused as a ZIP bomb"]


def _packed(member: writing.Member) -> int:
    import zlib

    deflate = zlib.compressobj(writing.LEVEL, zlib.DEFLATED, -15)
    return len(deflate.compress(member.data) + deflate.flush())


def test_the_members_together_have_a_budget(valid, monkeypatch):
    monkeypatch.setattr(verification, "_TOTAL_LIMIT", 10_000)
    problems = _problems(valid)
    assert len(problems) == 1 and problems[0].endswith("over the 10000 a package may hold")


def test_members_are_hashed_as_a_stream_not_kept_in_memory():
    big = writing.Member("scan.pdf", "application/pdf", bytes(range(256)) * (80 << 10))  # 20 MiB, stored
    data = _package(extra=[big])
    tracemalloc.start()
    try:
        checked = verification.verify_package(io.BytesIO(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert checked.ok and peak < 8 << 20


def test_a_name_stored_twice_is_named_once(valid):
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(valid)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        with pytest.warns(UserWarning):
            target.writestr("dm.csv", b"x")
    problems = _problems(out.getvalue())
    assert problems.count("dm.csv: stored more than once in the archive") == 1


def test_the_attached_figures_have_a_decoded_size_cap(monkeypatch):
    monkeypatch.setattr(verification, "_FIGURES_LIMIT", 1000)
    figures = json.dumps({"deviations": {"per_site": {"01": 1, "02": 1}}, "pad": " " * 5000}).encode()
    problems = _problems(_package(report=_report({}, figures)))
    assert problems == [
        f"compliance-report.pdf: its attached figures do not read ({FIGURES_FILE} decodes to over 1000 bytes)"
    ]


def test_csv_cells_are_compared_as_the_writer_writes_them():
    rows = (
        ("S-1", "DM", "S-1-001", "'quoted", "01", "F  ", "FRA"),  # really starts with '; trailing blanks
        ("S-1", "DM", "S-1-002", "=SUM(A1)", "02", "UNK", "FRA"),  # guarded by the writer
    )
    data = _package(dm=_dm(rows))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        written = archive.read("dm.csv").decode()
    assert "'=SUM(A1)" in written and ",F  ," in written  # what the check must accept
    assert _problems(data) == []
    forged = written.replace("'=SUM(A1)", "=SUM(A1)").encode()  # the guard lost: signed, but not what XPT says
    assert _problems(_package(dm=_dm(rows), csv={"dm.csv": forged})) == [
        "dm.csv, row 2, variable SUBJID: differs from its XPT"
    ]


def test_the_command_exits_1_naming_the_problem(tmp_path, capsys):
    from trialcoord.cli import verify
    from trialcoord.kernel import signing_keys

    path = tmp_path / "p.zip"
    path.write_bytes(_package(report=b"%PDF-1.7\nbroken"))
    public = KEY.public_key()
    registry = tmp_path / "registry.json"  # the site's published registry, holding the key that signed
    registry.write_text(
        json.dumps(
            {
                "system_keys": [
                    {"key_id": signing_keys.key_id(public), "public_key": signing_keys.public_key_hex(public)}
                ]
            }
        )
    )
    assert verify.verify([str(path)], str(registry)) == 1
    assert "compliance-report.pdf: its attached figures do not read" in capsys.readouterr().err
