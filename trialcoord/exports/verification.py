"""Checking a sponsor package offline, without the database or any private key: the manifest's signature, every
member's SHA-256 and size, each XPT's version 5 headers and the SDTM limits (read back by pyreadstat, an independent
reader), each CSV against its XPT row by row, define.xml against the datasets, and the report's figures against
the datasets (deviations per site). Every failure is named; nothing is trusted because the package says so."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trialcoord.exports.rules.sdtm import MAX_CHAR_BYTES, MAX_LABEL, NAME, Dataset, Kind, Variable
from trialcoord.exports.writing import DEFINE, FORMAT, KEY_PEM, MANIFEST, REPORT, SIGNATURE, UNLISTED
from trialcoord.kernel import signing_keys
from trialcoord.kernel.archives import load_json
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.tabular import inert

_MANIFEST_LIMIT = 64 << 20  # a manifest of 50,000 deviation ids is a few MB; past this it is not ours
_MEMBER_LIMIT = 4 << 30  # uncompressed bytes per member: SV of 1,000,000 visits is a few hundred MB
_TOTAL_LIMIT = 16 << 30  # uncompressed bytes of all the members together
# Uncompressed / compressed, past _RATIO_FLOOR bytes. Deflate's own maximum is ~1029:1, so a cap near it never
# bites. Real members measure ~5:1 (XPT, the demo) to ~47:1 (50,000 rows of one mostly blank 200-byte column);
# 200 leaves a fourfold margin and refuses a bomb at 1/5 of its size. Small members are let through any ratio.
_RATIO_LIMIT = 200
_RATIO_FLOOR = 1 << 20
_FIGURES_LIMIT = 16 << 20  # the report's attached figures decoded: a few hundred kB for 20 sites
_XML_LIMIT = 256 << 20  # define.xml, parsed whole by lxml: ~45 kB for the demo's seven datasets
_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # all the package writer uses
_READ_ERRORS = (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError, NotImplementedError)
_CHUNK = 1 << 20
_V5_LIBRARY = b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  "
_V5_MEMBER = b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  "


@dataclass
class PackageCheck:
    files_checked: int = 0
    datasets_checked: int = 0
    problems: list[str] = field(default_factory=list)
    trust: str = ""
    checkpoint: str = ""  # the audit checkpoint the manifest carries, once its signature verified

    @property
    def ok(self) -> bool:
        return not self.problems


def is_sponsor_package(path_or_file: str | Path | BinaryIO) -> bool:
    """Whether the ZIP's manifest names this format (the binder's verifier takes every other ZIP)."""
    try:
        with zipfile.ZipFile(path_or_file) as archive:
            info = archive.getinfo(MANIFEST)
            if info.file_size > _MANIFEST_LIMIT or info.compress_type not in _METHODS:
                return False
            return f'"format":"{FORMAT}"'.encode() in archive.read(info)
    except (KeyError, *_READ_ERRORS):  # an encrypted manifest raises RuntimeError, an unknown method NotImplemented
        return False
    finally:
        if not isinstance(path_or_file, str | Path):
            path_or_file.seek(0)


def verify_package(
    path_or_file: str | Path | BinaryIO,
    registry: Mapping[str, Any] | None = None,
    registry_name: str = "the given signer registry",
) -> PackageCheck:
    """Check a sponsor package. `registry` is the site's published signer registry: the manifest key must be one
    of its system keys. Without it only the package's own key vouches for the manifest, and `trust` says so."""
    check = PackageCheck()
    try:
        with zipfile.ZipFile(path_or_file) as archive:
            _Checker(archive, check, registry_name).run(registry)
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        check.problems.append(f"not a readable ZIP ({error})")
    return check


