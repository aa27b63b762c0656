"""The sponsor package end to end on the demo study: made on the command line's use case and over the API, checked
offline by `trialcoord verify`, byte-identical when rebuilt, transfers listing what changed in DV, no personal
value in any member's bytes, blinding kept, and every package made or downloaded in the audit trail."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import zipfile
import zlib
from datetime import UTC, date, datetime, timedelta

import pikepdf
import pytest

from tests.conftest import PASSWORD, account_rules, add_user, signed_in
from trialcoord.demo import demo
from trialcoord.exports import packages
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.verification import is_sponsor_package, verify_package
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter
from trialcoord.kernel.installation import Installation

pytestmark = pytest.mark.anyio
TODAY = date.today()  # the demo users' grants run from the app's own clock


@pytest.fixture
async def loaded(db):
    assert await demo.load_demo(TODAY) is True
    await demo.add_demo_users(TODAY, PASSWORD, "system", account_rules())


@pytest.fixture
def kept(tmp_path, system_keys):
    """An installation with a data directory: where finished packages are kept."""
    from trialcoord.kernel.config import load_settings

    settings = load_settings(
        {"TRIALCOORD_DATA_DIR": str(tmp_path / "data"), "TRIALCOORD_SIGNATURES_DIR": "/nonexistent"}
    )
    return Installation(settings, system_keys)


def _registry(installation: Installation) -> dict:
    from trialcoord.kernel import signing_keys

    public = installation.keys().manifest_key.public_key()
    return {"system_keys": [{"key_id": signing_keys.key_id(public), "public_key": signing_keys.public_key_hex(public)}]}


def _every_byte(data: bytes) -> bytes:
    """A member's bytes and, for a PDF, every stream decompressed (the attached datasets included) and its text as
    poppler's pdftotext reads it (text is drawn in glyph ids, which no byte search finds)."""
    if not data.startswith(b"%PDF"):
        return data
    text = subprocess.run(["pdftotext", "-", "-"], input=data, capture_output=True, check=True).stdout
    found = [data, text]
    with pikepdf.open(io.BytesIO(data)) as pdf:
        for item in pdf.objects:
            if isinstance(item, pikepdf.Stream):
                try:
                    found.append(item.read_bytes())
                except pikepdf.PdfError:
                    found.append(zlib.decompress(item.read_raw_bytes()))
    return b"\n".join(found)


async def test_a_coded_package_of_the_demo_verifies_offline_holds_no_personal_value_and_is_audited(
    loaded, kept, tmp_path
):
    out = tmp_path / "package.zip"
    made = await packages.make(Scope("DEMO-001", TODAY), actor="cli:tester", today=TODAY, installation=kept, out=out)
    assert made.state == "done" and made.transfer == 1 and made.rebuild_of is None
    assert is_sponsor_package(out)
    checked = verify_package(out, _registry(kept))
    assert checked.problems == [] and checked.trust == "the given signer registry"
    assert checked.datasets_checked >= 6
    alone = verify_package(out)  # a sponsor without the site's registry: the package's key only, said plainly
    assert alone.ok and "package's own key only" in alone.trust
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        everything = {name: _every_byte(archive.read(name)) for name in names}
    for expected in (
        "tv.xpt",
        "tv.csv",
        "ta.xpt",
        "sv.xpt",
        "dv.xpt",
        "suppdv.xpt",
        "ds.xpt",
        "dm.xpt",
        "dm.csv",
        "define.xml",
        "compliance-report.pdf",
        "README.txt",
        "manifest.json",
        "manifest.json.sig",
        "manifest-key.pem",
    ):
        assert expected in names
    assert [f["path"] for f in manifest["files"]] == [n for n in names if n not in packages.writing.UNLISTED]
    assert manifest["parameters"] == {
        "as_of": TODAY.isoformat(),
        "sites": [],
        "privacy": "coded",
        "unblinded": False,
        "arms_shown": False,
        "transfer": 1,
    }
    assert manifest["transfer"]["number"] == 1 and manifest["transfer"]["previous"] is None
    assert set(manifest["software"]) == set(packages.SOFTWARE) and manifest["trialcoord_version"]
    assert manifest["checkpoint"]["size"] > 0
    # the checkpoint's own signature (issue 17: an anchor the sponsor holds), by openssl and by `verify`
    from tests.integration.test_anchors import openssl_verifies

    assert openssl_verifies(manifest["checkpoint"], everything["manifest-key.pem"], tmp_path)
    assert checked.checkpoint.startswith(f"audit checkpoint of {manifest['checkpoint']['size']} entries, root ")
    leaked = {
        (name, value)
        for name, data in everything.items()
        for value in demo.DEMO_PERSONAL_VALUES
        for form in {value.encode("utf-8"), value.encode("utf-16-be")}
        if form in data
    }
    assert leaked == set()
    made_entries = await audit_log.browse(AuditFilter(record_type="sponsor_package"), None, 10)
    assert [(e.action, e.new["sha256"]) for e in made_entries] == [("export", made.sha256)]
    assert (kept.data_dir / "sponsor-packages" / f"{made.id}.zip").read_bytes() == out.read_bytes()


