"""External checkpoints (issue 17 section 2): signed checkpoints outside the database, written after each N entries
and daily, checked by `audit verify` by default, refused inside the data directory; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import pytest

from tests.integration.test_audit_trail import _raw, _tamper, _trail
from tests.integration.test_cli import run
from trialcoord.kernel import anchors, audit_log, audit_store, signing_keys
from trialcoord.kernel.config import ConfigError, load_settings
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.audit_entries import AuditEntry, canonical_bytes
from trialcoord.kernel.rules.merkle_tree import leaf_hash

pytestmark = [pytest.mark.anyio, pytest.mark.db]
UNANCHORED = "unanchored: history could be rewritten without detection"


@pytest.fixture
def key():
    return signing_keys.generate_key()


@pytest.fixture
def cli_env(db, tmp_path, key) -> dict[str, str]:
    """The commands' environment: the test's database and `key` as the system key (at scrypt's lowest accepted
    cost, so each command unlocks it quickly)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "passphrase").write_text("test passphrase\n")
    (keys / "audit-key.json").write_text(signing_keys.encrypt_key(key, b"test passphrase", n=signing_keys.MIN_SCRYPT_N))
    return {
        "TRIALCOORD_DATABASE_URL": db.url,
        "TRIALCOORD_DATA_DIR": str(tmp_path / "data"),
        "TRIALCOORD_AUDIT_KEY_FILE": str(keys / "audit-key.json"),
        "TRIALCOORD_AUDIT_PASSPHRASE_FILE": str(keys / "passphrase"),
    }


async def head() -> int:
    async with read():
        return await audit_store.head_size()


async def _rewrite_entry_2_and_delete_the_stored_checkpoints(db) -> None:
    """As an attacker who knows the scheme: entry 2's actor changed, its hash recomputed, checkpoints deleted."""
    row = await _raw(2)
    entry = audit_store.stored_entry([row[c] for c in audit_store.COLUMNS.split(", ")]).entry
    forged = AuditEntry(
        2, entry.recorded_at, "mallory", entry.action, entry.record_type, entry.record_id, entry.old, entry.new,
        entry.reason,
    )  # fmt: skip
    await _tamper(
        db,
        f"UPDATE audit_entries SET actor = 'mallory', leaf_hash ="
        f" '{leaf_hash(canonical_bytes(forged)).hex()}' WHERE sequence = 2",
        "DELETE FROM audit_checkpoints",
    )


async def test_a_rewritten_trail_without_its_stored_checkpoints_fails_against_the_external_one(
    study, db, tmp_path, key, cli_env
):
    # Found: this tampering made plain `audit verify` say "intact".
    await _trail(study)
    outside = tmp_path / "anchors"
    outside.mkdir()
    anchored = {**cli_env, "TRIALCOORD_CHECKPOINT_DIR": str(outside)}
    none_yet = run("audit", "verify", env=anchored)
    assert none_yet.returncode == 0 and "audit trail intact" in none_yet.stdout, (none_yet.stdout, none_yet.stderr)
    assert f"{UNANCHORED} (no external checkpoint in {outside} yet)" in none_yet.stderr

    made = run("audit", "anchor", env=anchored)  # as cron runs it where `serve` does not
    assert made.returncode == 0, (made.stdout, made.stderr)
    size, written = await head(), anchors.newest(outside)
    assert written is not None and re.fullmatch(rf"checkpoint-{size}-\d{{8}}T\d{{6}}Z\.json", written.name)
    assert made.stdout.strip() == f"external checkpoint written: {written}"
    await _rewrite_entry_2_and_delete_the_stored_checkpoints(db)
    assert (await audit_log.verify()).ok  # the database alone cannot tell

    found = run("audit", "verify", env=anchored)
    assert found.returncode == 1, (found.stdout, found.stderr)
    assert f"anchored by the external checkpoint {written}" in found.stdout
    assert "BROKEN at entry" in found.stderr and "history was rewritten" in found.stderr, found.stderr
    assert "Traceback" not in found.stderr

    plain = run("audit", "verify", env=cli_env)  # no directory set: intact, and plainly unanchored
    assert plain.returncode == 0 and "audit trail intact" in plain.stdout, (plain.stdout, plain.stderr)
    assert f"{UNANCHORED} (TRIALCOORD_CHECKPOINT_DIR is not set)" in plain.stderr

    # the external checkpoint itself altered: named, never trusted
    document = written.read_text().replace(f'"size": {size}', f'"size": {size - 1}')
    written.write_text(document)
    altered = run("audit", "verify", env=anchored)
    assert altered.returncode == 1 and "does not verify" in altered.stderr and str(written) in altered.stderr