@dataclass
class _Checker:
    archive: zipfile.ZipFile
    check: PackageCheck
    registry_name: str
    good: dict[str, str] = field(default_factory=dict)  # members whose hash matched: name -> SHA-256
    key: Ed25519PublicKey | None = None  # manifest-key.pem, once read

    def problem(self, text: str) -> None:
        self.check.problems.append(text)

    def stream(self, name: str, sink: Callable[[bytes], object], limit: int = _MEMBER_LIMIT) -> bool:
        """Feed the member's bytes to `sink` a chunk at a time; False (the problem named) when it is missing,
        too large, a likely ZIP bomb, encrypted, of another compression method or unreadable."""
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            self.problem(f"{name}: missing from the package")
            return False
        size, packed = info.file_size, info.compress_size
        if size > limit or (size > _RATIO_FLOOR and (not packed or size / packed > _RATIO_LIMIT)):
            self.problem(f"{name}: {size} bytes unpacked from {packed}: refused as a ZIP bomb")
            return False
        if info.flag_bits & 0x1:
            self.problem(f"{name}: encrypted, which a sponsor package never is")
            return False
        if info.compress_type not in _METHODS:
            self.problem(f"{name}: compression method {info.compress_type}, not stored or deflate as written")
            return False
        try:
            with self.archive.open(info) as member:
                total = 0
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > size:  # the header lied about the size
                        self.problem(f"{name}: longer than its ZIP header says")
                        return False
                    sink(chunk)
            return True
        except _READ_ERRORS as error:
            self.problem(f"{name}: unreadable ({error})")
            return False

    def read(self, name: str, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        return b"".join(chunks) if self.stream(name, chunks.append, limit) else None

    @contextmanager
    def extracted(self, name: str, suffix: str) -> Iterator[Path | None]:
        """The good member in a temporary file, re-hashed on the way (the bytes checked are the signed ones);
        None when it no longer reads or matches. One at a time: nothing of it stays in memory."""
        handle, path = tempfile.mkstemp(suffix=suffix)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as file:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    file.write(chunk)

                read = self.stream(name, sink)
            if read and digest.hexdigest() != self.good[name]:
                self.problem(f"{name}: its bytes changed while it was being checked")
            yield Path(path) if read and digest.hexdigest() == self.good[name] else None
        finally:
            Path(path).unlink(missing_ok=True)

    def run(self, registry: Mapping[str, Any] | None) -> None:
        infos = self.archive.infolist()
        names = [info.filename for info in infos]
        for name, count in Counter(names).items():
            if count > 1:
                self.problem(f"{name}: stored more than once in the archive")
        total = sum(info.file_size for info in infos)
        if total > _TOTAL_LIMIT:
            self.problem(f"the members unpack to {total} bytes, over the {_TOTAL_LIMIT} a package may hold")
            return
        raw = self.read(MANIFEST, _MANIFEST_LIMIT)
        if raw is None:
            return
        try:  # bounded in depth too: Python's parser recurses once per level
            manifest = load_json(raw, MANIFEST, limit=_MANIFEST_LIMIT)
        except InvalidInput as error:
            self.problem(f"{MANIFEST}: does not parse ({error.problems[0].message[:200]})")
            return
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            self.problem(f"{MANIFEST}: not a {FORMAT} manifest")
            return
        signed = self.check_signature(raw, manifest, registry)
        files = manifest.get("files")
        entries = [e for e in files if isinstance(e, dict)] if isinstance(files, list) else []
        if not isinstance(files, list) or len(entries) != len(files):
            self.problem(f"{MANIFEST}: its file list is malformed")
        listed = {str(e.get("path")) for e in entries}
        for entry in entries:
            self.check_member(entry)
        for name in dict.fromkeys(names):
            if name not in listed and name not in UNLISTED:
                self.problem(f"{name}: in the archive but not listed in the manifest")
        if signed:
            self.check_checkpoint(manifest.get("checkpoint"))
            self.check_contents(manifest)
        else:  # parsing what nobody vouches for would expose the parsers to anyone's bytes, for nothing
            self.problem("the members' contents (XPT, CSV, define.xml, report) were not checked: the signature fails")

    def check_signature(self, raw: bytes, manifest: Mapping[str, Any], registry: Mapping[str, Any] | None) -> bool:
        """Whether the manifest's signature holds under a key that is trusted; each failure named."""
        before = len(self.check.problems)
        key_id = str(manifest.get("manifest_key_id"))
        pem, signature = self.read(KEY_PEM, 1 << 16), self.read(SIGNATURE, 1 << 16)
        if pem is None or signature is None:
            return False
        try:
            loaded = signing_keys.load_public_key(pem.decode("ascii"))
            public = signing_keys.public_key_hex(loaded)
        except (signing_keys.SigningKeyError, UnicodeDecodeError, ValueError):
            self.problem(f"{KEY_PEM}: not an Ed25519 public key")
            return False
        if registry is None:
            self.check.trust = "the package's own key only: compare manifest-key.pem with the site's signer registry"
        else:
            listed = registry.get("system_keys")
            keys = listed if isinstance(listed, list) else []
            system = {str(k.get("key_id")): k for k in keys if isinstance(k, Mapping)}
            self.check.trust = self.registry_name
            if key_id not in system:
                self.problem(f"{SIGNATURE}: signed by key {key_id}, which is not a system key in the registry")
            elif system[key_id].get("public_key") != public:
                self.problem(f"{KEY_PEM}: is not system key {key_id} of the registry")
        self.key = loaded
        if signing_keys.key_id(loaded) != key_id:
            self.problem(f"{KEY_PEM}: is not key {key_id}, which the manifest names")
        if len(signature) != 64 or not signing_keys.verify_hex(public, raw, signature.hex()):
            self.problem(f"{SIGNATURE}: does not verify under key {key_id}: {MANIFEST} or its signature was altered")
        return len(self.check.problems) == before

    def check_checkpoint(self, stated: Any) -> None:
        """The audit checkpoint the signed manifest carries: an anchor its receiver holds. Its own signature must
        verify under the manifest's key (the site's system key), so it proves the site's trail on its own."""
        if self.key is None:
            return
        try:
            if not isinstance(stated, dict):
                raise signing_keys.CheckpointError("missing or not a JSON object")
            signed = signing_keys.SignedCheckpoint.from_json(stated)
            signing_keys.verify_checkpoint(signed, self.key)
        except signing_keys.CheckpointError as error:
            self.problem(f"{MANIFEST}: its audit checkpoint: {error}")
            return
        self.check.checkpoint = (
            f"audit checkpoint of {signed.size} entries, root {signed.root}, issued at {signed.issued_at}"
        )

    def check_member(self, entry: Mapping[str, Any]) -> None:
        name = str(entry.get("path"))
        digest, size = hashlib.sha256(), 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)

        if not self.stream(name, sink):
            return
        self.check.files_checked += 1
        if digest.hexdigest() != entry.get("sha256"):
            self.problem(f"{name}: its SHA-256 differs from the manifest's: altered")
        elif size != entry.get("size"):
            self.problem(f"{name}: {size} bytes, the manifest says {entry.get('size')}")
        else:
            self.good[name] = digest.hexdigest()

    def check_contents(self, manifest: Mapping[str, Any]) -> None:
        """The formats and the agreement between members, for the members whose bytes are the signed ones."""
        frames: dict[str, list[dict[str, Any]]] = {}
        read_back: list[Dataset] = []
        listed = manifest.get("datasets")
        for entry in listed if isinstance(listed, list) else []:
            if not isinstance(entry, Mapping):
                continue
            name, xpt, csv = entry.get("name"), entry.get("xpt"), entry.get("csv")
            if not isinstance(name, str) or not isinstance(xpt, str) or xpt not in self.good:
                continue
            with self.extracted(xpt, ".xpt") as path:
                found = None if path is None else self.check_xpt(name, xpt, path, entry.get("rows"))
            if found is None:
                continue
            rows, data = found
            if name in ("DV", "DM"):
                frames[name] = rows
            read_back.append(data)
            self.check.datasets_checked += 1
            if isinstance(csv, str) and csv in self.good:
                with self.extracted(csv, ".csv") as path:
                    if path is not None:
                        self.check_csv(csv, path, rows)
        if DEFINE in self.good:
            from trialcoord.exports.define_xml import define_problems

            with self.extracted(DEFINE, ".xml") as path:
                if path is not None and path.stat().st_size > _XML_LIMIT:
                    self.problem(f"{DEFINE}: over {_XML_LIMIT} bytes, more than a define.xml of SDTM datasets holds")
                elif path is not None:
                    content = path.read_bytes()
                    self.check.problems += [f"{DEFINE}: {p}" for p in define_problems(content, read_back)]
        if REPORT in self.good and "DV" in frames and "DM" in frames:
            with self.extracted(REPORT, ".pdf") as path:
                if path is not None:
                    self.check_report(path, frames["DV"], frames["DM"])

    def check_report(self, path: Path, dv: list[dict[str, Any]], dm: list[dict[str, Any]]) -> None:
        from trialcoord.exports.rules.compliance import deviations_per_site

        try:
            figures = _attached_figures(path)
            stated = (figures.get("deviations") or {}).get("per_site")
        except (ValueError, AttributeError, TypeError, RecursionError) as error:
            self.problem(f"{REPORT}: its attached figures do not read ({str(error)[:200]})")
            return
        try:
            counted = deviations_per_site(dv, dm)
        except InvalidInput as error:
            self.check.problems += [f"{REPORT}: its figures cannot be counted: {p.message}" for p in error.problems]
            return
        except KeyError as error:
            self.problem(f"{REPORT}: its figures cannot be counted: DM has no variable {error}")
            return
        if stated != counted:
            self.problem(f"{REPORT}: deviations per site {stated} differ from the DV dataset's {counted}")

    def check_xpt(self, name: str, member: str, path: Path, rows: Any) -> tuple[list[dict[str, Any]], Dataset] | None:
        """The dataset as pyreadstat reads it back (rows by variable name, and as a Dataset for define.xml)."""
        with path.open("rb") as file:
            head = file.read(320)
        if head[:80] != _V5_LIBRARY or head[240:320] != _V5_MEMBER:
            self.problem(f"{member}: not SAS transport version 5 (its library or member header differs)")
            return None
        import pyreadstat

        try:
            frame, meta = pyreadstat.read_xport(str(path))
        except Exception as error:  # pyreadstat raises its own ReadstatError and others on a damaged file
            self.problem(f"{member}: pyreadstat cannot read it ({error})")
            return None
        if meta.table_name != name:
            self.problem(f"{member}: holds dataset {meta.table_name}, the manifest says {name}")
        for variable, label in zip(meta.column_names, meta.column_labels):
            if not NAME.fullmatch(variable):
                self.problem(f"{member}: variable name {variable!r} is not 1-8 upper-case letters, digits or _")
            if label is None or len(label) > MAX_LABEL or not label.isascii():
                self.problem(f"{member}, variable {variable}: label {label!r} breaks the 40-character ASCII limit")
        records: list[dict[str, Any]] = [{str(k): v for k, v in r.items()} for r in frame.to_dict("records")]
        if rows != len(records):
            self.problem(f"{member}: {len(records)} rows, the manifest says {rows}")
        for number, record in enumerate(records, start=1):
            for variable, value in record.items():
                if isinstance(value, str) and (not value.isascii() or len(value.encode()) > MAX_CHAR_BYTES):
                    self.problem(f"{member}, row {number}, variable {variable}: not ASCII or over 200 bytes")
        plain = [{k: _plain(v) for k, v in record.items()} for record in records]
        kinds = meta.readstat_variable_types
        variables = tuple(
            Variable(v, label or "", Kind.TEXT if kinds.get(v) == "string" else Kind.NUMBER)
            for v, label in zip(meta.column_names, meta.column_labels)
        )
        rows_read = tuple(tuple(record[v.name] for v in variables) for record in plain)
        return plain, Dataset(name, meta.file_label or "", variables, rows_read)

    def check_csv(self, member: str, path: Path, rows: list[dict[str, Any]]) -> None:
        """Each cell as the CSV writer writes the XPT's value. SAS drops text's trailing blanks, the CSV keeps
        them: both sides are compared without them."""
        import csv

        try:
            with path.open(encoding="utf-8", newline="") as file:
                read = list(csv.DictReader(file))
        except (UnicodeDecodeError, csv.Error) as error:
            self.problem(f"{member}: not readable CSV ({error})")
            return
        if len(read) != len(rows):
            self.problem(f"{member}: {len(read)} rows, its XPT has {len(rows)}")
            return
        for number, (left, right) in enumerate(zip(read, rows), start=1):
            if left.keys() != right.keys():
                self.problem(f"{member}: its columns differ from its XPT's")
                return
            for variable, value in right.items():
                cell = left[variable]
                if not isinstance(cell, str) or _csv_value(value).rstrip(" ") != cell.rstrip(" "):
                    self.problem(f"{member}, row {number}, variable {variable}: differs from its XPT")
                    return


