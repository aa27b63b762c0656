"""Pages: the deviation queue (its filters and pages, detection runs, several deviations acknowledged at once);
and what the deviation's and CAPA pages share with it (the guards, the posted form, the notices after a write,
the sites a reader sees, a deviation the reader may see).

Reading needs `view_schedule` (every role of the study sees coded deviation data), filtered to the reader's
sites; a deviation the reader may not see answers 404 with the words of a missing one, as the API does. Each
write keeps its own action: detection runs need `record_deviation`, acknowledging `review_deviation`. A form is
shown only to a reader who may use it.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from litestar import Controller, get, post
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from trialcoord.deviations import detection, deviation_review, queue
from trialcoord.deviations.queue import DeviationReview
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.rules.deviation_review import CATEGORIES, Step
from trialcoord.kernel.problems import NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.forms import whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

PAGE_SIZE = 50
VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
RECORD = needs(Action.RECORD_DEVIATION, across_sites=True)
REVIEW = needs(Action.REVIEW_DEVIATION, across_sites=True)
States = Annotated[list[str] | None, QueryParameter(name="state")]  # `state` is litestar's own name
Form = URLEncodedBody[dict[str, str | list[str]]]  # the queue's checkboxes repeat `ids`
NOTICES = {
    str(Step.RESPOND): "Response recorded.",
    str(Step.ACKNOWLEDGE): "Acknowledged: under monitor review.",
    str(Step.CLASSIFY): "Classified and signed (review).",
    str(Step.CLOSE): "Closed and signed (approval).",
    str(Step.REOPEN): "Reopened.",
    "recorded": "Deviation recorded.",
    "created": "CAPA record created.",
    "closed": "CAPA record closed.",
}


class QueuePages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False

    @get("/deviations", opt=VIEW)
    async def queue(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        site: QueryStr = None,
        states: States = None,
        category: QueryStr = None,
        min_age: QueryStr = None,
        page: QueryStr = None,
        ran: QueryStr = None,
        acknowledged: QueryStr = None,
    ) -> Template:
        context = await _queue_context(study, access, today, site, states, category, min_age, page)
        count = whole_number(acknowledged or "")
        context["notice"] = _ran_notice(ran) or (f"Acknowledged {count}." if count is not None else None)
        return Template("deviations.html", context=context, status_code=400 if context["errors"] else 200)

    @post("/deviations/detect", opt=RECORD)
    async def detect(self, study: StudyPath, access: AccessDep, today: Today) -> Redirect:
        result = await detection.detect(study, today, actor=access.user_id, today=today)
        counts = "-".join(str(n) for n in (result.created, result.updated, result.resolved, result.reopened))
        return Redirect(f"{queue_url(study)}?ran={counts}", status_code=303)

    @post("/deviations/acknowledge", opt=REVIEW)
    async def acknowledge(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        """Bulk acknowledgement: each chosen deviation on its own; the refused ones are listed with why."""
        chosen = data.get("ids") or []
        chosen = [chosen] if isinstance(chosen, str) else chosen
        if not chosen:
            context = await _queue_context(study, access, today, None, None, None, None, None)
            context["errors"] = {"ids": "Choose at least one deviation to acknowledge."}
            return Template("deviations.html", context=context, status_code=422)
        refused: dict[str, str] = {}
        mine: list[int] = []
        for raw in dict.fromkeys(chosen):
            number = whole_number(raw)
            if number is None:
                refused[raw] = f"'{raw}' is not a deviation number"
                continue
            try:  # the route's scope: the sites where the reader reviews
                mine.append((await visible_deviation(study, number, access)).id)
            except NotFound as error:
                refused[raw] = str(error)
        done = (
            await deviation_review.acknowledge_many(study, mine, access.user_id)
            if mine
            else deviation_review.Acknowledgement([], {})
        )
        refused.update({str(k): v for k, v in done.refused.items()})
        if not refused:
            return Redirect(f"{queue_url(study)}?acknowledged={len(done.acknowledged)}", status_code=303)
        context = await _queue_context(study, access, today, None, None, None, None, None)
        context.update(acknowledged=done.acknowledged, refused=refused)
        return Template("deviations.html", context=context, status_code=200 if done.acknowledged else 422)


# The queue ----------------------------------------------------------------------------------------


def queue_url(study: str) -> str:
    return f"/studies/{quote(study, safe='')}/deviations"


def visible_sites(access: Access) -> frozenset[str] | None:
    """The sites the reader's listing may show (None: all)."""
    return None if access.sites is None or access.sites.all_sites else access.sites.sites


