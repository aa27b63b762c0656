"""`trialcoord setup`, `db migrate` and `serve`: the installation as a whole. They compose several features (or
the web app), so they live at the top, where nothing imports them."""

from __future__ import annotations

import secrets
from datetime import UTC
from pathlib import Path

from trialcoord.accounts.cli import generated_password, rules
from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError
from trialcoord.kernel.config import Settings, get_settings

FIRST_ADMIN = "admin"


def register(commands) -> None:
    db = support.group(commands, "db", "database maintenance")
    db.add_parser("migrate", help="create or upgrade tables").set_defaults(run=lambda a: migrate())

    serving = commands.add_parser("serve", help="serve the web app")
    serving.add_argument("--host")
    serving.add_argument("--port", type=int)
    serving.set_defaults(run=lambda a: serve(a.host, a.port))

    first = commands.add_parser("setup", help="first-time set-up: database, keys, first administrator, demo")
    first.add_argument("--no-demo", action="store_true", help="do not load the demo study")
    first.set_defaults(run=lambda a: setup(demo=not a.no_demo))

    signatures = support.group(commands, "signatures", "the installation's public signer registry")
    publish = signatures.add_parser(
        "publish", help="copy the installation's signer registry and PAdES certificate to the public folder"
    )
    publish.add_argument("--to", metavar="DIR", help="the folder (default TRIALCOORD_SIGNATURES_DIR, signatures/)")
    publish.add_argument(
        "--replace-other-installation",
        action="store_true",
        help="replace a registry another installation published there (its binders then no longer verify with it)",
    )
    publish.set_defaults(run=lambda a: publish_registry(a.to, a.replace_other_installation))


def migrate() -> int:
    from trialcoord.kernel.database.opening import open_database

    async def run() -> None:
        async with open_database(migrate=True):
            pass

    support.run(run())
    print("database is up to date")
    return 0


def serve(host: str | None, port: int | None) -> int:
    import logging
    import sys

    import uvicorn

    from trialcoord.web.app import create_app

    settings = get_settings()
    unanchored = start_check(settings)
    host, port = host or settings.host, port or settings.port
    print(f"trialcoord is running at http://{host}:{port}  (Ctrl+C to stop)", flush=True)
    print(nightly_notice(settings), flush=True)
    if unanchored:
        print(unanchored, flush=True)
    # The nightly run logs what the commands print (uvicorn's own log stays at warnings).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s nightly: %(message)s"))
    nightly_log = logging.getLogger("trialcoord.home.nightly")
    nightly_log.addHandler(handler)
    nightly_log.setLevel(logging.INFO)
    print(f"access log: {settings.access_log or 'standard error'}", flush=True)
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="warning", access_log=False, **proxy_trust(settings)
    )
    return 0


def start_check(settings: Settings) -> str | None:
    """Refuse a checkpoint directory inside the data directory (ConfigError, exit 2); the unanchored warning."""
    from trialcoord.kernel import anchors

    return anchors.start_check(settings)


def proxy_trust(settings: Settings) -> dict:
    """uvicorn's options: X-Forwarded-For/-Proto believed only from the proxies the settings name. uvicorn's
    own default believes 127.0.0.1, so anyone on the server's machine (or a proxy passing the header through)
    could claim any client address: past the per-address sign-in limit and into the audit trail."""
    if not settings.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": list(settings.trusted_proxies)}


def nightly_notice(settings: Settings) -> str:
    """What `serve` says of the nightly schedule refresh and deviation detection (docs/daily-use.md)."""
    from trialcoord.home import nightly

    schedule = nightly.schedule_of(settings)
    if schedule is not None:
        return (
            f"schedule refresh and deviation detection run every night at {schedule.at:%H:%M} ({schedule.zone});"
            " TRIALCOORD_NIGHTLY=off stops them"
        )
    return f"no nightly schedule refresh and deviation detection here: {nightly.not_run_because(settings)}"


