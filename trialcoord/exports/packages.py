"""The sponsor package's use cases: start a build (its transfer number and parameters recorded at once), build it
(datasets, Define-XML, the PDF/A report with the datasets attached, the signed manifest), list a study's packages,
and hand one out; each package made or downloaded is audited with its SHA-256.

A transfer's first build takes the next number; `transfer=N` rebuilds transfer N with its own parameters and its
audit checkpoint, so unchanged data give the same bytes. The package's dates are its as-of date's last second
(UTC): when it was actually made is in the package list and the audit trail, never inside the bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from anyio import to_thread

from trialcoord.exports import datasets as study_datasets
from trialcoord.exports import package_store, transport, writing
from trialcoord.exports.define_xml import define_xml
from trialcoord.exports.report import ReportContext, compliance_report
from trialcoord.exports.rules.scope import Privacy, Scope
from trialcoord.exports.rules.transfers import changes_since
from trialcoord.kernel import anchors, audit_log
from trialcoord.kernel.audit_log import Change, TrailBroken
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, Forbidden, InvalidInput, NotConfigured, NotFound, Problem
from trialcoord.kernel.rules.audit_entries import utc_instant
from trialcoord.kernel.signing_keys import SignedCheckpoint
from trialcoord.scheduling import lookups, protocols

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
FOLDER = "sponsor-packages"  # in the data directory: every finished package, named by its row id
# A build says it is alive every HEARTBEAT; one silent for STALE has lost its process (a server or a command that
# stopped) and is failed by the next start of a build or of the server, so it never blocks its study.
HEARTBEAT, STALE = timedelta(seconds=10), timedelta(seconds=60)
STOPPED = "The process building this package stopped before it finished; please start it again."
# The libraries whose versions shape the package's bytes (a rebuild with others may differ; the datasets will not).
SOFTWARE = ("pyreadstat", "lxml", "weasyprint", "pydyf", "fonttools", "pikepdf", "cryptography")


@dataclass(frozen=True, slots=True)
class Package:
    id: int
    study: str
    transfer: int
    rebuild_of: int | None
    scope: Scope
    state: str  # building, done or failed
    progress: float  # 0 to 1
    message: str
    made_by: str
    created_at: str
    finished_at: str | None
    sha256: str | None
    size: int | None

    @property
    def file_name(self) -> str:
        return f"{self.study}-sponsor-transfer-{self.transfer:03d}.zip"


def _package(row: dict[str, Any]) -> Package:
    scope = Scope(
        row["study"],
        date.fromisoformat(row["as_of"]),
        tuple(json.loads(row["sites"])),
        Privacy(row["privacy"]),
        bool(row["unblinded"]),
    )
    return Package(
        int(row["id"]),
        row["study"],
        int(row["transfer"]),
        row["rebuild_of"],
        scope,
        row["state"],
        float(row["progress"]),
        row["message"],
        row["made_by"],
        row["created_at"],
        row["finished_at"],
        row["sha256"],
        row["size"],
    )


def instant_of(as_of: date) -> str:
    return f"{as_of.isoformat()}T23:59:59Z"


async def start(scope: Scope, *, actor: str, today: date, transfer: int | None = None) -> Package:
    """Record a new build (state 'building'): the next transfer, or a rebuild of `transfer` with its parameters.
    Refuses what could not be built: an unknown study or site, an as-of date to come, a rebuild whose parameters
    differ from the transfer's."""
    if scope.as_of > today:
        raise InvalidInput([Problem(f"as-of date {scope.as_of} is still to come (today is {today})", field="as_of")])
    if scope.unblinded and not (await protocols.study_blinding(scope.study)).blinded:
        scope = replace(scope, unblinded=False)  # an open-label study shows arms anyway: nothing to unblind
    busy = f"a package of study {scope.study} is being built; wait for it to finish (one build at a time)"
    try:
        return await _start(scope, actor, transfer, busy)
    except Conflict:  # the database's own guard: another build started between our check and our insert
        raise Conflict(busy) from None


