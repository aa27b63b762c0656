"""The administrator commands (`setup`, `user ...`, `audit ...`) run as an administrator runs them: separate
processes on the test's database (SQLite and PostgreSQL), checked by exit status, output, the files they
write, and the web API of an app on the same database."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
import subprocess
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from unittest import mock

import asyncpg
import pytest

from tests.conftest import account_rules
from tests.integration.test_cli import run

pytestmark = pytest.mark.db

ADMIN_LINE = re.compile(r"^first administrator: user ID 'admin', password '([^']+)'", re.MULTILINE)
GENERATED_LINE = re.compile(r"^password: (\S+)  \(shown this once\)$", re.MULTILINE)
ROLES = ("administrator", "coordinator", "investigator", "monitor", "sponsor")
KEY_VARIABLES = (
    "TRIALCOORD_PII_KEYS",
    "TRIALCOORD_PII_KEY_FILE",
    "TRIALCOORD_AUDIT_KEY_FILE",
    "TRIALCOORD_AUDIT_PASSPHRASE_FILE",
)


@pytest.fixture
def env(db, tmp_path, monkeypatch) -> dict[str, str]:
    """The commands' environment: the test's database, an empty data directory and signer registry folder, and no
    key set in the environment (conftest puts a PII key ring there; `setup` must create the key files itself)."""
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    published = tmp_path / "registry"  # the test's own: never the checkout's registry (tests run side by side)
    published.mkdir()
    return {
        "TRIALCOORD_DATABASE_URL": db.url,
        "TRIALCOORD_DATA_DIR": str(tmp_path / "data"),
        "TRIALCOORD_SIGNATURES_DIR": str(published),
    }


@pytest.fixture
async def quick(db, tmp_path):
    """A client on an app whose sign-ins have no growing wait after a failure, so a wrong password answers 401 at
    once (the lock-out policy itself is tested elsewhere)."""
    import dataclasses

    import httpx

    from trialcoord.accounts.rules.accounts import LockoutPolicy
    from trialcoord.kernel.config import load_settings
    from trialcoord.web.app import create_app

    tiny = timedelta(microseconds=1)
    rules = dataclasses.replace(account_rules(), lockout=LockoutPolicy(first_delay=tiny, max_delay=tiny))
    settings = load_settings({"TRIALCOORD_DATABASE_URL": db.url, "TRIALCOORD_DATA_DIR": str(tmp_path / "app-data")})
    app = create_app(settings, account_rules=rules)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        yield client


def cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """test_cli's `run`, with `stdin` as the command's standard input (never the terminal, so a command that
    unexpectedly asks for a password fails instead of waiting) and a time limit."""
    real_run = subprocess.run
    with mock.patch.object(subprocess, "run", lambda *a, **k: real_run(*a, input=stdin, timeout=120, **k)):
        return run(*args, env=env)


def succeeds(*args: str, env: dict[str, str]) -> str:
    result = cli(*args, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def fails(status: int, *args: str, env: dict[str, str], stdin: str = "") -> str:
    result = cli(*args, env=env, stdin=stdin)
    assert result.returncode == status, (args, result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    return result.stderr


def listed(listing: str) -> tuple[dict[str, str], dict[int, str]]:
    """`user list` output as ({user ID: status}, {grant number: the grant's line})."""
    users, grants = {}, {}
    for line in listing.splitlines():
        if line.startswith("  grant "):
            number, _, rest = line.removeprefix("  grant ").partition(": ")
            grants[int(number)] = rest
        elif line.strip():
            user_id, status, _name = line.split("\t")
            users[user_id] = status
    return users, grants


async def sign_in(client, user_id: str, password: str):
    return await client.post("/api/sign-in", json={"user_id": user_id, "password": password})


async def me(client, token: str):
    return await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})


# setup ---------------------------------------------------------------------------------------------


