"""The package's `exchange.xml`: the manifest repeated in the spirit of the eTMF Exchange Mechanism Standard."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from trialcoord.documents.package_layout import EXCHANGE_FORMAT, FORMAT
from trialcoord.documents.rules.tmf import ARTIFACTS


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can carry: ElementTree escapes markup but would write control characters as they are."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return "".join(
        c if c in "\t\n\r" or (" " <= c <= "\ud7ff") or ("\ue000" <= c <= "\ufffd") or c >= "\U00010000" else "\ufffd"
        for c in text
    )


def _attrs(**values: Any) -> dict[str, str]:
    return {k: _xml_text(v) for k, v in values.items() if v is not None}


def exchange_xml(manifest: Mapping) -> bytes:
    scope = manifest["scope"]
    root = ET.Element(
        "etmf-exchange",
        _attrs(
            format=EXCHANGE_FORMAT,
            manifest=FORMAT,
            generated_at=manifest["generated_at"],
            manifest_key_id=manifest["manifest_key_id"],
        ),
    )
    ET.SubElement(root, "trial", _attrs(study=scope["study"], site=scope["site"]))
    listing = ET.SubElement(root, "files")
    for entry in manifest["files"]:
        art = dict(entry.get("artifact") or {})
        known = ARTIFACTS.get(str(art.get("unique_id")))
        element = ET.SubElement(
            listing,
            "file",
            _attrs(
                path=entry["path"],
                sha256=entry["sha256"],
                size=entry["size"],
                media_type=entry["media_type"],
                kind=entry.get("kind"),
            ),
        )
        ET.SubElement(
            element,
            "artifact",
            _attrs(
                unique_id=art.get("unique_id"),
                number=art.get("number"),
                name=art.get("name"),
                zone=art.get("zone") or (known.zone if known else None),
                section=art.get("section") or (known.section if known else None),
            ),
        )
        ET.SubElement(element, "location", _attrs(study=entry.get("study"), site=entry.get("site")))
        ET.SubElement(element, "document", _attrs(name=entry.get("document")))
        ET.SubElement(
            element,
            "version",
            _attrs(
                label=entry.get("label"),
                status=entry.get("status"),
                effective_on=entry.get("effective_on"),
                author=entry.get("author"),
                created_at=entry.get("created_at"),
            ),
        )
        signed = ET.SubElement(element, "signatures")
        for s in entry.get("signatures") or []:
            ET.SubElement(
                signed,
                "signature",
                _attrs(
                    signer_id=s.get("signer_id"),
                    printed_name=s.get("printed_name"),
                    meaning=s.get("meaning"),
                    instant=s.get("instant"),
                    key_id=s.get("key_id"),
                    version_sha256=s.get("version_sha256"),
                    record=s.get("record"),
                    value=s.get("signature"),
                ),
            )
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