async def _start(scope: Scope, actor: str, transfer: int | None, busy: str) -> Package:
    now = audit_log.clock()
    async with transaction("sponsor package"):
        await package_store.fail_stale(STOPPED, utc_instant(now), utc_instant(now - STALE))
        study = await protocols.require_study(scope.study)
        known = {row["code"] for row in await lookups.list_sites(study.id)}
        unknown = [site for site in scope.sites if site not in known]
        if unknown:
            raise InvalidInput([Problem(f"study {scope.study} has no site {', '.join(unknown)}", field="site")])
        if await package_store.building(study.id):
            raise Conflict(busy)
        rebuild_of = None
        if transfer is None:
            number = await package_store.last_transfer(study.id) + 1
        else:
            first = await package_store.first_build(study.id, transfer)
            if first is None:
                raise NotFound(f"study {scope.study} has no finished transfer {transfer} to rebuild")
            made = _package(first).scope
            if made != scope:
                raise InvalidInput(
                    [
                        Problem(
                            f"transfer {transfer} was made with {_described(made)}; a rebuild takes the same"
                            f" parameters, not {_described(scope)}",
                            field="transfer",
                        )
                    ]
                )
            number, rebuild_of = transfer, int(first["id"])
        package_id = await package_store.insert(
            {
                "study": study.id,
                "transfer": number,
                "rebuild_of": rebuild_of,
                "as_of": scope.as_of.isoformat(),
                "sites": json.dumps(sorted(scope.sites)),
                "privacy": str(scope.privacy),
                "unblinded": int(scope.unblinded),
                "state": "building",
                "progress": 0.0,
                "message": "Waiting to start",
                "made_by": actor,
                "created_at": utc_instant(now),
                "heartbeat": utc_instant(now),
            }
        )
        row = await package_store.find(study.id, package_id)
    assert row is not None  # inserted in this transaction
    return _package(row)


def _described(scope: Scope) -> str:
    sites = f"site{'s' if len(scope.sites) > 1 else ''} {', '.join(scope.sites)}" if scope.sites else "all sites"
    blind = ", unblinded" if scope.unblinded else ""
    return f"as of {scope.as_of}, {sites}, privacy {scope.privacy}{blind}"


async def build(
    package: Package, installation: Installation, *, out: Path | None = None, progress: Progress | None = None
) -> Package:
    """Build a started package: written to the data directory (and copied to `out`, given one), recorded as done
    with its SHA-256 and audited. A failure leaves it 'failed' with the reason, and no file."""
    tracker = _Tracker(package.id, progress)
    writer = asyncio.create_task(tracker.keep_writing())
    target: Path | None = None
    try:
        if installation.data_dir is None and out is None:
            raise NotConfigured("a sponsor package needs a data directory to keep it in, or a file to write to")
        manifest, states, target = await _build(package, installation, tracker, out)
        await tracker.stop(writer)
        sha256, size = await to_thread.run_sync(_file_digest, target)
        if out is not None and target != out:
            await to_thread.run_sync(shutil.copyfile, target, out)
        values = {
            "sha256": sha256,
            "size": size,
            "transfer": package.transfer,
            "as_of": package.scope.as_of.isoformat(),
            "sites": list(package.scope.sites),
            "privacy": str(package.scope.privacy),
            "unblinded": package.scope.unblinded,
            "rebuild_of": package.rebuild_of,
        }
        async with transaction("sponsor package"):
            finished = await package_store.finish(
                package.id,
                state="done",
                progress=1.0,
                message=f"Done: {len(manifest['files'])} files",
                finished_at=utc_instant(audit_log.clock()),
                sha256=sha256,
                size=size,
                deviations=json.dumps(states, sort_keys=True, separators=(",", ":")),
                checkpoint=json.dumps(manifest["checkpoint"], sort_keys=True),
            )
            if not finished:  # judged stopped meanwhile (its number may be another build's now): not offered
                raise Conflict(f"sponsor package {package.id} was failed as stopped while it was built; start it again")
            await audit_log.record(
                package.made_by, Change("export", "sponsor_package", f"{package.study}/{package.id}", None, values)
            )
    except BaseException as error:
        await tracker.stop(writer)
        if target is not None and target != out:
            target.unlink(missing_ok=True)  # a package never recorded as done is never offered
        message = _failure(error)
        async with transaction("sponsor package failed"):
            await package_store.update(
                package.id, state="failed", message=message[:2000], finished_at=utc_instant(audit_log.clock())
            )
        raise
    return await get(package.study, package.id)


