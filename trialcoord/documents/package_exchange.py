"""The package's `exchange.xml`: an eTMF Exchange Mechanism Standard (EMS) 1.0 `BATCH` of the binder.

One OBJECT per document version, one FILE per package file (the version, its signature page, its PAdES copy)
with its Subresource Integrity value, the version's electronic signatures and its audit records. The element
names, order and value formats follow `TmfReferenceModelExchange.xsd` of github.com/TmfRef/exchange-framework
(namespace https://tmfrefmodel.com/ems); docs/documents.md says what is mapped how. Same manifest, same bytes.
"""

from __future__ import annotations

import base64
import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote

from trialcoord.documents.rules.documents import DocumentKey, record_id

NAMESPACE = "https://tmfrefmodel.com/ems"
SPECIFICATION = "trialcoord-binder-exchange/2"  # SPECIFICATIONID: the agreement this batch follows (docs)
SOURCE = "trialcoord"  # TRANSFERSOURCEID
TMF_RM_VERSION = "3.3"  # the model of rules/tmf.py (v3.3.1); the XSD types TMFRMVERSION as a decimal
# trialcoord's version status -> EMS OBJECTVERSIONSTATE (Current, Superseded, Obsolete). EMS has no state for a
# version not yet in force: a draft, in review or approved version is the object's current iteration, and its
# exact status rides in METADATA STATUS.
VERSION_STATE = {
    "draft": "Current",
    "in_review": "Current",
    "approved": "Current",
    "effective": "Current",
    "superseded": "Superseded",
    "expired": "Obsolete",
}
AUDIT_TYPE = {"create": "New", "update": "Change", "delete": "Delete"}  # anything else (sign): Other
FILE_DESCRIPTION = {
    "version": "Record",
    "signature_page": "Signature page: the electronic signatures of the record, printed",
    "pades_signed": "PAdES copy: the record with its signatures embedded",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can carry: ElementTree escapes markup but would write control characters as they are."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "".join(
        c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000" else "\ufffd"
        for c in text
    )


def sri(sha256_hex: str) -> str:
    """The W3C Subresource Integrity form of a SHA-256: `sha256-` and the base64 of the 32 digest bytes."""
    return "sha256-" + base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def sri_hex(integrity: str) -> str | None:
    """The SHA-256 (hex) an SRI `sha256-` value states; None for anything else."""
    if not integrity.startswith("sha256-"):
        return None
    try:
        digest = base64.b64decode(integrity[7:], validate=True)
    except ValueError:
        return None
    return digest.hex() if len(digest) == 32 else None


def ems_date(value: str) -> str:
    """DD-MON-YYYY (20-JAN-2019) from an ISO date or instant."""
    day = date.fromisoformat(value[:10])
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year:04d}"


def _add(parent: ET.Element, tag: str, value: Any) -> None:
    if value is not None and value != "":
        ET.SubElement(parent, tag).text = _xml_text(value)


def _audit(meta: Mapping, record: str) -> list[dict[str, Any]]:
    """The version's audit records: the trail's entries the export collected (`audit`), else what the manifest
    itself holds (its creation and its signatures; status steps carry no actor or time without the trail)."""
    if meta.get("audit") is not None:
        return list(meta["audit"])
    created = {"id": f"{record}#created", "at": meta.get("created_at"), "actor": meta.get("author"), "action": "create"}
    derived = [created] + [
        {
            "id": f"{record}#signature-{n}",
            "at": s.get("instant"),
            "actor": s.get("signer_id"),
            "action": "sign",
            "event": f"signed: {s.get('meaning')}",
        }
        for n, s in enumerate(meta.get("signatures") or [], 1)
    ]
    return [d for d in derived if d["at"] and d["actor"]]