def _attached_figures(path: Path) -> dict[str, Any]:
    """The report's report-figures.json, its stream decoded to at most _FIGURES_LIMIT bytes (a PDF stream is a
    deflate stream: a small one can decode to gigabytes). ValueError when it is absent, too large or unreadable."""
    import pikepdf

    from trialcoord.exports.report import FIGURES_FILE

    try:
        with pikepdf.open(path) as document:
            if FIGURES_FILE not in document.attachments:
                raise ValueError(f"the report carries no {FIGURES_FILE}")
            stream = document.attachments[FIGURES_FILE].obj.EF.F
            method = stream.get("/Filter")
            if stream.get("/DecodeParms") is not None or method not in (None, pikepdf.Name.FlateDecode):
                raise ValueError(f"{FIGURES_FILE} is encoded as {method}, not plain or deflate as written")
            raw = stream.read_raw_bytes()
    except (pikepdf.PdfError, KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"not a readable PDF with its figures attached: {error}") from None
    if method is None:
        decoded = raw
    else:
        inflate = zlib.decompressobj()
        decoded = inflate.decompress(raw, _FIGURES_LIMIT + 1)
    if len(decoded) > _FIGURES_LIMIT:
        raise ValueError(f"{FIGURES_FILE} decodes to over {_FIGURES_LIMIT} bytes")
    try:
        found = load_json(decoded, FIGURES_FILE, limit=_FIGURES_LIMIT)
    except InvalidInput as error:
        raise ValueError(error.problems[0].message) from None
    if not isinstance(found, dict):
        raise ValueError(f"{FIGURES_FILE} is not a JSON object")
    return found


def _plain(value: Any) -> Any:
    """pyreadstat's value as the dataset held it: a missing number or empty text is None, a whole float an int."""
    if isinstance(value, float):
        if value != value:  # NaN: SAS missing
            return None
        return int(value) if value.is_integer() else value
    return value if value != "" else None


def _csv_value(value: Any) -> str:
    """The cell transport.csv_bytes writes for the value pyreadstat read: text guarded by `inert` as there."""
    if value is None:
        return ""
    return inert(value) if isinstance(value, str) else str(value)
