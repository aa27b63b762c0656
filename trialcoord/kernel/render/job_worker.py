"""The worker process of the render jobs: it renders a job's document and forwards WeasyPrint's progress to the
web process."""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, Literal

from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.render.cache import RenderCache
from trialcoord.kernel.render.docx_documents import render_docx
from trialcoord.kernel.render.pdf_documents import render_pdf

# WeasyPrint reports each rendering step on its `weasyprint.progress` logger ("Step 5 - Creating layout -
# Page 12"); the worker forwards them to the web process as (job ID, step, page) on a multiprocessing queue.
# Step 0 is ours: the worker has taken the job.
_STEP = re.compile(r"Step (\d+) - (?:Creating layout - Page (\d+))?")
_worker_queue: Any = None
_worker_job: str | None = None


class _ForwardProgress(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        found = _STEP.match(record.getMessage())
        if found and _worker_job is not None:
            _worker_queue.put((_worker_job, int(found[1]), int(found[2]) if found[2] else None))


def start_worker(queue: Any) -> None:
    global _worker_queue
    _worker_queue = queue
    progress = logging.getLogger("weasyprint.progress")
    progress.setLevel(logging.INFO)
    progress.addHandler(_ForwardProgress())
    progress.propagate = False  # the web process shows progress; the worker's stderr stays quiet
    import weasyprint  # noqa: F401  -- paid once by the worker, not by its first job


# ("done", bytes, None), ("invalid", problems, None) or ("error", exception name, traceback)
Outcome = tuple[Literal["done"], bytes, None] | tuple[Literal["invalid", "error"], str, str | None]


def render_in_worker(
    job_id: str, kind: str, template: str, data: dict[str, Any], meta: dict[str, str], cache: RenderCache | None
) -> Outcome:
    """("done", bytes, None), ("invalid", problems, None) or ("error", exception name, traceback).

    Exceptions come back as values: InvalidInput would not unpickle intact (it is built from its problems).
    """
    global _worker_job
    _worker_job = job_id
    _worker_queue.put((job_id, 0, None))
    try:
        if cache is not None:
            return "done", cache.render(kind, template, data, **meta), None
        render = render_pdf if kind == "pdf" else render_docx
        return "done", render(template, data, **meta), None
    except InvalidInput as error:  # a name the template uses beyond its schema
        return "invalid", "; ".join(map(str, error.problems)), None
    except Exception as error:  # noqa: BLE001 -- reported to the web process, which logs the traceback
        return "error", type(error).__name__, traceback.format_exc()
    finally:
        _worker_job = None