async def test_setup_creates_private_keys_and_one_administrator_and_changes_nothing_when_run_again(
    db, env, tmp_path, anonymous
):
    data, keys_dir = tmp_path / "data", tmp_path / "data-keys"  # keys apart from the data directory
    assert not data.exists()

    first = succeeds("setup", env=env)
    passwords = ADMIN_LINE.findall(first)
    assert len(passwords) == 1, first
    password = passwords[0]
    assert first.count(password) == 1, "the administrator's password is printed exactly once"
    assert "demo study loaded" in first and "set-up complete" in first

    keys = {}
    for name in ("pii-keys.json", "audit-key.json"):
        path = keys_dir / name
        assert path.is_file(), f"setup did not create {path}"
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}; only its owner may read it"
        keys[name] = path.read_bytes()
        assert password.encode() not in keys[name]
    assert json.loads(keys["pii-keys.json"])["current"] in json.loads(keys["pii-keys.json"])["keys"]
    assert json.loads(keys["audit-key.json"])["format"] == "trialcoord-ed25519-key/1"

    again = succeeds("setup", env=env)
    assert "set-up complete" in again
    assert "password" not in again.lower() and password not in again, again
    assert "created" not in again and "demo study loaded" not in again, again
    assert {name: (keys_dir / name).read_bytes() for name in keys} == keys, "a second setup replaced a key"

    signed = await sign_in(anonymous, "admin", password)
    assert signed.status_code == 201, signed.text
    mine = await me(anonymous, signed.json()["token"])
    assert mine.status_code == 200, mine.text
    assert mine.json()["user_id"] == "admin"
    assert [(g["role"], g["study"], g["revoked_at"]) for g in mine.json()["grants"]] == [("administrator", None, None)]


# user ----------------------------------------------------------------------------------------------


async def test_user_commands_create_grant_revoke_issue_tokens_reset_and_disable(db, env, quick):
    from trialcoord.kernel import audit_log
    from trialcoord.kernel.audit_store import AuditFilter

    first = succeeds("setup", "--no-demo", env=env)
    assert "demo" not in first and len(ADMIN_LINE.findall(first)) == 1, first
    # `demo` loads only into a database without studies: so `setup --no-demo` stored none.
    assert succeeds("demo", env=env) == "demo study loaded\n"

    # create
    cora = ("cora", "--name", "Cora C", "--email", "cora@example.org")
    created = succeeds("user", "create", *cora, "--generate", env=env)
    assert "user cora created" in created
    passwords = GENERATED_LINE.findall(created)
    assert len(passwords) == 1 and created.count(passwords[0]) == 1, created
    password = passwords[0]
    taken = fails(3, "user", "create", *cora, "--generate", env=env)
    assert "cora" in taken and "taken" in taken
    bad_id = fails(2, "user", "create", "X", "--name", "X", "--email", "x@example.org", "--generate", env=env)
    assert "user_id" in bad_id
    dora = ("dora", "--name", "Dora D", "--email", "dora@example.org")
    short = fails(2, "user", "create", *dora, env=env, stdin="short\n")
    assert "password" in short and "this one has 5" in short, short
    # a password on stdin is taken as typed, not printed; the refused attempt above stored nothing
    typed = cli("user", "create", *dora, env=env, stdin="dora's long passphrase\n")
    assert typed.returncode == 0 and typed.stdout == "user dora created\n", (typed.stdout, typed.stderr)
    assert (await sign_in(quick, "dora", "dora's long passphrase")).status_code == 201

    # grant, list, revoke
    granted = succeeds("user", "grant", "cora", "coordinator", "--study", "DEMO-001", "--site", "101", env=env)
    match = re.fullmatch(r"grant (\d+): cora is coordinator of DEMO-001 at site 101 from \d{4}-\d\d-\d\d\n", granted)
    assert match, granted
    grant_id = int(match[1])
    wizard = fails(2, "user", "grant", "cora", "wizard", "--study", "X", env=env)
    assert "role" in wizard and "wizard" in wizard and all(role in wizard for role in ROLES), wizard
    no_site = fails(2, "user", "grant", "cora", "coordinator", "--study", "DEMO-001", env=env)
    assert "site" in no_site
    users, grants = listed(succeeds("user", "list", env=env))
    assert users == {"admin": "active", "cora": "active", "dora": "active"}
    assert grants[grant_id].startswith("coordinator DEMO-001/101 ") and grants[grant_id].endswith(" in force")
    assert len(grants) == 2, "a refused grant was stored"
    assert (
        succeeds("user", "revoke", str(grant_id), "--reason", "left", env=env) == f"grant {grant_id} of cora revoked\n"
    )
    _, grants = listed(succeeds("user", "list", env=env))
    assert grants[grant_id].endswith(" revoked"), grants[grant_id]
    unknown = fails(2, "user", "revoke", "9999", "--reason", "left", env=env)
    assert "no grant 9999" in unknown

    # token
    issued = succeeds("user", "token", "cora", "--days", "7", env=env)
    until = re.search(r"valid until (\S+) ", issued)
    assert until, issued
    expected = datetime.now(UTC) + timedelta(days=7)
    assert abs(datetime.fromisoformat(until[1].replace("Z", "+00:00")) - expected) < timedelta(minutes=5)
    token = issued.strip().splitlines()[-1]
    assert (await me(quick, token)).status_code == 200
    assert (await me(quick, token)).json()["user_id"] == "cora"
    assert "days" in fails(2, "user", "token", "cora", "--days", "0", env=env)

    # reset-password: the old password stops working, the new one works, every session ends
    assert (await sign_in(quick, "cora", password)).status_code == 201
    reset = succeeds("user", "reset-password", "cora", "--generate", env=env)
    new_passwords = GENERATED_LINE.findall(reset)
    assert len(new_passwords) == 1 and new_passwords[0] != password, reset
    new_password = new_passwords[0]
    assert (await me(quick, token)).status_code == 401, "the token outlived a password reset"
    assert (await sign_in(quick, "cora", new_password)).status_code == 201
    assert (await sign_in(quick, "cora", password)).status_code == 401

    # disable
    missing_reason = fails(2, "user", "disable", "cora", env=env)
    assert "--reason" in missing_reason
    disabled = succeeds("user", "disable", "cora", "--reason", "left the site", env=env)
    assert "cora" in disabled and "disabled" in disabled
    assert (await sign_in(quick, "cora", new_password)).status_code == 401
    users, _ = listed(succeeds("user", "list", env=env))
    assert users["cora"] == "disabled"
    assert "disabled" in fails(2, "user", "token", "cora", "--days", "7", env=env)

    # the last administrator: refused from the shell too (exit 3, a conflict); `user grant` is the way back in
    _, grants = listed(succeeds("user", "list", env=env))
    admin_grant = next(i for i, text in grants.items() if text.startswith("administrator"))
    for args in (("revoke", str(admin_grant)), ("disable", "admin")):
        assert "the last active administrator grant" in fails(3, "user", *args, "--reason", "oops", env=env)
    assert "dora is administrator" in succeeds("user", "grant", "dora", "administrator", env=env)
    assert succeeds("user", "revoke", str(admin_grant), "--reason", "handed over", env=env).endswith("revoked\n")

    # every change is audited as the operating-system user, with the reason, and no password
    entries = [
        e
        for e in await audit_log.export_rows(AuditFilter(record_type="user", record_id="cora"), 100)
        if not e.action.startswith("sign_in")
    ]
    assert [(e.action, e.actor.startswith("cli:")) for e in entries] == [
        ("create", True),
        ("update", True),
        ("update", True),
    ], entries
    assert entries[1].new == {"password": "changed", "sessions_ended": 2}  # the token and a sign-in
    assert entries[2].new == {"status": "disabled", "sessions_ended": 1}  # the sign-in after the reset
    assert entries[2].reason == "left the site"
    revoked = await audit_log.export_rows(AuditFilter(record_type="grant", record_id=str(grant_id)), 100)
    assert [(e.action, e.reason) for e in revoked] == [("grant", None), ("revoke", "left")]
    trail = json.dumps([asdict(e) for e in await audit_log.export_rows(AuditFilter(), 10_000)])
    assert password not in trail and new_password not in trail


