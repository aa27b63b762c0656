"""Uploaded Word files that unpack to far more than they weigh (issue 17): a bomb is refused from its archive's
directory with a named problem, and what passes the archive checks is parsed in the memory-capped worker
(kernel/isolation.py), so the server's own memory stays where it was."""

from __future__ import annotations

import base64
import io
import os
import resource
import zipfile

import pytest

from tests.integration.test_documents import ICF
from trialcoord.documents import documents
from trialcoord.kernel import isolation
from trialcoord.kernel.problems import InvalidInput

pytestmark = pytest.mark.anyio
MiB = 1 << 20


def word(paragraphs: bytes = b"", *, padding: int = 0) -> bytes:
    """A Word file python-docx reads: `paragraphs` in its body, then `padding` bytes of empty paragraphs
    (compressed as it is written, a MiB at a time: the bomb is never whole in the test's memory)."""
    from docx import Document

    base = io.BytesIO()
    Document().save(base)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base.getvalue())) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for info in source.infolist():
            data = source.read(info)
            if info.filename != "word/document.xml":
                z.writestr(info.filename, data)
                continue
            head, tail = data.split(b"<w:body>")
            with z.open("word/document.xml", "w", force_zip64=True) as member:
                member.write(head + b"<w:body>" + paragraphs)
                for _ in range(padding // MiB):
                    member.write(_EMPTY * (MiB // len(_EMPTY)))
                member.write(tail)
    return out.getvalue()


_EMPTY = b"<w:p/>"  # 6 bytes of XML, a parsed element of ~100: the attack run's 1.4 GiB


def peak_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_a_word_file_unpacking_to_95_mib_is_refused_by_the_api_and_the_server_stays_small(anonymous, personas):
    from tests.conftest import signed_in

    bomb = word(padding=95 * MiB)
    assert len(bomb) < 300 * 1024  # 284 KiB in the attack run
    before = peak_kib()
    coord = await signed_in(anonymous, "coord-a")
    body = {"name": "PI CV", "site": "101", "artifact": "087", "label": "1", "file_name": "cv.docx"}
    refused = await coord.post(
        "/api/studies/TST-1/documents", json={**body, "content": base64.b64encode(bomb).decode()}
    )
    assert refused.status_code == 422, refused.text
    (error,) = refused.json()["errors"]
    assert error["field"] == "file"  # the API's errors name the request field; the file is the one sent in it
    assert "word/document.xml: unpacks at over 100:1" in error["message"] and "ZIP bomb" in error["message"]
    assert peak_kib() - before < 100 * 1024  # the attack run's server grew by 1.4 GiB
    assert (await coord.get("/api/studies/TST-1/documents")).json() == []
    fine = await coord.post("/api/studies/TST-1/documents", json={**body, "content": base64.b64encode(word()).decode()})
    assert fine.status_code == 201, fine.text


async def test_a_word_file_that_needs_more_memory_than_the_worker_has_is_a_named_problem(study, monkeypatch):
    """Passes the archive checks (it deflates 8:1), but parsing it takes ~110 MiB: past a 100 MiB cap."""
    paragraphs = b"".join(b"<w:p><w:r><w:t>%s</w:t></w:r></w:p>" % os.urandom(3).hex().encode() for _ in range(200_000))
    heavy = word(paragraphs)
    monkeypatch.setattr(isolation, "MEMORY_LIMIT", 100 * MiB)
    try:
        with pytest.raises(InvalidInput) as refused:
            await documents.add_version(ICF, "040", "1.0", heavy, "icf.docx")
    finally:
        monkeypatch.undo()
        isolation.shutdown()  # the next file's worker has the usual cap
    (problem,) = refused.value.problems
    assert (problem.file, problem.field) == ("icf.docx", "file")
    assert problem.message == "reading it needs more than the 100 MiB of memory a file may take"
    assert await documents.list_documents("TST-1") == []
    added = await documents.add_version(ICF, "040", "1.0", heavy, "icf.docx")  # under the usual cap it reads
    assert added.media_type == documents.DOCX


def _allocate(size: int) -> int:
    return len(bytearray(size))


def test_the_worker_survives_a_memory_error_and_serves_the_next_file():
    with pytest.raises(InvalidInput, match="x.docx: reading it needs more than the 200 MiB"):
        isolation.run_isolated(_allocate, 1 << 30, file="x.docx", limit=200 * MiB)
    assert isolation.run_isolated(_allocate, MiB, file="x.docx", limit=200 * MiB) == MiB
    isolation.shutdown()