async def test_a_rebuild_is_byte_identical_and_keeps_its_transfer_and_parameters(loaded, kept, tmp_path):
    scope = Scope("DEMO-001", TODAY - timedelta(days=1), ("101",), Privacy.SAFE_HARBOR)
    first = await packages.make(scope, actor="cli:tester", today=TODAY, installation=kept, out=tmp_path / "1.zip")
    again = await packages.make(
        scope, actor="cli:tester", today=TODAY, installation=kept, transfer=1, out=tmp_path / "1-again.zip"
    )
    assert again.rebuild_of == first.id and again.transfer == 1
    assert (tmp_path / "1.zip").read_bytes() == (tmp_path / "1-again.zip").read_bytes()
    assert again.sha256 == first.sha256
    with pytest.raises(packages.InvalidInput, match="a rebuild takes the same parameters"):
        await packages.start(Scope("DEMO-001", TODAY), actor="cli:tester", today=TODAY, transfer=1)
    with pytest.raises(packages.NotFound, match="no finished transfer 7"):
        await packages.start(scope, actor="cli:tester", today=TODAY, transfer=7)
    with pytest.raises(packages.InvalidInput, match="still to come"):
        await packages.start(Scope("DEMO-001", TODAY + timedelta(days=1)), actor="x", today=TODAY)
    with pytest.raises(packages.InvalidInput, match="no site 999"):
        await packages.start(Scope("DEMO-001", TODAY, ("999",)), actor="x", today=TODAY)
    with zipfile.ZipFile(tmp_path / "1.zip") as archive:
        manifest = json.loads(archive.read("manifest.json"))
        report_text = _every_byte(archive.read("compliance-report.pdf"))
    assert manifest["parameters"]["privacy"] == "safe-harbor" and manifest["parameters"]["sites"] == ["101"]
    assert b"safe-harbor" in report_text or b"Safe Harbor" in report_text


