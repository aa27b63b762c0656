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
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Optional
from urllib.parse import quote

from litestar import Controller, get, post
from litestar.exceptions import ValidationException
from litestar.params import FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from trialcoord.deviations import detection, deviation_review, queue
from trialcoord.deviations.bulk_review import BULK_STEPS
from trialcoord.deviations.queue import DeviationReview
from trialcoord.deviations.records import Deviation
from trialcoord.deviations.rules.deviation_review import CATEGORIES, SUBCATEGORIES, TRANSITIONS, Step
from trialcoord.deviations.rules.deviations import Classification
from trialcoord.kernel.problems import InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.denials import DENY_UNSEEN
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.paging import Page, PageRequest, page_request
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols
from trialcoord.scheduling.sites import list_sites

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
RECORD = needs(Action.RECORD_DEVIATION, across_sites=True)
REVIEW = needs(Action.REVIEW_DEVIATION, across_sites=True)
States = Annotated[list[str] | None, QueryParameter(name="state")]  # `state` is litestar's own name
Form = URLEncodedBody[dict[str, str | list[str]]]  # the queue's checkboxes repeat `ids`
Size = FromQuery[Optional[int]]  # noqa: UP045 (see params.py)
CLASSIFICATIONS = [(str(c), str(c).replace("_", " ")) for c in Classification]
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
    exception_handlers = DENY_UNSEEN  # another site's record and a missing one: the same 403
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
        kind: QueryStr = None,
        classification: QueryStr = None,
        q: QueryStr = None,
        min_age: QueryStr = None,
        sort: QueryStr = None,
        order: QueryStr = None,
        after: QueryStr = None,
        size: Size = None,
        ran: QueryStr = None,
        acknowledged: QueryStr = None,
        done: QueryStr = None,
    ) -> Template:
        request = page_request(sort, order, after, size, sorts=tuple(queue.SORTS), default="detected", key_width=2)
        filters = QueueFilters(site, states, category, kind, classification, q, min_age)
        context = await queue_context(study, access, today, filters, request)
        count = whole_number(acknowledged or "")
        context["notice"] = (
            _ran_notice(ran) or (f"Acknowledged {count}." if count is not None else None) or _done_notice(done)
        )
        return Template("deviations.html", context=context, status_code=400 if context["errors"] else 200)

    @post("/deviations/detect", opt=RECORD)
    async def detect(self, study: StudyPath, access: AccessDep, today: Today) -> Redirect:
        result = await detection.detect(study, today, actor=access.user_id, today=today)
        counts = "-".join(str(n) for n in (result.created, result.updated, result.resolved, result.reopened))
        return Redirect(f"{queue_url(study)}?ran={counts}", status_code=303)

    @post("/deviations/acknowledge", opt=REVIEW)
    async def acknowledge(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        """Bulk acknowledgement: each chosen deviation on its own; the refused ones are listed with why."""
        chosen = chosen_ids(data)
        if not chosen:
            context = await queue_context(study, access, today)
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
        context = await queue_context(study, access, today)
        context.update(acknowledged=done.acknowledged, refused=refused)
        return Template("deviations.html", context=context, status_code=200 if done.acknowledged else 422)


# The queue ----------------------------------------------------------------------------------------


def queue_url(study: str) -> str:
    return f"/studies/{quote(study, safe='')}/deviations"


def visible_sites(access: Access) -> frozenset[str] | None:
    """The sites the reader's listing may show (None: all)."""
    return None if access.sites is None or access.sites.all_sites else access.sites.sites


def check_cursor(request: PageRequest, numeric: Collection[str]) -> None:
    """A list computed in memory compares cursors with its rows: one whose values are not of its sort's types
    (numbers for the `numeric` sorts, else text or none) is refused, 400 naming `after`."""
    if request.after is None:
        return
    value, row_id = request.after
    number = isinstance(value, int) and not isinstance(value, bool)
    fits = number if request.sort in numeric else value is None or isinstance(value, str)
    if not (fits and isinstance(row_id, int) and not isinstance(row_id, bool)):
        message = "after: not a cursor of this list (follow the page's Next link)"
        raise ValidationException(message, extra=[{"key": "after", "message": message}])


def chosen_ids(data: dict[str, str | list[str]]) -> list[str]:
    """The queue's checked rows (the checkboxes repeat `ids`)."""
    chosen = data.get("ids") or []
    return [chosen] if isinstance(chosen, str) else chosen


def _ran_notice(ran: str | None) -> str | None:
    counts = re.fullmatch(r"(\d{1,9})-(\d{1,9})-(\d{1,9})-(\d{1,9})", ran or "")
    if not counts:
        return None
    created, updated, resolved, reopened = counts.groups()
    return f"Detection ran: {created} created, {updated} updated, {resolved} resolved, {reopened} reopened."


def _done_notice(done: str | None) -> str | None:
    """After a bulk step: `STEP-COUNT`."""
    found = re.fullmatch(r"(respond|classify|close)-(\d{1,4})", done or "")
    if not found:
        return None
    step, count = found.groups()
    return f"{BULK_NOTICES[step]} {count} deviation{'s' if count != '1' else ''}."


BULK_NOTICES = {"respond": "Response recorded for", "classify": "Classified and signed", "close": "Closed and signed"}


@dataclass(frozen=True)
class QueueFilters:
    """The queue's filters as the form sends them (text; checked in `queue_context`)."""

    site: str | None = None
    states: list[str] | None = None
    category: str | None = None
    kind: str | None = None
    classification: str | None = None
    q: str | None = None
    min_age: str | None = None

    def params(self) -> dict[str, Any]:
        """For the links of the page: every filter given."""
        single = {
            "site": self.site,
            "category": self.category,
            "kind": self.kind,
            "classification": self.classification,
            "q": self.q,
            "min_age": self.min_age,
        }
        states = ",".join(self.chosen_states())  # one parameter in links (the form's checkboxes repeat it)
        return {**{k: v for k, v in single.items() if v}, **({"state": states} if states else {})}

    def chosen_states(self) -> list[str]:
        return [one for given in self.states or [] for one in given.split(",") if one]


async def queue_context(
    study: str,
    access: Access,
    today: date,
    filters: QueueFilters | None = None,
    request: PageRequest | None = None,
) -> dict[str, Any]:
    filters = filters or QueueFilters()
    request = request or page_request(None, None, None, None, sorts=tuple(queue.SORTS), default="detected", key_width=2)
    errors: dict[str, str] = {}
    states = filters.chosen_states()
    if any(s not in queue.STATES for s in states):
        errors["state"] = f"Choose states from the list ({', '.join(queue.STATES)})."
    if filters.category and filters.category not in CATEGORIES:
        errors["category"] = "Choose a category from the list."
    if filters.kind and filters.kind not in queue.KINDS:
        errors["kind"] = "Choose a kind from the list."
    if filters.classification and filters.classification not in {c for c, _ in CLASSIFICATIONS}:
        errors["classification"] = "Choose a classification from the list."
    if filters.q and len(filters.q) > 64:
        errors["q"] = "Enter at most 64 characters: a deviation number or part of a participant's ID."
    age = whole_number(filters.min_age, 5) if filters.min_age else None
    if filters.min_age and age is None:
        errors["min_age"] = "Enter the minimum age as a whole number of days, such as 14."
    page: Page[Deviation] = Page([], request, None, request.after is None)
    total = 0
    if not errors:
        chosen = queue.QueueFilter(
            tuple(states),
            visible_sites(access),
            filters.category or None,
            filters.kind or None,
            filters.classification or None,
            filters.q or None,
            min_age_days=age,
            as_of=today,
        )
        try:
            page, total = await queue.queue_page(study, chosen, request)
        except InvalidInput as error:  # a cursor of another sort
            errors.update(field_messages(error))
    sites = [row.code for row in await list_sites(study) if access.shows(row.code)]
    steps = {  # the bulk steps the reader may take at one of the sites they see
        str(step): any(all(access.may(a, study, s, today) for a in TRANSITIONS[step].needs) for s in sites)
        for step in (Step.ACKNOWLEDGE, *BULK_STEPS)
    }
    params = filters.params()
    return {
        "study": await protocols.get_study(study),
        "page": page,
        "rows": page.rows,
        "total": total,
        "base": queue_url(study),
        "params": params,
        "ages": {row.id: queue.age_days(row, today) for row in page.rows},
        "sites": [(code, f"site {code}") for code in sites],
        "site": filters.site or "",
        "states": [(s, s.replace("_", " ")) for s in queue.STATES],
        "chosen_states": states,
        "categories": [(c, c) for c in CATEGORIES],
        "category": filters.category or "",
        "kinds": [(k, k.replace("_", " ")) for k in queue.KINDS],
        "kind": filters.kind or "",
        "classifications": CLASSIFICATIONS,
        "classification": filters.classification or "",
        "subcategories": SUBCATEGORIES,
        "q": filters.q or "",
        "min_age": filters.min_age or "",
        "errors": errors,
        "acknowledged": [],
        "refused": {},
        "notice": None,
        "bulk": {"step": "", "errors": {}, "form": {}, "chosen": []},
        "steps": steps,
        "can_choose": any(steps.values()),
        "can_acknowledge": steps[str(Step.ACKNOWLEDGE)],
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
