"""Reading ZIP archives and JSON that someone else made (uploads, packages handed to `trialcoord verify`) without
letting them take the memory: every member's size, the ratio it unpacks at, the members' count and their total
are bounded while decompressing (a ZIP header's sizes are the sender's word, never trusted alone), and JSON is
bounded in size and nesting depth before it is parsed. Each refusal is an InvalidInput naming the file, the
member and the limit passed."""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from trialcoord.kernel.problems import InvalidInput, Problem

MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What one archive may unpack to. The defaults admit a binder: hundreds of MB of PDFs, each up to `member`
    (a 100 MB scanned PDF passes with room), stored or deflated at a few to one. `ratio` applies past
    `ratio_floor` unpacked bytes: real XML and JSON members deflate at 5 to 50:1, a bomb at several hundred to
    one (deflate's own ceiling is ~1030:1)."""

    member: int = 1024 * MiB
    total: int = 16 * 1024 * MiB
    members: int = 100_000
    ratio: int = 100
    ratio_floor: int = 1 * MiB


PACKAGE = Limits()  # binder and sponsor packages handed to `trialcoord verify`
# An uploaded Word file (20 MiB at most): its parts, scanned pictures inside included, unpack to 100 MiB at most.
WORD = Limits(member=100 * MiB, total=100 * MiB, members=10_000)
JSON_BYTES = 64 * MiB  # a manifest of 50,000 entries is a few MB; a USDM study a few hundred kB
JSON_DEPTH = 64  # manifests nest 4 deep, USDM studies about 10; Python's parser recurses once per level
_CHUNK = 1 << 20
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


def _refuse(file: str, message: str) -> InvalidInput:
    return InvalidInput([Problem(message, file=file)])


class BoundedZip:
    """A ZIP opened for reading under `limits`: `check()` refuses what the directory declares beyond them, and
    every read stops at the first byte past them, whatever the directory said."""

    def __init__(self, source: str | Path | IO[bytes], file: str, limits: Limits = PACKAGE):
        self.file, self.limits = file, limits
        try:
            self.archive = zipfile.ZipFile(source)
        except _READ_ERRORS as error:
            raise _refuse(file, f"not a readable ZIP ({error})") from None
        self.unpacked = 0  # bytes decompressed so far, over all reads

    def __enter__(self) -> BoundedZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.archive.close()

    def check(self) -> None:
        """Refuse the archive on what its directory declares: too many members, or sizes past the limits."""
        infos, limits = self.archive.infolist(), self.limits
        if len(infos) > limits.members:
            raise _refuse(self.file, f"{len(infos)} members; the limit is {limits.members}")
        for info in infos:
            self._within(info.filename, info.file_size, info.compress_size)
        declared = sum(info.file_size for info in infos)
        if declared > limits.total:
            raise _refuse(self.file, f"the members unpack to {declared} bytes; the limit is {limits.total}")

    def _within(self, name: str, size: int, packed: int) -> None:
        limits = self.limits
        if size > limits.member:
            raise _refuse(self.file, f"{name}: unpacks to over {limits.member} bytes, the limit for one member")
        if size > limits.ratio_floor and size > limits.ratio * max(packed, 1):
            raise _refuse(
                self.file,
                f"{name}: unpacks at over {limits.ratio}:1 ({size} bytes from {packed}), refused as a ZIP bomb",
            )

    def stream(self, name: str, sink: Callable[[bytes], object], limit: int | None = None) -> int:
        """Feed the member's bytes to `sink` a chunk at a time, counting them as they come out of the
        decompressor; the number of bytes. KeyError when there is no such member."""
        info = self.archive.getinfo(name)
        top = min(limit, self.limits.member) if limit is not None else self.limits.member
        produced = 0
        try:
            with self.archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    produced += len(chunk)
                    self.unpacked += len(chunk)
                    if produced > top:
                        raise _refuse(self.file, f"{name}: unpacks to over {top} bytes, the limit for it")
                    self._within(name, produced, info.compress_size)
                    if self.unpacked > self.limits.total:
                        raise _refuse(self.file, f"the members unpack to over {self.limits.total} bytes, the limit")
                    sink(chunk)
        except _READ_ERRORS as error:
            raise _refuse(self.file, f"{name}: unreadable ({error})") from None
        return produced

    def read(self, name: str, limit: int | None = None) -> bytes:
        chunks: list[bytes] = []
        self.stream(name, chunks.append, limit)
        return b"".join(chunks)


# A JSON string, escapes included (unrolled: no backtracking per character).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth_exceeds(data: bytes, depth: int) -> bool:
    """Whether the JSON text nests arrays and objects deeper than `depth`, found without recursing: strings
    dropped, brackets kept, and the innermost pairs peeled once per level (each peel a C-speed pass)."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    for _ in range(depth):
        if not brackets:
            return False
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if peeled == brackets:
            return False  # unbalanced: not JSON, which the parser then says (recursing no deeper than this)
        brackets = peeled
    return bool(brackets)


def load_json(data: bytes | str, file: str, *, limit: int = JSON_BYTES, depth: int = JSON_DEPTH) -> Any:
    """Parse JSON from someone else: refused, naming `file`, when over `limit` bytes, nested deeper than `depth`,
    not UTF-8 or not JSON."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > limit:
        raise _refuse(file, f"{len(raw)} bytes of JSON; the limit is {limit}")
    if json_depth_exceeds(raw, depth):
        raise _refuse(file, f"JSON nested deeper than {depth} levels, the limit")
    import json

    try:
        return json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise _refuse(file, f"not UTF-8 text (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise InvalidInput([Problem(f"not JSON: {error.msg}", file, error.lineno, error.colno)]) from None
    except (ValueError, RecursionError) as error:  # an integer of thousands of digits; unbalanced and deep
        raise _refuse(file, f"not JSON that can be read ({str(error)[:200]})") from None