async def test_the_next_transfer_lists_dv_records_created_changed_and_closed_since_the_last(
    loaded, kept, tmp_path, monkeypatch, caplog
):
    from trialcoord.deviations import manual

    first = await packages.make(
        Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=tmp_path / "a.zip"
    )
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        delivered = json.loads(archive.read("manifest.json"))["transfer"]["dv"]
    assert delivered["created"] and delivered["changed"] == []
    await manual.record_manual(
        "DEMO-001",
        "101",
        "visit schedule",
        "Visit done by telephone, not on site",
        TODAY,
        "cli:tester",
        subject_id="101-002",
        today=TODAY,
    )
    second = await packages.make(
        Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=tmp_path / "b.zip"
    )
    assert (first.transfer, second.transfer) == (1, 2)
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        transfer = json.loads(archive.read("manifest.json"))["transfer"]
    assert transfer["previous"] == 1 and len(transfer["dv"]["created"]) == 1
    assert transfer["dv"]["created"][0] not in delivered["created"]

    def broken(*args, **kwargs):
        raise RuntimeError("define.xml could not be written")

    monkeypatch.setattr(packages, "define_xml", broken)
    with pytest.raises(RuntimeError):
        await packages.make(Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=tmp_path / "c.zip")
    monkeypatch.undo()
    failed = (await packages.packages_of("DEMO-001"))[0]
    assert (failed.state, failed.transfer) == ("failed", 3)  # a defect: the log has it, the list says where to look
    assert failed.message == "An unexpected error stopped the build; the server's log has the details."
    assert "define.xml could not be written" in caplog.text
    assert not (tmp_path / "c.zip").exists()
    third = await packages.make(
        Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=tmp_path / "c.zip"
    )
    with zipfile.ZipFile(tmp_path / "c.zip") as archive:
        transfer = json.loads(archive.read("manifest.json"))["transfer"]
    assert third.transfer == 3 and transfer["previous"] == 2  # the failed build gave its number back
    assert transfer["dv"] == {"created": [], "changed": [], "closed": [], "removed": []}
    with pytest.raises(packages.NotFound, match="no finished transfer 4"):
        await packages.start(Scope("DEMO-001", TODAY), actor="x", today=TODAY, transfer=4)
    own = await packages.make(
        Scope("DEMO-001", TODAY, ("101",)), actor="x", today=TODAY, installation=kept, out=tmp_path / "d.zip"
    )
    with zipfile.ZipFile(tmp_path / "d.zip") as archive:
        transfer = json.loads(archive.read("manifest.json"))["transfer"]
    assert own.transfer == 4 and transfer["previous"] is None  # no earlier package of site 101 alone to compare with


async def test_verify_names_each_member_whose_bytes_were_changed(loaded, kept, tmp_path):
    out = tmp_path / "p.zip"
    await packages.make(Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=out)
    with zipfile.ZipFile(out) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    registry = _registry(kept)
    for position, (info, data) in enumerate(members):
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x01
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for other, (other_info, other_data) in enumerate(members):
                archive.writestr(other_info, bytes(flipped) if other == position else other_data)
        checked = verify_package(buffer, registry)
        assert not checked.ok, info.filename
        assert any(info.filename in problem for problem in checked.problems), (info.filename, checked.problems)


async def test_a_sponsor_makes_and_downloads_a_package_over_the_api_and_sees_no_arm(loaded, app, anonymous):
    sam = await signed_in(anonymous, "sam")
    refused = await sam.post("/api/studies/DEMO-001/sponsor-packages", json={"unblinded": True})
    assert refused.status_code == 403  # a sponsor of a double-blind study never unblinds
    started = await sam.post("/api/studies/DEMO-001/sponsor-packages", json={})
    assert started.status_code == 202, started.text
    url = started.json()["url"]
    assert started.headers["location"] == url
    for _ in range(600):
        status = (await sam.get(url)).json()
        if status["state"] != "building":
            break
        await asyncio.sleep(0.1)
    assert status["state"] == "done", status
    listed = (await sam.get("/api/studies/DEMO-001/sponsor-packages")).json()
    assert [p["id"] for p in listed] == [status["id"]] and listed[0]["sha256"] == status["sha256"]
    downloaded = await sam.get(status["file_url"])
    assert downloaded.status_code == 200 and downloaded.headers["content-type"] == "application/zip"
    assert verify_package(io.BytesIO(downloaded.content)).ok
    with zipfile.ZipFile(io.BytesIO(downloaded.content)) as archive:
        dm = archive.read("dm.csv").decode().splitlines()
    arm = dm[0].split(",").index("ARMCD")
    assert {line.split(",")[arm] for line in dm[1:]} == {""}  # double-blind: no participant's arm
    trail = await audit_log.browse(AuditFilter(record_type="sponsor_package"), None, 10)
    assert [(e.action, e.actor, e.new["sha256"]) for e in trail] == [
        ("download", "sam", status["sha256"]),
        ("export", "sam", status["sha256"]),
    ]
    page = await sam.get("/studies/DEMO-001/sponsor-packages")
    assert page.status_code == 200 and status["sha256"] in page.text and "Make the package" in page.text


