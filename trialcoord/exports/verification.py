"""Checking a sponsor package offline, without the database or any private key: the manifest's signature, every
member's SHA-256 and size, each XPT's version 5 headers and the SDTM limits (read back by pyreadstat, an independent
reader), each CSV against its XPT row by row, define.xml against the datasets, and the report's figures against
the datasets (deviations per site). Every failure is named; nothing is trusted because the package says so."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from trialcoord.exports.rules.sdtm import MAX_CHAR_BYTES, MAX_LABEL, NAME, Dataset, Kind, Variable
from trialcoord.exports.writing import DEFINE, FORMAT, KEY_PEM, MANIFEST, REPORT, SIGNATURE, UNLISTED
from trialcoord.kernel import signing_keys

_MANIFEST_LIMIT = 64 << 20  # a manifest of 50,000 deviation ids is a few MB; past this it is not ours
_MEMBER_LIMIT = 8 << 30  # uncompressed bytes per member
_RATIO_LIMIT = 1_000  # uncompressed / compressed: past this, a ZIP bomb, not a dataset
_CHUNK = 1 << 20
_V5_LIBRARY = b"HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!000000000000000000000000000000  "
_V5_MEMBER = b"HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!000000000000000001600000000140  "


@dataclass
class PackageCheck:
    files_checked: int = 0
    datasets_checked: int = 0
    problems: list[str] = field(default_factory=list)
    trust: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def is_sponsor_package(path_or_file: str | Path | BinaryIO) -> bool:
    """Whether the ZIP's manifest names this format (the binder's verifier takes every other ZIP)."""
    try:
        with zipfile.ZipFile(path_or_file) as archive:
            info = archive.getinfo(MANIFEST)
            if info.file_size > _MANIFEST_LIMIT:
                return False
            return f'"format":"{FORMAT}"'.encode() in archive.read(info)
    except (KeyError, OSError, zipfile.BadZipFile, ValueError):
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
    except (OSError, zipfile.BadZipFile) as error:
        check.problems.append(f"not a readable ZIP ({error})")
    return check


@dataclass
class _Checker:
    archive: zipfile.ZipFile
    check: PackageCheck
    registry_name: str
    good: dict[str, bytes] = field(default_factory=dict)  # members whose hash matched, by name

    def problem(self, text: str) -> None:
        self.check.problems.append(text)

    def read(self, name: str, limit: int = _MEMBER_LIMIT) -> bytes | None:
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            self.problem(f"{name}: missing from the package")
            return None
        if info.file_size > limit or (info.compress_size and info.file_size / info.compress_size > _RATIO_LIMIT):
            self.problem(f"{name}: {info.file_size} bytes unpacked from {info.compress_size}: refused as a ZIP bomb")
            return None
        try:
            with self.archive.open(info) as member:
                chunks, total = [], 0
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > info.file_size:  # the header lied about the size
                        self.problem(f"{name}: longer than its ZIP header says")
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError) as error:
            self.problem(f"{name}: unreadable ({error})")
            return None

    def run(self, registry: Mapping[str, Any] | None) -> None:
        names = self.archive.namelist()
        for name in {n for n in names if names.count(n) > 1}:
            self.problem(f"{name}: stored more than once in the archive")
        raw = self.read(MANIFEST, _MANIFEST_LIMIT)
        if raw is None:
            return
        try:
            manifest = json.loads(raw)
        except (ValueError, RecursionError) as error:
            self.problem(f"{MANIFEST}: does not parse ({str(error)[:200]})")
            return
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            self.problem(f"{MANIFEST}: not a {FORMAT} manifest")
            return
        self.check_signature(raw, manifest, registry)
        files = manifest.get("files")
        entries = [e for e in files if isinstance(e, dict)] if isinstance(files, list) else []
        if not isinstance(files, list) or len(entries) != len(files):
            self.problem(f"{MANIFEST}: its file list is malformed")
        listed = {str(e.get("path")) for e in entries}
        for entry in entries:
            self.check_member(entry)
        for name in names:
            if name not in listed and name not in UNLISTED:
                self.problem(f"{name}: in the archive but not listed in the manifest")
        self.check_contents(manifest)

    def check_signature(self, raw: bytes, manifest: Mapping[str, Any], registry: Mapping[str, Any] | None) -> None:
        key_id = str(manifest.get("manifest_key_id"))
        pem, signature = self.read(KEY_PEM, 1 << 16), self.read(SIGNATURE, 1 << 16)
        if pem is None or signature is None:
            return
        try:
            public = signing_keys.public_key_hex(signing_keys.load_public_key(pem.decode("ascii")))
        except (signing_keys.SigningKeyError, UnicodeDecodeError, ValueError):
            self.problem(f"{KEY_PEM}: not an Ed25519 public key")
            return
        if registry is None:
            self.check.trust = "the package's own key only: compare manifest-key.pem with the site's signer registry"
        else:
            system = {str(k.get("key_id")): k for k in registry.get("system_keys") or [] if isinstance(k, Mapping)}
            self.check.trust = self.registry_name
            if key_id not in system:
                self.problem(f"{SIGNATURE}: signed by key {key_id}, which is not a system key in the registry")
            elif system[key_id].get("public_key") != public:
                self.problem(f"{KEY_PEM}: is not system key {key_id} of the registry")
        if signing_keys.key_id(signing_keys.load_public_key(pem.decode("ascii"))) != key_id:
            self.problem(f"{KEY_PEM}: is not key {key_id}, which the manifest names")
        if len(signature) != 64 or not signing_keys.verify_hex(public, raw, signature.hex()):
            self.problem(f"{SIGNATURE}: does not verify under key {key_id}: {MANIFEST} or its signature was altered")

    def check_member(self, entry: Mapping[str, Any]) -> None:
        name = str(entry.get("path"))
        data = self.read(name)
        if data is None:
            return
        self.check.files_checked += 1
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            self.problem(f"{name}: its SHA-256 differs from the manifest's: altered")
        elif len(data) != entry.get("size"):
            self.problem(f"{name}: {len(data)} bytes, the manifest says {entry.get('size')}")
        else:
            self.good[name] = data

    def check_contents(self, manifest: Mapping[str, Any]) -> None:
        """The formats and the agreement between members, for the members whose bytes are the signed ones."""
        frames: dict[str, list[dict[str, Any]]] = {}
        read_back: list[Dataset] = []
        listed = manifest.get("datasets")
        for entry in listed if isinstance(listed, list) else []:
            if not isinstance(entry, Mapping):
                continue
            name, xpt, csv = entry.get("name"), entry.get("xpt"), entry.get("csv")
            if not isinstance(name, str) or xpt not in self.good:
                continue
            found = self.check_xpt(name, str(xpt), self.good[str(xpt)], entry.get("rows"))
            if found is None:
                continue
            rows, data = found
            frames[name] = rows
            read_back.append(data)
            self.check.datasets_checked += 1
            if csv in self.good:
                self.check_csv(str(csv), self.good[str(csv)], rows)
        if DEFINE in self.good:
            from trialcoord.exports.define_xml import define_problems

            self.check.problems += [f"{DEFINE}: {p}" for p in define_problems(self.good[DEFINE], read_back)]
        if REPORT in self.good and "DV" in frames and "DM" in frames:
            from trialcoord.exports.report import deviations_per_site, report_figures

            try:
                stated = (report_figures(self.good[REPORT]).get("deviations") or {}).get("per_site")
            except (ValueError, AttributeError) as error:
                self.problem(f"{REPORT}: its attached figures do not read ({error})")
                return
            counted = deviations_per_site(frames["DV"], frames["DM"])
            if stated != counted:
                self.problem(f"{REPORT}: deviations per site {stated} differ from the DV dataset's {counted}")

    def check_xpt(self, name: str, member: str, data: bytes, rows: Any) -> tuple[list[dict[str, Any]], Dataset] | None:
        """The dataset as pyreadstat reads it back (rows by variable name, and as a Dataset for define.xml)."""
        if data[:80] != _V5_LIBRARY or data[240:320] != _V5_MEMBER:
            self.problem(f"{member}: not SAS transport version 5 (its library or member header differs)")
            return None
        import pyreadstat

        handle, path = tempfile.mkstemp(suffix=".xpt")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
            frame, meta = pyreadstat.read_xport(path)
        except Exception as error:  # pyreadstat raises its own ReadstatError and others on a damaged file
            self.problem(f"{member}: pyreadstat cannot read it ({error})")
            return None
        finally:
            Path(path).unlink(missing_ok=True)
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

    def check_csv(self, member: str, data: bytes, rows: list[dict[str, Any]]) -> None:
        import csv
        import io

        try:
            read = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
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
                if _csv_value(value) != left[variable].removeprefix("'"):
                    self.problem(f"{member}, row {number}, variable {variable}: differs from its XPT")
                    return


def _plain(value: Any) -> Any:
    """pyreadstat's value as the dataset held it: a missing number or empty text is None, a whole float an int."""
    if isinstance(value, float):
        if value != value:  # NaN: SAS missing
            return None
        return int(value) if value.is_integer() else value
    return value if value != "" else None


def _csv_value(value: Any) -> str:
    return "" if value is None else str(value)
