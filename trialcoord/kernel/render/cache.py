"""The render cache: renderings on disk, keyed by everything that shapes their bytes, so the same inputs are
rendered once."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from trialcoord.kernel.render.document_data import canonical_json
from trialcoord.kernel.render.docx_documents import render_docx
from trialcoord.kernel.render.fonts import FACES
from trialcoord.kernel.render.pdf_documents import render_pdf
from trialcoord.kernel.render.templates import TEMPLATE_DIR, template_named


class RenderCache:
    """Renderings on disk under the SHA-256 of everything that shapes their bytes; least recently used go first."""

    def __init__(self, directory: Path, max_bytes: int = 512 * 1024 * 1024):
        self.directory, self.max_bytes = Path(directory), max_bytes

    def key(self, kind: str, template: str, data: Mapping, *, created_at: str, title: str, version_label: str) -> str:
        template_named(template, kind)
        sources = sorted(TEMPLATE_DIR.glob("_*")) + [TEMPLATE_DIR / f"{template}.{'html' if kind == 'pdf' else kind}"]
        # the charts a template draws, the renderers (the templates' schema, the data's preparation, PDF and
        # DOCX) and the PDF writer shape its bytes too
        sources += [
            Path(__file__).with_name(name)
            for name in (
                "charts.py",
                "templates.py",
                "document_data.py",
                "pdf_documents.py",
                "docx_documents.py",
                "docx_layout.py",
                "column_widths.py",
                "chart_png.py",
                "pdf.py",
                "fonts.py",
                "glyphs.py",
            )
        ]
        files = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in sources)).hexdigest()
        # the libraries' versions too: an upgrade may lay out the same input differently (Pillow draws DOCX
        # charts); so may the fonts'
        libraries = ("weasyprint",) if kind == "pdf" else ("python-docx", "pillow")
        library = " ".join(importlib.metadata.version(name) for name in libraries)
        if kind == "pdf":
            library += "".join(f" {face.package} {importlib.metadata.version(face.package)}" for face in FACES)
        parts = [kind, library, template, files, canonical_json(data).decode(), created_at, title, version_label]
        return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()

    def render(
        self, kind: str, template: str, data: Mapping, *, created_at: str, title: str, version_label: str
    ) -> bytes:
        meta = dict(created_at=created_at, title=title, version_label=version_label)
        path = self.directory / f"{self.key(kind, template, data, **meta)}.{kind}"
        if path.exists():
            os.utime(path)  # a hit counts as a use for eviction
            return path.read_bytes()
        renderer = render_pdf if kind == "pdf" else render_docx  # looked up now, so tests can count calls
        result = renderer(template, data, **meta)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Atomic: a concurrent reader sees the whole file or none, never a half-written one.
        fd, temp = tempfile.mkstemp(dir=self.directory, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(result)
        os.replace(temp, path)
        self._evict()
        return result

    def _evict(self) -> None:
        entries = sorted((p.stat().st_mtime, p) for p in self.directory.iterdir() if not p.name.endswith(".part"))
        total = sum(p.stat().st_size for _, p in entries)
        for _, path in entries:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink(missing_ok=True)