def _ran_notice(ran: str | None) -> str | None:
    counts = re.fullmatch(r"(\d{1,9})-(\d{1,9})-(\d{1,9})-(\d{1,9})", ran or "")
    if not counts:
        return None
    created, updated, resolved, reopened = counts.groups()
    return f"Detection ran: {created} created, {updated} updated, {resolved} resolved, {reopened} reopened."


async def _queue_context(
    study: str,
    access: Access,
    today: date,
    site: str | None,
    states: list[str] | None,
    category: str | None,
    min_age: str | None,
    page: str | None,
) -> dict[str, Any]:
    errors: dict[str, str] = {}
    states = [s for s in states or [] if s]
    if any(s not in queue.STATES for s in states):
        errors["state"] = f"Choose states from the list ({', '.join(queue.STATES)})."
    if category and category not in CATEGORIES:
        errors["category"] = "Choose a category from the list."
    age = whole_number(min_age, 5) if min_age else None
    if min_age and age is None:
        errors["min_age"] = "Enter the minimum age as a whole number of days, such as 14."
    number = whole_number(page, 6) if page else 1
    if not number:
        errors["page"] = "The page number must be a whole number from 1."
        number = 1
    rows: list[Deviation] = []
    total = 0
    if not errors:

        async def listed(n: int) -> tuple[list[Deviation], int]:
            return await queue.listing(
                study,
                states=states or None,
                sites=visible_sites(access),
                category=category or None,
                min_age_days=age,
                as_of=today,
                limit=PAGE_SIZE,
                offset=(n - 1) * PAGE_SIZE,
            )

        rows, total = await listed(number)
        last = max(1, -(-total // PAGE_SIZE))
        if number > last:  # past the end (an old link, fewer deviations now): the last page
            number = last
            rows, total = await listed(number)
    filters = [
        ("site", site or ""),
        *(("state", s) for s in states),
        ("category", category or ""),
        ("min_age", min_age or ""),
    ]
    kept = [(k, v) for k, v in filters if v]

    def link(n: int) -> str:
        return f"{queue_url(study)}?{urlencode([*kept, ('page', n)], quote_via=quote)}"

    pages = max(1, -(-total // PAGE_SIZE))
    sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
    return {
        "study": await protocols.get_study(study),
        "rows": rows,
        "total": total,
        "page": number,
        "pages": pages,
        "prev_url": link(number - 1) if number > 1 else None,
        "next_url": link(number + 1) if number < pages else None,
        "ages": {row.id: queue.age_days(row, today) for row in rows},
        "sites": [(code, f"site {code}") for code in sites],
        "site": site or "",
        "states": [(s, s.replace("_", " ")) for s in queue.STATES],
        "chosen_states": states,
        "categories": [(c, c) for c in CATEGORIES],
        "category": category or "",
        "min_age": min_age or "",
        "errors": errors,
        "acknowledged": [],
        "refused": {},
        "notice": None,
        "can_acknowledge": any(access.may(Action.REVIEW_DEVIATION, study, s, today) for s in sites),
        "can_detect": any(access.may(Action.RECORD_DEVIATION, study, s, today) for s in sites),
    }


# One deviation ------------------------------------------------------------------------------------


async def visible_deviation(study: str, deviation_id: int, access: Access) -> DeviationReview:
    """The deviation, if it is at one of the sites of the route's scope; else 404 as for a missing one (IDs
    are sequential: a 403 would tell which exist)."""
    row = await queue.get(study, deviation_id)
    if not access.shows(row.site):
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    return row


def renamed(errors: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    """A use case's messages by field, under the names of the form's fields (`names`: a field -> the form's)."""
    return {names.get(k, k): v for k, v in errors.items()}
