"""Reading what someone uploaded (python-docx opening a Word file, qpdf opening a PDF) in a worker process whose
address space is capped: a document that slips past the archive checks (kernel/archives.py) and blows up while
being parsed exhausts the worker, never the server. The worker is started with 'spawn' (the server has threads
a fork would copy), once, and started again after a job killed it; one job at a time.

A MemoryError in the worker, or the worker dying, is an InvalidInput naming the file and the limit."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem

# Address space of the worker: Python with python-docx, lxml and pikepdf maps ~50 MB; a real 100 MB scanned PDF or
# a Word file of 100 MiB of parts (kernel/archives.WORD) is read in a few hundred MB.
MEMORY_LIMIT = 1536 << 20

_NEAR = 64 << 20  # a failed allocation is usually big (a buffer doubling): the peak stops short of the cap
_lock = threading.Lock()
_executor: ProcessPoolExecutor | None = None
_limit_in_use = MEMORY_LIMIT


def _cap(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _peak() -> int:
    """The worker's peak address space in bytes (Linux); 0 where /proc does not say."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmPeak:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _call(function: Callable[..., Any], args: tuple, limit: int) -> tuple[str, Any, bool]:
    """Runs in the worker: (outcome, value, whether to start a fresh worker). Exceptions come back as values
    (InvalidInput would not unpickle intact). A parser that runs out of memory does not always say so (lxml
    reports "unknown error"), so an error raised with the worker's peak at the cap counts as out of memory; a
    worker whose peak passed half the cap is replaced, so that every job's peak is its own."""
    try:
        outcome, value = "done", function(*args)
    except InvalidInput as error:
        outcome, value = "invalid", [(p.message, p.file, p.field) for p in error.problems]
    except MemoryError:
        outcome, value = "memory", None
    except Exception as error:  # noqa: BLE001 - a parser's own error: the caller says the file cannot be read
        outcome, value = "error", f"{type(error).__name__}: {str(error)[:300]}"
    peak = _peak()
    if outcome == "error" and peak > limit - _NEAR:
        outcome, value = "memory", None
    return outcome, value, peak > limit // 2


def _pool(limit: int) -> ProcessPoolExecutor:
    global _executor, _limit_in_use
    if _executor is None or limit != _limit_in_use:
        if _executor is not None:
            _executor.shutdown(wait=False, cancel_futures=True)
        _executor = ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=_cap, initargs=(limit,))
        _limit_in_use = limit
    return _executor


class ReadFailed(Exception):
    """The parser raised (not a memory problem): the caller decides what an unreadable file means."""


def run_isolated(function: Callable[..., Any], *args: Any, file: str, limit: int = MEMORY_LIMIT) -> Any:
    """`function(*args)` in the capped worker (a module-level function; arguments and result are pickled).
    InvalidInput for a file that needs more memory than `limit` to read (or that the function refuses);
    ReadFailed for any other error it raised. Blocking: call it from a thread off the event loop."""
    with _lock:  # one job at a time: the cap is per document
        global _executor
        try:
            outcome, value, spent = _pool(limit).submit(_call, function, args, limit).result()
        except BrokenProcessPool:  # killed (by the kernel, past the cap): the next job starts a new worker
            outcome, value, spent = "memory", None, True
        if spent and _executor is not None:
            _executor.shutdown(wait=False)
            _executor = None
    if outcome == "done":
        return value
    if outcome == "invalid":
        raise InvalidInput([Problem(message, file=where, field=field) for message, where, field in value])
    if outcome == "memory":
        raise InvalidInput(
            [Problem(f"reading it needs more than the {limit >> 20} MiB of memory a file may take", file=file)]
        )
    raise ReadFailed(value)


def shutdown() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=True, cancel_futures=True)
            _executor = None
