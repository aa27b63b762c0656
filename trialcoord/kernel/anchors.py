"""External checkpoints (issue 17): signed audit checkpoints written to TRIALCOORD_CHECKPOINT_DIR, a directory
outside the database and the data directory, so that deleting the `audit_checkpoints` rows after rewriting the
trail no longer goes unseen. `audit verify` checks the trail against the newest one by default.

Written after each TRIALCOORD_CHECKPOINT_EVERY entries and daily by `Anchoring`, a task of the web app that
looks at the head now and then (outside every user's transaction: a failure to write is logged and tried
again at the next look, never a failed write), and by the nightly run. docs/audit-trail.md says more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from trialcoord.kernel import audit_log, audit_store
from trialcoord.kernel.config import ConfigError, Settings
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules import anchoring

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trialcoord.kernel.signing_keys import SignedCheckpoint

log = logging.getLogger(__name__)
UNANCHORED = "unanchored: history could be rewritten without detection"
CHECK_EVERY = 60.0  # seconds between looks at the head: one cheap query


def start_check(settings: Settings) -> str | None:
    """Before `serve` and `setup`: ConfigError when the directory lies inside the data directory (the same disk,
    the same backup, the same person's reach) unless TRIALCOORD_CHECKPOINT_DIR_INSIDE_DATA says so; the warning
    to print when no directory is set; None when all is well."""
    directory = settings.checkpoint_dir
    if directory is None:
        return (
            f"warning: the audit trail is {UNANCHORED}; set TRIALCOORD_CHECKPOINT_DIR to a directory on other"
            " storage (docs/audit-trail.md, External checkpoints)"
        )
    if inside(directory, settings.data_dir) and not settings.checkpoint_dir_inside_data:
        raise ConfigError(
            f"TRIALCOORD_CHECKPOINT_DIR: {directory} lies inside the data directory {settings.data_dir}, where"
            " whoever can rewrite the database can rewrite the checkpoints too; choose a directory on other"
            " storage, or set TRIALCOORD_CHECKPOINT_DIR_INSIDE_DATA=1 to accept it"
        )
    return None


def inside(directory: Path, data_dir: Path) -> bool:
    here, data = directory.resolve(), data_dir.resolve()
    return here == data or data in here.parents


def newest(directory: Path) -> Path | None:
    """The newest checkpoint file in the directory (largest size, then latest instant); None when there is none."""
    try:
        names = [entry.name for entry in os.scandir(directory) if entry.is_file()]
    except FileNotFoundError:
        return None
    found = anchoring.newest(names)
    return directory / found[1] if found else None


def save(directory: Path, signed: SignedCheckpoint) -> Path:
    """Write the checkpoint under its name, whole or not at all (a temporary file renamed), and flushed to disk."""
    from trialcoord.kernel.signing_keys import save_checkpoint

    directory.mkdir(parents=True, exist_ok=True)
    target = directory / anchoring.file_name(signed.size, signed.issued_at)
    descriptor, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    try:
        os.close(descriptor)
        save_checkpoint(signed, Path(temporary))
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return target


async def write_if_due(
    directory: Path, every: int, key: Callable[[], Ed25519PrivateKey], *, nightly: bool = False
) -> Path | None:
    """A new external checkpoint when one is due (`anchoring.due`), its path; None when none was due. Raises what
    checkpointing raises (TrailBroken on a broken trail, OSError on the directory, NotConfigured without a key)."""
    async with read():
        head = await audit_store.head_size()
    found = newest(directory)
    last = anchoring.parse(found.name) if found else None
    if not anchoring.due(head, last, every, audit_log.clock().date(), nightly=nightly):
        return None
    signed = await audit_log.checkpoint(key())
    return await asyncio.to_thread(save, directory, signed)


async def latest(key: Callable[[], Ed25519PrivateKey], directory: Path | None) -> SignedCheckpoint:
    """The checkpoint a package carries: the newest stored one (the same one twice running, so the same
    inputs give the same package), or a new one when there is none yet (written to `directory` too)."""
    from trialcoord.kernel.signing_keys import SignedCheckpoint

    async with read():
        stored = await audit_store.latest_checkpoint()
    if stored is not None:
        return SignedCheckpoint.from_json(stored)
    signed = await audit_log.checkpoint(key())
    await keep(directory, signed)
    return signed


async def keep(directory: Path | None, signed: SignedCheckpoint) -> None:
    """A checkpoint made for a package written to the directory too; a failure is logged (the package still
    carries it, and the anchoring task writes one at its next look), never raised."""
    if directory is None:
        return
    try:
        await asyncio.to_thread(save, directory, signed)
    except OSError as error:
        log.error("no external audit checkpoint written to %s: %s (tried again later)", directory, error)


class Anchoring:
    """`write_if_due` as a task of the web app, every `check_every` seconds, on both engines."""

    def __init__(
        self,
        directory: Path,
        every: int,
        key: Callable[[], Ed25519PrivateKey],
        *,
        check_every: float = CHECK_EVERY,
    ) -> None:
        self.directory, self.every, self.key, self.check_every = directory, every, key, check_every
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.keep(), name="anchoring")

    async def look(self) -> Path | None:
        """One look; a failure is logged (and tried again at the next look), never raised."""
        try:
            written = await write_if_due(self.directory, self.every, self.key)
        except Exception as error:
            log.error("no external audit checkpoint written to %s: %s (tried again later)", self.directory, error)
            return None
        if written is not None:
            log.info("external audit checkpoint written: %s", written)
        return written

    async def keep(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(self.check_every)

    async def close(self) -> None:
        if self.task is None:
            return
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
