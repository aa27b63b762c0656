"""`trialcoord verify`: stored documents, every signature (the documents' and the deviations') and the regulated
records against the audit trail (`audit reconcile`), or exported packages offline. It spans several features, so it
lives above them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import UsageError
from trialcoord.kernel.config import get_settings


def register(commands) -> None:
    parser = commands.add_parser(
        "verify",
        help="check stored documents, signatures and records against the audit trail, or binder ZIPs offline"
        " (exit 1 naming each failure)",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="ZIP", help="binder or export ZIPs to check with the public registry"
    )
    parser.add_argument(
        "--registry",
        metavar="FILE",
        help="the signer registry (default: this installation's own, else the published signatures/registry.json)",
    )
    parser.set_defaults(run=lambda a: verify(a.paths, a.registry))


def verify(paths: list[str], registry_file: str | None) -> int:
    """No paths: every stored content, version, signature and file made from a version. Paths: binder or
    export ZIPs, offline, against the public signer registry."""
    if paths:
        return _verify_packages(paths, registry_file)
    from trialcoord.audit import reconciling
    from trialcoord.deviations import verification
    from trialcoord.documents import documents

    async def all_three(shown: support.Progress):
        shown("Checking stored contents and document versions against their SHA-256")
        stored = await documents.verify_stored()
        shown("Checking every signature against the signer registry")
        signed = await verification.verify_all()
        shown("Comparing the regulated records with the audit trail")
        return stored[0] + signed[0], stored[1] + signed[1], await reconciling.reconcile()

    with support.progress("Verifying what is stored") as shown:
        checked, problems, records = support.database(lambda: all_three(shown))
    for problem in (*problems, *records.differences):
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problems in {checked} stored contents, versions and signatures", file=sys.stderr)
    else:
        print(f"all {checked} stored contents, versions and signatures verify")
    print(reconciling.summary(records), file=sys.stderr if records.differences else sys.stdout)
    return 1 if problems or records.differences else 0


def _verify_packages(paths: list[str], registry_file: str | None) -> int:
    from trialcoord.exports.verification import is_sponsor_package

    # Trust comes from the site's published registry, never from the package: a forged package carries its
    # own keys. A sponsor rarely holds the site's registry, so a sponsor package is checked without one too,
    # and the output says what the trust then rests on.
    sponsor = {path for path in paths if is_sponsor_package(path)}
    registry, source = _registry(registry_file, required=bool(set(paths) - sponsor) or registry_file is not None)
    failed = 0
    said: list[str] = []  # on a terminal, stdout once the bar has gone (problems go to stderr at once, above it)
    try:
        with support.progress(f"Verifying {len(paths)} package{'s' if len(paths) > 1 else ''}") as shown:
            say = said.append if shown.on else print
            for done, path in enumerate(paths):
                shown.advance(done / len(paths), f"Verifying {path}")
                if path in sponsor:
                    failed += _verify_sponsor(path, registry, f"the signer registry {source}", say)
                else:
                    failed += _verify_binder(path, registry, say)
    finally:
        for line in said:
            print(line)
    return 1 if failed else 0


def _registry(registry_file: str | None, *, required: bool) -> tuple[dict | None, Path]:
    import json

    source = Path(registry_file) if registry_file else _default_registry()
    if not source.exists():
        if not required:
            return None, source
        raise UsageError(
            f"{source}: no signer registry to trust; pass --registry FILE, the registry the site"
            " publishes (signatures/registry.json), not the copy inside the package"
        )
    try:
        registry = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UsageError(f"{source}: not a readable signer registry ({error})") from None
    if not isinstance(registry, dict):
        raise UsageError(f"{source}: not a signer registry (a JSON object is expected)")
    return registry, source


def _default_registry() -> Path:
    """This installation's own registry (under its data directory), else the published one: a checkout's
    `signatures/` may hold another installation's."""
    from trialcoord.kernel.installation import Installation

    settings = get_settings()
    own = Installation(settings).registry_dir
    if own is not None and (own / "registry.json").exists():
        return own / "registry.json"
    return settings.signatures_dir / "registry.json"


def _verify_binder(path: str, registry: dict | None, say: Callable[[str], None] = print) -> int:
    from trialcoord.documents.package_verification import verify_package
    from trialcoord.kernel.audit_log import clock
    from trialcoord.kernel.rules.audit_entries import utc_instant

    report = verify_package(path, registry, now=utc_instant(clock()))
    for problem in report.problems:
        print(f"{path}: {problem}", file=sys.stderr)
    trust = f"; {report.trust}" if report.trust else ""
    if report.ok:
        say(f"{path}: {report.files_checked} files and {report.signatures_checked} signatures verify{trust}")
        if report.checkpoint:
            say(f"{path}: carries the {report.checkpoint}; its signature verifies")
        return 0
    print(f"{path}: {len(report.problems)} problems{trust}", file=sys.stderr)
    return 1


def _verify_sponsor(path: str, registry: dict | None, registry_name: str, say: Callable[[str], None] = print) -> int:
    from trialcoord.exports.verification import verify_package

    report = verify_package(path, registry, registry_name)
    for problem in report.problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if report.ok:
        say(
            f"{path}: sponsor package; {report.files_checked} files, {report.datasets_checked} datasets and"
            f" the manifest signature verify; trusted through {report.trust}"
        )
        if report.checkpoint:
            say(f"{path}: carries the {report.checkpoint}; its signature verifies")
        return 0
    count = len(report.problems)
    print(f"{path}: {count} problem{'s' if count > 1 else ''}", file=sys.stderr)
    return 1