async def test_an_administrator_may_unblind_and_a_site_coordinator_sees_only_their_sites_packages(
    loaded, app, anonymous
):
    await add_user("admin", ("administrator", None, None))
    admin = await signed_in(anonymous, "admin")
    started = await admin.post("/api/studies/DEMO-001/sponsor-packages", json={"unblinded": True})
    assert started.status_code == 202, started.text
    for _ in range(600):
        status = (await admin.get(started.json()["url"])).json()
        if status["state"] != "building":
            break
        await asyncio.sleep(0.1)
    assert status["state"] == "done" and status["unblinded"] is True
    data = (await admin.get(status["file_url"])).content
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert json.loads(archive.read("manifest.json"))["parameters"]["arms_shown"] is True
        dm = archive.read("dm.csv").decode().splitlines()
    arm = dm[0].split(",").index("ARMCD")
    assert {line.split(",")[arm] for line in dm[1:]} <= {"A", "P"} and len(dm) > 1
    for blinded in ("sam", "mona"):  # the sponsor and the monitor may export, but never see an unblinded package
        client = await signed_in(anonymous, blinded)
        assert (await client.get("/api/studies/DEMO-001/sponsor-packages")).json() == []
        assert (await client.get(status["url"])).status_code == 404
        assert (await client.get(status["file_url"])).status_code == 404
        assert status["sha256"] not in (await client.get("/studies/DEMO-001/sponsor-packages")).text
    cora = await signed_in(anonymous, "cora")  # coordinator of site 101
    assert (await cora.get("/api/studies/DEMO-001/sponsor-packages")).json() == []
    assert (await cora.get(status["url"])).status_code == 404  # a whole-study package is not hers to see
    own = await cora.post("/api/studies/DEMO-001/sponsor-packages", json={})
    assert own.status_code == 202 and own.json()["sites"] == ["101"]
    assert (await cora.post("/api/studies/DEMO-001/sponsor-packages", json={"sites": ["102"]})).status_code == 403
    paula = await signed_in(anonymous, "paula")  # the pharmacist knows the allocation but may not export
    assert (await paula.get("/api/studies/DEMO-001/sponsor-packages")).status_code == 403


async def test_one_build_runs_per_study_and_one_whose_process_stopped_is_failed_not_offered(loaded, server_clock):
    from datetime import UTC, datetime

    server_clock.to(datetime.now(UTC))
    package = await packages.start(Scope("DEMO-001", TODAY), actor="x", today=TODAY)
    assert package.state == "building"
    with pytest.raises(packages.Conflict, match="is being built"):  # one build per study at a time
        await packages.start(Scope("DEMO-001", TODAY, ("101",)), actor="y", today=TODAY)
    assert await packages.fail_interrupted() == 0  # alive (a command building while the server starts): left alone
    server_clock.by(seconds=61)  # no heartbeat for a minute: its process stopped
    assert await packages.fail_interrupted() == 1
    after = await packages.get("DEMO-001", package.id)
    assert after.state == "failed" and "stopped before it finished" in after.message
    stale = await packages.start(Scope("DEMO-001", TODAY), actor="x", today=TODAY)
    server_clock.by(seconds=61)
    again = await packages.start(Scope("DEMO-001", TODAY), actor="x", today=TODAY)  # the stale one is failed first
    assert (await packages.get("DEMO-001", stale.id)).state == "failed" and again.transfer == stale.transfer == 1