async def test_a_truncated_trail_with_its_head_reset_fails_against_the_external_checkpoint(study, db, tmp_path, key):
    await _trail(study)
    outside = tmp_path / "anchors"
    await anchors.write_if_due(outside, 1000, lambda: key)
    size = await head()
    await _tamper(
        db,
        f"DELETE FROM audit_entries WHERE sequence > {size - 3}",
        f"UPDATE audit_head SET size = {size - 3} WHERE id = 1",
        "DELETE FROM audit_checkpoints",
    )
    assert (await audit_log.verify()).ok  # the database alone cannot tell
    external = signing_keys.verify_checkpoint(signing_keys.load_checkpoint(anchors.newest(outside)), key.public_key())
    report = await audit_log.verify(external)
    assert not report.ok and report.result.first_bad[0] == size - 2 and "missing" in report.result.first_bad[1]


async def one_entry() -> None:
    await audit_log.record_alone("cora", audit_log.Change("update", "note", "n1", None, {"text": "seen"}))


async def test_a_checkpoint_is_written_after_each_n_entries_and_daily_and_a_failure_is_tried_again(
    study, tmp_path, key, server_clock, caplog
):
    server_clock.to(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    await _trail(study, people=1)
    every = 5
    task = anchors.Anchoring(tmp_path / "anchors", every, lambda: key)
    first = await task.look()  # none yet: the first is due at once
    assert first is not None and first.name == f"checkpoint-{await head()}-20261207T090000Z.json"
    assert await task.look() is None  # nothing new to anchor
    anchored = await head()
    while (await head() + 1) // every == anchored // every:  # not before the trail crosses the next multiple of N
        await one_entry()
        assert await task.look() is None
    await one_entry()
    crossed = await task.look()
    assert crossed is not None and crossed.name.startswith(f"checkpoint-{anchored // every * every + every}-")
    assert anchors.newest(tmp_path / "anchors") == crossed

    # a directory that cannot be written: logged, the writer's work untouched, tried again at the next look
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory belongs")
    failing = anchors.Anchoring(blocked, every, lambda: key)
    with caplog.at_level(logging.ERROR, logger="trialcoord.kernel.anchors"):
        assert await failing.look() is None
    assert f"no external audit checkpoint written to {blocked}" in caplog.text
    blocked.unlink()
    assert (await failing.look()) is not None

    # daily: one more entry, crossing no multiple of N, waits for the next day
    await one_entry()
    assert await task.look() is None
    server_clock.to(datetime(2026, 12, 8, 9, 0, tzinfo=UTC))
    daily = await task.look()
    assert daily is not None and daily.name == f"checkpoint-{await head()}-20261208T090000Z.json"


def test_the_directory_inside_the_data_directory_is_refused_unless_allowed(tmp_path):
    data = tmp_path / "data"
    inside = {"TRIALCOORD_DATA_DIR": str(data), "TRIALCOORD_CHECKPOINT_DIR": str(data / "anchors")}
    with pytest.raises(ConfigError, match="TRIALCOORD_CHECKPOINT_DIR: .* lies inside the data directory"):
        anchors.start_check(load_settings(inside))
    assert anchors.start_check(load_settings({**inside, "TRIALCOORD_CHECKPOINT_DIR_INSIDE_DATA": "1"})) is None
    outside = {"TRIALCOORD_DATA_DIR": str(data), "TRIALCOORD_CHECKPOINT_DIR": str(tmp_path / "anchors")}
    assert anchors.start_check(load_settings(outside)) is None
    warning = anchors.start_check(load_settings({"TRIALCOORD_DATA_DIR": str(data)}))
    assert warning is not None and UNANCHORED in warning and "TRIALCOORD_CHECKPOINT_DIR" in warning
    with pytest.raises(ConfigError, match="TRIALCOORD_CHECKPOINT_EVERY: 'none'"):
        load_settings({"TRIALCOORD_CHECKPOINT_EVERY": "none"})


def test_serve_and_setup_refuse_to_start_with_the_directory_inside_the_data_directory(tmp_path):
    data = tmp_path / "data"
    env = {
        "TRIALCOORD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "TRIALCOORD_DATA_DIR": str(data),
        "TRIALCOORD_CHECKPOINT_DIR": str(data / "anchors"),
        "TRIALCOORD_PORT": "1",  # never reached
    }
    for command in ("serve", "setup"):
        result = run(command, env=env)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert "lies inside the data directory" in result.stderr and "Traceback" not in result.stderr
    assert not data.exists() and not (tmp_path / "db.sqlite3").exists()  # nothing was set up


async def test_the_app_keeps_the_anchoring_task_when_a_directory_is_set(db, tmp_path, key):
    from tests.conftest import account_rules
    from trialcoord.kernel.installation import Installation
    from trialcoord.kernel.system_keys import SystemKeys
    from trialcoord.web.app import create_app

    environ = {"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "data")}
    settings = load_settings(
        {**environ, "TRIALCOORD_CHECKPOINT_DIR": str(tmp_path / "anchors"), "TRIALCOORD_CHECKPOINT_EVERY": "7"}
    )
    installation = Installation(settings, SystemKeys(b"unused", key))
    app = create_app(settings, account_rules=account_rules(), installation=installation)
    async with app.lifespan():
        task = app.state.get("anchoring")
        assert isinstance(task, anchors.Anchoring) and (task.directory, task.every) == (tmp_path / "anchors", 7)
        assert task.key() is key and not task.task.done()
    assert task.task.done()
    unset = create_app(load_settings(environ), account_rules=account_rules(), installation=installation)
    async with unset.lifespan():
        assert unset.state.get("anchoring") is None


# Packages carry the newest checkpoint, checked here with openssl (an independent Ed25519 verifier) and sha256.


def openssl_verifies(checkpoint: dict, public_pem: bytes, tmp_path) -> bool:
    """The checkpoint's signature over its canonical statement (docs/audit-trail.md), by `openssl pkeyutl`."""
    import json
    import subprocess

    statement = {"issued_at": checkpoint["issued_at"], "kind": "trialcoord-audit-checkpoint/1"}
    statement |= {"root": checkpoint["root"], "size": checkpoint["size"]}
    (tmp_path / "statement").write_bytes(json.dumps(statement, sort_keys=True, separators=(",", ":")).encode())
    (tmp_path / "signature").write_bytes(bytes.fromhex(checkpoint["signature"]))
    (tmp_path / "key.pem").write_bytes(public_pem)
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin", "-in", "statement"]
        + ["-sigfile", "signature"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "Signature Verified Successfully" in done.stdout


async def test_a_binder_export_carries_the_newest_checkpoint_and_verify_checks_its_signature(
    study, tmp_path, system_keys
):
    import hashlib
    import io
    import json
    import zipfile

    from trialcoord.accounts import signer_keys
    from trialcoord.documents import binder_export
    from trialcoord.documents.package_verification import verify_package
    from trialcoord.kernel.installation import Installation

    await _trail(study, people=1)
    outside = tmp_path / "anchors"
    settings = load_settings({"TRIALCOORD_DATA_DIR": str(tmp_path / "data"), "TRIALCOORD_CHECKPOINT_DIR": str(outside)})
    installation = Installation(settings, system_keys)
    out = tmp_path / "binder.zip"
    manifest = await binder_export.export("TST-1", "101", out, "cora", installation=installation)
    with zipfile.ZipFile(out) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    carried = members["audit-checkpoint.json"]
    assert manifest["audit_checkpoint"] == {
        "path": "audit-checkpoint.json",
        "sha256": hashlib.sha256(carried).hexdigest(),
    }
    checkpoint = json.loads(carried)
    async with read():
        stored = await audit_store.latest_checkpoint()
    assert checkpoint == stored  # the newest stored checkpoint, the same one each time until a newer one is made
    assert anchors.newest(outside).name.startswith(f"checkpoint-{checkpoint['size']}-")  # none yet: made, kept outside
    assert openssl_verifies(checkpoint, members["manifest-key.pem"], tmp_path)
    registry = await signer_keys.registry(installation)
    report = verify_package(out, registry, now="2026-12-08T00:00:00.000000Z")
    assert report.ok, report.problems
    assert report.checkpoint == (
        f"audit checkpoint of {checkpoint['size']} entries, root {checkpoint['root']},"
        f" issued at {checkpoint['issued_at']}"
    )
    # the checkpoint re-signed by another key, the manifest hash made to match: the manifest signature and the
    # checkpoint's own both fail, each named
    other = signing_keys.sign_checkpoint(
        signing_keys.SignedCheckpoint.from_json(checkpoint).checkpoint, signing_keys.generate_key()
    )
    forged = json.dumps(other.to_json()).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, forged if name == "audit-checkpoint.json" else data)
    problems = verify_package(buffer, registry, now="2026-12-08T00:00:00.000000Z").problems
    assert any(p.startswith("audit-checkpoint.json: SHA-256") for p in problems), problems