def _failure(error: BaseException) -> str:
    """What the package list says of a failed build: the named problem, or (a defect) a pointer to the log."""
    if isinstance(error, InvalidInput | NotFound | Forbidden | Conflict | NotConfigured | OSError | TrailBroken):
        return str(error)
    if not isinstance(error, Exception):
        return "The build was interrupted."
    log.error("sponsor package build failed", exc_info=error)
    return "An unexpected error stopped the build; the server's log has the details."


async def make(
    scope: Scope,
    *,
    actor: str,
    today: date,
    installation: Installation,
    transfer: int | None = None,
    out: Path | None = None,
    progress: Progress | None = None,
) -> Package:
    """Start and build in one go (the command line)."""
    installation.keys()  # NotConfigured before anything is recorded: no package is made unsigned
    package = await start(scope, actor=actor, today=today, transfer=transfer)
    return await build(package, installation, out=out, progress=progress)


async def _build(
    package: Package, installation: Installation, tracker: _Tracker, out: Path | None
) -> tuple[dict[str, Any], dict[str, list[Any]], Path]:
    scope = package.scope
    keys = installation.keys()
    tracker.report(0.01, "Reading the study")
    built = await study_datasets.build(scope, progress=lambda done, what: tracker.report(0.01 + 0.5 * done, what))
    async with read():
        study = await protocols.require_study(scope.study)
        previous = await package_store.delivered(
            study.id,
            package.transfer,
            json.dumps(sorted(scope.sites)),
            str(scope.privacy),
            int(scope.unblinded),
        )
        first = await package_store.first_build(study.id, package.transfer) if package.rebuild_of else None
    if first is not None and first["checkpoint"]:
        checkpoint = SignedCheckpoint.from_json(json.loads(first["checkpoint"]))
    else:
        tracker.report(0.52, "Checking the audit trail")
        checkpoint = await audit_log.checkpoint(keys.manifest_key)
        await anchors.keep(installation.checkpoint_dir, checkpoint)
    states = {d.refid: [d.fingerprint, d.closed] for d in built.deviations}
    delta = changes_since(json.loads(previous["deviations"]) if previous else None, states)
    generated_at = instant_of(scope.as_of)
    at = datetime(scope.as_of.year, scope.as_of.month, scope.as_of.day, 23, 59, 59)
    members: list[writing.Member] = []
    for position, data in enumerate(built.datasets):
        tracker.report(0.55 + 0.15 * position / max(1, len(built.datasets)), f"Writing {data.name}")
        xpt = await to_thread.run_sync(transport.xpt_bytes, data, at)
        members.append(writing.Member(f"{data.name.lower()}.xpt", "application/x-sas-xport", xpt))
        csv = await to_thread.run_sync(transport.csv_bytes, data)
        members.append(writing.Member(f"{data.name.lower()}.csv", "text/csv", csv))
    define = await to_thread.run_sync(
        lambda: define_xml(
            built.datasets, study=scope.study, title=built.title, protocol=built.protocol, generated_at=generated_at
        )
    )
    members.append(writing.Member(writing.DEFINE, "application/xml", define))
    tracker.report(0.72, "Rendering the compliance report")
    context = ReportContext(
        scope=scope,
        title=built.title,
        protocol=built.protocol,
        generated_at=generated_at,
        transfer=package.transfer,
        previous_transfer=int(previous["transfer"]) if previous is not None else None,
        dv_changes={kind: len(refids) for kind, refids in delta.items()},
        checkpoint=checkpoint,
        arms_shown=built.arms_shown,
        withheld=built.withheld,
    )
    attachments = [(m.name, m.data, f"SDTM dataset {m.name[:-4].upper()}") for m in members if m.name.endswith(".xpt")]
    attachments.append((writing.DEFINE, define, "Define-XML 2.1 of the datasets"))
    report = await compliance_report(
        context,
        built.datasets,
        attachments=attachments,
        progress=lambda done, what: tracker.report(0.72 + 0.23 * done, what),
    )
    members.append(writing.Member(writing.REPORT, "application/pdf", report))
    manifest = {
        "study": scope.study,
        "title": built.title,
        "protocol": built.protocol,
        "generated_at": generated_at,
        "trialcoord_version": importlib.metadata.version("trialcoord"),
        "software": {name: importlib.metadata.version(name) for name in SOFTWARE},
        "parameters": {
            "as_of": scope.as_of.isoformat(),
            "sites": sorted(scope.sites),
            "privacy": str(scope.privacy),
            "unblinded": scope.unblinded,
            "arms_shown": built.arms_shown,
            "transfer": package.transfer,
        },
        "datasets": [
            {
                "name": d.name,
                "label": d.label,
                "rows": len(d.rows),
                "xpt": f"{d.name.lower()}.xpt",
                "csv": f"{d.name.lower()}.csv",
            }
            for d in built.datasets
        ],
        "withheld": dict(sorted(built.withheld.items())),
        "transfer": {
            "number": package.transfer,
            "previous": context.previous_transfer,
            "dv": delta,
        },
        "checkpoint": checkpoint.to_json(),
    }
    tracker.report(0.96, "Signing the manifest")
    target = out if installation.data_dir is None and out is not None else _stored_path(installation, package.id)
    signed = await to_thread.run_sync(_write_atomically, target, members, manifest, keys.manifest_key)
    return signed, states, target