def setup(demo: bool = True) -> int:
    """Everything a fresh installation needs; what exists already is kept (keys, users, a loaded study)."""
    from trialcoord.accounts import signer_keys
    from trialcoord.accounts.users import count_users, create_user, grant
    from trialcoord.demo.demo import add_demo_users, load_demo
    from trialcoord.kernel import pii, signing_keys

    settings = get_settings()
    unanchored = start_check(settings)
    if unanchored:
        print(unanchored)
    private_directory(settings.data_dir)
    if settings.keys_dir is not None:
        private_directory(settings.keys_dir)
    pii_key_file = _configured(settings.pii_key_file, "TRIALCOORD_PII_KEY_FILE")
    audit_key_file = _configured(settings.audit_key_file, "TRIALCOORD_AUDIT_KEY_FILE")
    passphrase = _configured(settings.audit_passphrase_file, "TRIALCOORD_AUDIT_PASSPHRASE_FILE")
    pades_file = _configured(settings.pades_file, "TRIALCOORD_PADES_FILE")
    if not _pii_configured(pii_key_file):
        pii.generate_key_file(pii_key_file, f"k{support.today():%Y%m%d}")
        print(f"created the personal-data key {pii_key_file} (back it up apart from the database)")
    if not audit_key_file.exists():
        if not passphrase.exists():
            _write_private(passphrase, secrets.token_urlsafe(32) + "\n")
        signing_keys.save_private_key(
            signing_keys.generate_key(), audit_key_file, signing_keys.read_passphrase(file=passphrase)
        )
        print(f"created the audit checkpoint key {audit_key_file}")
    if not pades_file.exists():
        _create_pades_credentials(settings.host, pades_file, passphrase)
        print(f"created the site's document-signing certificate {pades_file}")

    async def run() -> tuple[str | None, bool, list[str], str]:
        created = None
        if await count_users() == 0:
            password = generated_password()
            await create_user(
                FIRST_ADMIN, "Administrator", "admin@localhost.invalid", password, support.actor(), rules=rules()
            )
            await grant(FIRST_ADMIN, "administrator", None, None, support.today(), None, support.actor())
            created = password
        loaded = await load_demo(support.today()) if demo else False
        demo_password = generated_password()
        users = await add_demo_users(support.today(), demo_password, support.actor(), rules()) if loaded else []

        # This installation's registry, under its data directory; published to signatures/ only when asked.
        await signer_keys.write_registry(support.installation())
        return created, loaded, users, demo_password

    password, loaded, users, demo_password = support.database(run)
    _say_where(settings)
    if loaded:
        print("demo study loaded")
    if users:
        print(f"demo users {', '.join(users)} (see README), password '{demo_password}' (shown this once)")
    if password:
        print(
            f"first administrator: user ID '{FIRST_ADMIN}', password '{password}'"
            " (shown this once; change it with: trialcoord user reset-password admin)"
        )
    print("set-up complete")
    return 0


def _say_where(settings: Settings) -> None:
    from trialcoord.kernel.installation import Installation

    print(f"keys are kept in {settings.keys_dir}, apart from the data directory {settings.data_dir}")
    if settings.keys_in_old_place:
        print(
            f"keys still read from the data directory: {', '.join(map(str, settings.keys_in_old_place))};"
            f" move them to {settings.keys_dir} (with the server stopped: mkdir -m 700 {settings.keys_dir} &&"
            f" mv {' '.join(map(str, settings.keys_in_old_place))} {settings.keys_dir}/)"
        )
    registry = Installation(settings).registry_dir
    print(
        f"the signer registry is kept at {registry}/registry.json; publish it to {settings.signatures_dir}"
        " with `trialcoord signatures publish`"
    )


def publish_registry(to: str | None, replace_other: bool) -> int:
    from trialcoord.accounts import signer_keys

    directory = Path(to) if to else get_settings().signatures_dir
    written = support.database(lambda: signer_keys.publish_registry(support.installation(), directory, replace_other))
    print(f"signer registry published to {written} (and the PAdES certificate beside it)")
    return 0


def private_directory(path: Path) -> None:
    """A directory only its owner may enter (an existing one made before issue 17 is tightened)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _configured(path: Path | None, variable: str) -> Path:
    """A file the settings from the environment always name (a default under the data directory)."""
    if path is None:
        raise UsageError(f"the settings name no file for {variable}")
    return path


def _create_pades_credentials(host: str, pades_file: Path, passphrase_file: Path) -> None:
    """The site's P-256 key and self-signed certificate for PAdES, as PKCS#12 under the system passphrase."""
    import os
    from datetime import datetime, timedelta

    from trialcoord.kernel import signing_keys
    from trialcoord.kernel.render.signed_pdf import new_site_credentials, save_credentials

    now = datetime.now(UTC)
    key, certificate = new_site_credentials(
        f"trialcoord document signing ({host})",
        "trialcoord site",
        now - timedelta(minutes=5),
        now + timedelta(days=10 * 365),
    )
    passphrase = signing_keys.read_passphrase(file=passphrase_file)
    pades_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(pades_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(save_credentials(key, certificate, passphrase))


def _pii_configured(pii_key_file: Path) -> bool:
    import os

    from trialcoord.kernel.pii import KEYS_VARIABLE

    return bool(os.environ.get(KEYS_VARIABLE)) or pii_key_file.exists()


def _write_private(path: Path, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
