"""An installation's own files (issue 17): its signer registry under its data directory, published to the
public `signatures/` folder only by `trialcoord signatures publish` and never over another installation's; the
data directory and the keys (in a directory of their own) readable by their owner only; `backup` and `restore`.
Run as an administrator runs them: separate processes, checked by exit status, output and the files."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_cli_admin import env, fails, succeeds  # noqa: F401 (env is a fixture)

KEY_FILES = ("audit-key.json", "audit-key.passphrase", "pii-keys.json", "pades-credentials.p12")


def installation(root: Path, published: Path) -> dict[str, str]:
    """One installation from the shared checkout: its own data directory (and SQLite database in it)."""
    return {"TRIALCOORD_DATA_DIR": str(root / "data"), "TRIALCOORD_SIGNATURES_DIR": str(published)}


@pytest.fixture
def no_key_variables(monkeypatch):
    from tests.integration.test_cli_admin import KEY_VARIABLES

    for variable in (*KEY_VARIABLES, "TRIALCOORD_DATABASE_URL", "TRIALCOORD_KEYS_DIR", "TRIALCOORD_CHECKPOINT_DIR"):
        monkeypatch.delenv(variable, raising=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def system_key_of(registry: Path) -> str:
    return json.loads(registry.read_text())["system_keys"][0]["key_id"]


def test_a_second_installation_from_one_checkout_never_replaces_the_first_ones_registry(tmp_path, no_key_variables):
    published = tmp_path / "checkout" / "signatures"  # the checkout's public folder, shared by both
    published.mkdir(parents=True)
    first, second = installation(tmp_path / "first", published), installation(tmp_path / "second", published)

    made = succeeds("setup", env=first)
    own = tmp_path / "first" / "data" / "signatures" / "registry.json"
    assert f"{own}" in made and "trialcoord signatures publish" in made, made
    assert not (published / "registry.json").exists(), "setup published into the checkout unasked"
    said = succeeds("signatures", "publish", env=first)
    assert f"{published / 'registry.json'}" in said
    assert (published / "registry.json").read_bytes() == own.read_bytes()
    binder = tmp_path / "first-binder.zip"
    succeeds("binder", "export", "DEMO-001", "--out", str(binder), env=first)
    before = (published / "registry.json").read_bytes()

    succeeds("setup", "--no-demo", env=second)
    theirs = tmp_path / "second" / "data" / "signatures" / "registry.json"
    assert system_key_of(theirs) != system_key_of(own)
    assert (published / "registry.json").read_bytes() == before, "the second installation replaced the registry"
    refused = fails(3, "signatures", "publish", env=second)
    assert f"{published / 'registry.json'}" in refused and system_key_of(own) in refused, refused
    assert "--replace-other-installation" in refused
    assert (published / "registry.json").read_bytes() == before

    assert "signatures verify" in succeeds("verify", str(binder), env=first)  # its own registry, by default
    checked = succeeds("verify", str(binder), "--registry", str(published / "registry.json"), env=second)
    assert "verify" in checked and "package's own registry.json only" not in checked, checked
    assert fails(1, "verify", str(binder), env=second)  # the second's own registry does not hold the first's key

    elsewhere = tmp_path / "elsewhere"
    succeeds("signatures", "publish", "--to", str(elsewhere), env=second)
    assert system_key_of(elsewhere / "registry.json") == system_key_of(theirs)
    assert (elsewhere / "pades-certificate.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    succeeds("signatures", "publish", "--to", str(published), "--replace-other-installation", env=second)
    assert system_key_of(published / "registry.json") == system_key_of(theirs)


def test_the_data_directory_and_keys_are_the_owners_only_the_keys_apart_and_the_old_place_still_read(
    tmp_path, no_key_variables
):
    root = tmp_path / "site"
    environment = installation(root, tmp_path / "signatures")
    said = succeeds("setup", "--no-demo", env=environment)
    data, keys = root / "data", root / "data-keys"
    assert f"keys are kept in {keys}" in said, said
    for name in KEY_FILES:
        assert (keys / name).is_file() and not (data / name).exists(), name
        assert mode(keys / name) == 0o600, name
    assert mode(keys) == 0o700 and mode(data) == 0o700
    succeeds("audit", "checkpoint", "--out", str(tmp_path / "c.json"), env=environment)
    for path in [data, *data.rglob("*")]:
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path} has mode {oct(mode(path))}"
    assert mode(tmp_path / "c.json") == 0o600

    # Keys an installation made before issue 17 kept in the data directory are read from there.
    for name in KEY_FILES:  # an installation made before keys had a directory of their own
        shutil.move(keys / name, data / name)
    keys.rmdir()
    data.chmod(0o755)  # as an older release made it
    held = {name: (data / name).read_bytes() for name in KEY_FILES}

    again = succeeds("setup", "--no-demo", env=environment)
    assert "created" not in again, again
    assert f"move them to {keys}" in again, again
    assert {name: (data / name).read_bytes() for name in KEY_FILES} == held
    assert mode(data) == 0o700, "setup did not tighten the data directory"
    assert "signed by key" in succeeds("audit", "checkpoint", "--out", str(tmp_path / "c2.json"), env=environment)


# backup and restore ------------------------------------------------------------------------------


async def wipe(db) -> None:
    """The database gone: the SQLite file deleted, or every PostgreSQL table dropped."""
    if db.kind == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(db.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
        return
    connection = await asyncpg.connect(db.url)
    try:
        await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await connection.close()


@pytest.mark.db
@pytest.mark.anyio
async def test_backup_then_restore_on_an_empty_database_verifies_and_the_refusals(db, env, tmp_path):  # noqa: F811
    checkpoints = tmp_path / "anchors"
    checkpoints.mkdir()
    env = {**env, "TRIALCOORD_CHECKPOINT_DIR": str(checkpoints)}
    succeeds("setup", "--no-demo", env=env)
    backup = tmp_path / "backup"
    said = succeeds("backup", "--to", str(backup), env=env)
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["engine"] == db.kind and manifest["audit"]["size"] > 0
    assert f"{manifest['audit']['size']} audit entries" in said
    import hashlib

    for name, digest in manifest["files"].items():
        assert hashlib.sha256((backup / name).read_bytes()).hexdigest() == digest, name
    assert {f"keys/{name}" for name in KEY_FILES} | {"signatures/registry.json"} <= set(manifest["files"])
    assert (backup / "manifest.json.sig").is_file()
    assert mode(backup) == 0o700 and all(mode(p) == 0o600 for p in backup.rglob("*") if p.is_file())
    assert "not empty" in fails(2, "backup", "--to", str(backup), env=env)

    assert "--replace-database" in fails(3, "restore", str(backup), env=env)  # the database holds data

    tampered = tmp_path / "tampered"
    shutil.copytree(backup, tampered)
    (tampered / "signatures" / "registry.json").write_text("{}")
    assert "signatures/registry.json: its SHA-256 differs from the manifest's" in fails(
        1, "restore", str(tampered), "--replace-database", env=env
    )

    pii_keys = tmp_path / "data-keys" / "pii-keys.json"
    held = pii_keys.read_bytes()
    pii_keys.write_text("{}")  # the installation's key is not the backup's: replacing it would lose data
    refused = fails(3, "restore", str(backup), "--replace-database", env=env)
    assert f"{pii_keys}" in refused and "--replace-keys" in refused, refused
    assert pii_keys.read_bytes() == b"{}"
    pii_keys.write_bytes(held)

    (tampered / "manifest.json").write_text("[]")
    assert "not a trialcoord backup manifest" in fails(2, "restore", str(tampered), env=env)

    await wipe(db)
    restored = succeeds("restore", str(backup), env=env)
    assert "audit trail intact" in restored and "unanchored" in restored, restored
    assert "audit trail intact" in succeeds("audit", "verify", env=env)
    assert "admin\tactive" in succeeds("user", "list", env=env)

    # The trail grows past the backup and an external checkpoint anchors it: the older backup is refused.
    succeeds("user", "create", "late", "--name", "Late User", "--email", "late@example.org", "--generate", env=env)
    succeeds("audit", "checkpoint", "--out", str(checkpoints / "checkpoint-999-20261208T000000Z.json"), env=env)
    refused = fails(1, "restore", str(backup), "--replace-database", env=env)
    assert "older than the external checkpoint" in refused and "--accept-older" in refused, refused
    assert "late\t" in succeeds("user", "list", env=env), "a refused restore changed the database"
    accepted = succeeds("restore", str(backup), "--replace-database", "--accept-older", env=env)
    assert "restored a trail older than" in accepted, accepted
    assert "late\t" not in succeeds("user", "list", env=env)