def _write_atomically(
    target: Path, members: list[writing.Member], manifest: dict[str, Any], key: Any
) -> dict[str, Any]:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            signed = writing.write(file, members, manifest=manifest, key=key)
        os.replace(name, target)  # a reader never sees half a package
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return signed


def _stored_path(installation: Installation, package_id: int) -> Path:
    assert installation.data_dir is not None
    return installation.data_dir / FOLDER / f"{package_id}.zip"


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class _Tracker:
    """The build's progress, written to its row at most once a second (a web page polls it, from any worker)."""

    def __init__(self, package_id: int, callback: Progress | None) -> None:
        self.package_id, self.callback = package_id, callback
        self.latest: tuple[float, str] | None = None
        self.stopped = asyncio.Event()

    async def stop(self, writer: asyncio.Task[None]) -> None:
        """Stop writing and wait until the writer has: never cancelled inside its transaction, where a cancellation
        could leave the database connection in an open transaction that nothing releases."""
        self.stopped.set()
        with contextlib.suppress(Exception):  # a progress write that failed does not decide the build
            await asyncio.shield(writer)

    def report(self, done: float, what: str) -> None:
        self.latest = (min(max(done, 0.0), 0.99), what)
        if self.callback is not None:
            self.callback(*self.latest)

    async def keep_writing(self) -> None:
        written, beat = None, audit_log.clock()
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), 1)
                return
            now = audit_log.clock()
            if (self.latest is not None and self.latest != written) or now - beat >= HEARTBEAT:
                written, beat = self.latest, now
                values: dict[str, Any] = {"heartbeat": utc_instant(now)}
                if written is not None:
                    values.update(progress=written[0], message=written[1])
                async with transaction("sponsor package progress"):
                    await package_store.update(self.package_id, **values)


async def packages_of(study: str) -> list[Package]:
    async with read():
        found = await protocols.require_study(study)
        return [_package(row) for row in await package_store.of_study(found.id)]


async def get(study: str, package_id: int) -> Package:
    async with read():
        found = await protocols.require_study(study)
        row = await package_store.find(found.id, package_id)
    if row is None:
        raise NotFound(f"study {study} has no sponsor package {package_id}")
    return _package(row)


async def download(study: str, package_id: int, *, actor: str, installation: Installation) -> tuple[Package, Path]:
    """A finished package's file, audited as downloaded with its SHA-256."""
    package = await get(study, package_id)
    if package.state != "done" or package.sha256 is None:
        raise NotFound(f"sponsor package {package_id} of study {study} is {package.state}, not ready to download")
    if installation.data_dir is None or not _stored_path(installation, package.id).exists():
        raise NotFound(f"sponsor package {package_id} of study {study} is not kept on this server")
    async with transaction("sponsor package download"):
        await audit_log.record(
            actor,
            Change(
                "download",
                "sponsor_package",
                f"{study}/{package.id}",
                None,
                {"sha256": package.sha256, "transfer": package.transfer},
            ),
        )
    return package, _stored_path(installation, package.id)


async def fail_interrupted() -> int:
    """At start-up: builds whose process stopped (no heartbeat for STALE) are failed, with why; a build a command
    is running at the same time keeps its heartbeat and is left alone."""
    now = audit_log.clock()
    async with transaction("sponsor packages interrupted"):
        return await package_store.fail_stale(STOPPED, utc_instant(now), utc_instant(now - STALE))