def _file(parent: ET.Element, entry: Mapping, record: str) -> None:
    element = ET.SubElement(parent, "FILE")
    _add(element, "INTEGRITY", sri(entry["sha256"]))
    _add(element, "FILENAME", entry["path"].rsplit("/", 1)[-1])
    _add(element, "CONTENTURL", quote(entry["path"], safe="/"))  # the member's path, as a relative URI
    _add(element, "FILEDESCRIPTION", FILE_DESCRIPTION.get(str(entry.get("kind")), "Record"))
    if entry.get("kind", "version") != "version":
        return  # the signatures and the trail are the version's: its FILE carries them
    for s in entry.get("signatures") or []:
        signed = ET.SubElement(element, "SIGNATURE")
        _add(signed, "SIGNATUREMETHODOLOGY", "Digital")  # an Ed25519 signature by the signer's own key
        _add(signed, "USEROID", s.get("signer_id"))
        _add(signed, "SIGNATURENAME", s.get("printed_name"))
        _add(signed, "SIGNATUREDATETIME", s.get("instant"))
        _add(signed, "SIGNATUREREASON", s.get("meaning"))
    for a in _audit(entry, record):
        audited = ET.SubElement(element, "AUDITRECORD")
        _add(audited, "AUDITID", a["id"])
        _add(audited, "DATETIMESTAMP", a["at"])
        _add(audited, "USERREF", a["actor"])
        _add(audited, "AUDITENTRYTYPE", AUDIT_TYPE.get(str(a.get("action")), "Other"))
        _add(audited, "AUDITEVENT", a.get("event") or a.get("action"))


def _object(batch: ET.Element, entries: Sequence[Mapping]) -> None:
    meta = next((e for e in entries if e.get("kind", "version") == "version"), entries[0])
    status = meta.get("status")
    if status not in VERSION_STATE:
        raise ValueError(
            f"{meta['path']}: version status {status!r} has no EMS version state (one of {', '.join(VERSION_STATE)})"
        )
    site, art = meta.get("site") or None, meta.get("artifact") or {}
    record = record_id(DocumentKey(meta["study"], site, meta["document"]), meta["label"])
    element = ET.SubElement(batch, "OBJECT")
    _add(element, "OBJECTID", record_id(DocumentKey(meta["study"], site, meta["document"])))
    _add(element, "OBJECTLEVEL", "Site" if site else "Trial")
    _add(element, "SITEID", site)
    _add(element, "UNIQUEID", art.get("unique_id"))
    _add(element, "ARTIFACTNUMBER", art.get("number"))
    _add(element, "OBJECTVERSION", meta["label"])
    _add(element, "OBJECTVERSIONSTATE", VERSION_STATE[status])
    _add(element, "OBJECTTITLE", meta["document"])
    _add(element, "OBJECTCOPY", "No")  # the records themselves: the bytes the signatures sign
    dated = meta.get("effective_on") or meta.get("created_at")
    if dated:
        _add(element, "ARTIFACTDATE", ems_date(dated))
        _add(element, "DATEDESCRIPTION", "Effective date" if meta.get("effective_on") else "Date filed")
    for entry in entries:
        _file(element, entry, record)
    ET.SubElement(element, "METADATA", {"NAME": "STATUS"}).text = status


def exchange_xml(manifest: Mapping) -> bytes:
    scope = manifest["scope"]
    stamp = "".join(c for c in manifest["generated_at"] if c.isdigit())[:14]  # 20160413140025, as the spec's
    batch = ET.Element(
        "BATCH",
        {  # the namespace as a plain default declaration: no prefix, no global ElementTree registration
            "xmlns": NAMESPACE,
            "STUDYSYSTEMID": _xml_text(scope["study"]),
            "STUDYID": _xml_text(scope["study"]),
            "TRANSFERSOURCEID": _xml_text(f"{SOURCE}:{scope['site']}" if scope.get("site") else SOURCE),
            "TRANSFERID": stamp,
            "SPECIFICATIONID": SPECIFICATION,
            "TMFRMVERSION": TMF_RM_VERSION,
        },
    )
    versions: dict[tuple, list[Mapping]] = {}
    for entry in manifest["files"]:  # sorted by path: a version's files stay in that order
        key = tuple(str(entry.get(k) or "") for k in ("study", "site", "document", "label"))
        versions.setdefault(key, []).append(entry)
    for key in sorted(versions):
        _object(batch, versions[key])
    ET.indent(batch)
    return ET.tostring(batch, encoding="UTF-8", xml_declaration=True) + b"\n"