# audit ---------------------------------------------------------------------------------------------


async def tamper_with_entry_3(db) -> None:
    """Change entry 3's actor as someone with owner rights on the database would: triggers off first."""
    if db.kind == "sqlite":
        connection = sqlite3.connect(db.url.removeprefix("sqlite:///"))
        try:
            connection.execute("DROP TRIGGER audit_entries_no_update")
            changed = connection.execute("UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 3").rowcount
            connection.commit()
        finally:
            connection.close()
        assert changed == 1
        return
    connection = await asyncpg.connect(db.url)
    try:
        await connection.execute("ALTER TABLE audit_entries DISABLE TRIGGER USER")
        assert await connection.execute("UPDATE audit_entries SET actor = 'mallory' WHERE sequence = 3") == "UPDATE 1"
    finally:
        await connection.close()


async def test_audit_verify_checkpoint_and_public_key_prove_the_trail_and_catch_tampering(db, env, tmp_path):
    from trialcoord.kernel import signing_keys
    from trialcoord.kernel.rules.audit_verification import Checkpoint

    succeeds("setup", env=env)
    verified = succeeds("audit", "verify", env=env)
    intact = re.search(r"audit trail intact: (\d+) entries, root ([0-9a-f]{64})", verified)
    assert intact, verified
    size, root = int(intact[1]), intact[2]
    assert size >= 3

    checkpoint_file, public_key_file = tmp_path / "cp.json", tmp_path / "pub.pem"
    succeeds("audit", "checkpoint", "--out", str(checkpoint_file), env=env)
    signed = json.loads(checkpoint_file.read_text())
    assert set(signed) == {"size", "root", "issued_at", "key_id", "signature"}
    assert (signed["size"], signed["root"]) == (size, root)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", signed["issued_at"])
    assert re.fullmatch(r"[0-9a-f]{16}", signed["key_id"]) and re.fullmatch(r"[0-9a-f]{128}", signed["signature"])

    against = succeeds("audit", "verify", "--checkpoint", str(checkpoint_file), env=env)
    assert f"checkpoint of {size} entries issued at {signed['issued_at']}" in against and "intact" in against
    succeeds("audit", "public-key", "--out", str(public_key_file), env=env)
    public_key = signing_keys.load_public_key(public_key_file.read_text())
    assert signing_keys.key_id(public_key) == signed["key_id"]
    signing_keys.verify_checkpoint(signing_keys.SignedCheckpoint.from_json(signed), public_key)
    assert "intact" in succeeds(
        "audit", "verify", "--checkpoint", str(checkpoint_file), "--public-key", str(public_key_file), env=env
    )

    # a checkpoint altered after signing
    altered = tmp_path / "altered.json"
    altered.write_text(json.dumps({**signed, "root": ("1" if root[0] != "1" else "2") + root[1:]}))
    assert "signature" in fails(2, "audit", "verify", "--checkpoint", str(altered), env=env)
    assert "signature" in fails(
        2, "audit", "verify", "--checkpoint", str(altered), "--public-key", str(public_key_file), env=env
    )

    # a checkpoint signed by another key, and the real one checked with another public key
    other = signing_keys.generate_key()
    other_id = signing_keys.key_id(other.public_key())
    forged = tmp_path / "forged.json"
    signing_keys.save_checkpoint(
        signing_keys.sign_checkpoint(Checkpoint(signed["size"], signed["root"], signed["issued_at"]), other), forged
    )
    message = fails(2, "audit", "verify", "--checkpoint", str(forged), env=env)
    assert other_id in message and signed["key_id"] in message, message
    other_pem = tmp_path / "other.pem"
    other_pem.write_text(signing_keys.public_key_pem(other.public_key()))
    message = fails(2, "audit", "verify", "--checkpoint", str(checkpoint_file), "--public-key", str(other_pem), env=env)
    assert other_id in message and signed["key_id"] in message, message

    # an entry changed in the database
    await tamper_with_entry_3(db)
    broken = fails(1, "audit", "verify", env=env)
    assert "entry 3" in broken and "altered" in broken, broken
    assert "entry 3" in fails(1, "audit", "verify", "--checkpoint", str(checkpoint_file), env=env)
    refused = tmp_path / "refused.json"
    assert "entry 3" in fails(1, "audit", "checkpoint", "--out", str(refused), env=env)
    assert not refused.exists(), "a checkpoint was written over a broken trail"