async def test_a_build_failed_as_stopped_meanwhile_is_never_recorded_as_done(loaded, kept, tmp_path, monkeypatch):
    package = await packages.start(Scope("DEMO-001", TODAY), actor="x", today=TODAY)
    finish = packages.package_store.finish

    async def judged_stopped_first(package_id, **values):
        await packages.package_store.fail_stale("stopped", "9999-12-31T00:00:00Z", "9999-12-31T00:00:00Z")
        return await finish(package_id, **values)

    monkeypatch.setattr(packages.package_store, "finish", judged_stopped_first)
    with pytest.raises(packages.Conflict, match="was failed as stopped"):
        await packages.build(package, kept, out=tmp_path / "p.zip")
    assert (await packages.get("DEMO-001", package.id)).state == "failed"
    assert list((kept.data_dir / "sponsor-packages").iterdir()) == []
    assert await audit_log.browse(AuditFilter(record_type="sponsor_package"), None, 10) == []


async def test_without_the_system_key_no_package_is_started(loaded, tmp_path):
    from trialcoord.kernel.config import load_settings

    bare = Installation(load_settings({"TRIALCOORD_DATA_DIR": str(tmp_path / "nokeys")}))
    with pytest.raises(packages.NotConfigured, match="no system key"):
        await packages.make(Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=bare, out=tmp_path / "x.zip")
    assert await packages.packages_of("DEMO-001") == []


async def test_the_page_says_why_a_package_cannot_be_made_and_keeps_what_was_chosen(loaded, app, anonymous):
    sam = await signed_in(anonymous, "sam")
    future = (TODAY + timedelta(days=2)).isoformat()
    refused = await sam.post("/studies/DEMO-001/sponsor-packages", data={"as_of": future, "privacy": "safe-harbor"})
    assert refused.status_code == 422 and "is still to come" in refused.text
    assert 'value="safe-harbor" selected' in refused.text  # the choice is kept
    await packages.start(Scope("DEMO-001", TODAY), actor="other", today=TODAY)  # a build still running
    busy = await sam.post("/studies/DEMO-001/sponsor-packages", data={"privacy": "coded"})
    assert busy.status_code == 422 and "is being built" in busy.text
    page = await sam.get("/studies/DEMO-001/sponsor-packages")
    assert '<meta http-equiv="refresh" content="3">' in page.text and "<progress" in page.text
    # The page reloads itself while the build runs: no form whose choices a reload would wipe, only why not.
    assert 'id="make-package"' not in page.text and "can make another when it is done" in page.text


async def test_the_packages_made_are_listed_a_page_at_a_time_newest_first(loaded, app, anonymous, server_clock):
    server_clock.to(datetime.now(UTC))
    for _ in range(3):
        started = await packages.start(Scope("DEMO-001", TODAY), actor="sam", today=TODAY)
        server_clock.by(minutes=2)
        assert await packages.fail_interrupted() == 1  # each build ends (failed: no heartbeat) so the next may start
        assert started.transfer
    sam = await signed_in(anonymous, "sam")
    first = await sam.get("/studies/DEMO-001/sponsor-packages", params={"size": 2})
    assert first.status_code == 200
    ids = sorted((p.id for p in await packages.packages_of("DEMO-001")), reverse=True)  # failed: transfer 1 each
    shown = [int(n) for n in re.findall(r'<tr id="package-(\d+)"', first.text)]
    assert shown == ids[:2], shown
    after = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert after, "a Next link"
    second = await sam.get(after.group(1).replace("&amp;", "&"))
    assert [int(n) for n in re.findall(r'<tr id="package-(\d+)"', second.text)] == ids[2:]
    bad = await sam.get("/studies/DEMO-001/sponsor-packages", params={"after": "x"})
    assert bad.status_code == 400 and "after" in bad.text


async def test_a_failure_after_the_zip_was_written_leaves_no_package_offered(loaded, kept, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packages.shutil, "copyfile", full_disk)  # the copy to --out fails
    with pytest.raises(OSError):
        await packages.make(Scope("DEMO-001", TODAY), actor="x", today=TODAY, installation=kept, out=tmp_path / "p.zip")
    (failed,) = await packages.packages_of("DEMO-001")
    assert failed.state == "failed" and "No space left on device" in failed.message and failed.sha256 is None
    assert list((kept.data_dir / "sponsor-packages").iterdir()) == []  # the kept copy went with it
    assert await audit_log.browse(AuditFilter(record_type="sponsor_package"), None, 10) == []