async def test_keys_rotate_reencrypts_stored_personal_data_and_retire_removes_the_old_key(
    env, db, tmp_path, monkeypatch
):
    from pathlib import Path

    from trialcoord.kernel import pii
    from trialcoord.scheduling import identities, participants, sites

    succeeds("setup", "--no-demo", env=env)
    key_file = Path(env["TRIALCOORD_DATA_DIR"] + "-keys") / "pii-keys.json"  # the keys directory
    old_id = pii.load_key_file(key_file).current
    monkeypatch.setenv(pii.KEY_FILE_VARIABLE, str(key_file))  # the test process reads the same file
    succeeds("protocol", "load", "protocols/DEMO-001/1.0.yaml", env=env)
    await sites.create_site("DEMO-001", "101", "Riverside")
    await participants.enroll_participant("DEMO-001", "101-001", "101")
    await identities.set_identity("DEMO-001", "101-001", {"name": "Quentin Rotatable", "mrn": "M-9"})
    assert "still encrypts" in fails(2, "keys", "retire", old_id, env=env)
    assert "2 stored values re-encrypted under key k-next" in succeeds("keys", "rotate", "k-next", env=env)
    assert await identities.key_ids_in_use() == {"k-next"}
    succeeds("keys", "retire", old_id, env=env)
    assert set(pii.load_key_file(key_file).keys) == {"k-next"}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (await identities.get_identity("DEMO-001", "101-001")).name == "Quentin Rotatable"
    monkeypatch.delenv(pii.KEY_FILE_VARIABLE)  # the commands inherit the environment
    assert "no key file" in fails(2, "keys", "rotate", "k3", env={**env, "TRIALCOORD_DATA_DIR": str(tmp_path / "x")})
