"""Pages: the deviation queue, one deviation with its participant's timeline and review steps, CAPA.

Reading needs `view_schedule` (every role of the study sees coded deviation data), filtered to the reader's
sites; a deviation or CAPA record the reader may not see answers 404 with the words of a missing one, as the
API does. Each write keeps its own action: detection runs and CAPA need `record_deviation`; each review step
has its own route guarded by the step's action, checked again at the deviation's site; classification and
closure run the signing ceremony (password, and the user ID at the first signing). A form is shown only to
a reader who may use it.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import PathParameter, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template

from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.deviations import detection, deviation_review, queue
from trialcoord.deviations.rules.deviation_review import CATEGORIES, SUBCATEGORIES, TRANSITIONS, Step, check_step
from trialcoord.deviations.rules.deviations import Classification
from trialcoord.documents.rules.signatures import local_time
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import field_messages
from trialcoord.kernel.web.forms import FormReader, whole_number
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, QueryStr, StudyPath, Today
from trialcoord.scheduling import protocols, worklists
from trialcoord.scheduling.sites import list_sites
from trialcoord.scheduling.timeline import build_timeline
from trialcoord.scheduling.visit_rows import visit_row

PAGE_SIZE = 50
VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
RECORD = needs(Action.RECORD_DEVIATION, across_sites=True)
REVIEW = needs(Action.REVIEW_DEVIATION, across_sites=True)
SIGNED_REVIEW = needs(Action.REVIEW_DEVIATION, Action.SIGN, across_sites=True)  # SIGN checked at the site below
DeviationPath = Annotated[int, PathParameter(description="Deviation number", ge=1, le=2**31 - 1)]  # int32 column
CapaPath = Annotated[int, PathParameter(description="CAPA record number", ge=1, le=2**31 - 1)]
OWNER_LENGTH = 64  # as the API's owner (a code)
States = Annotated[list[str] | None, QueryParameter(name="state")]  # `state` is litestar's own name
Form = URLEncodedBody[dict[str, str | list[str]]]  # the queue's checkboxes repeat `ids`
CLASSIFICATIONS = [(str(c), str(c).replace("_", " ")) for c in Classification]
STEP_FIELDS = {  # the fields each step's form shows; a message for any other goes above the form
    Step.RESPOND: {"reason", "corrective_action"},
    Step.ACKNOWLEDGE: set(),
    Step.REOPEN: {"reason"},
    Step.CLASSIFY: {"classification", "category", "subcategory", "user_id", "password"},
    Step.CLOSE: {"user_id", "password"},
}
NOTICES = {
    str(Step.RESPOND): "Response recorded.",
    str(Step.ACKNOWLEDGE): "Acknowledged: under monitor review.",
    str(Step.CLASSIFY): "Classified and signed (review).",
    str(Step.CLOSE): "Closed and signed (approval).",
    str(Step.REOPEN): "Reopened.",
    "created": "CAPA record created.",
    "closed": "CAPA record closed.",
}


class DeviationPages(Controller):
    path = "/studies/{study:str}"
    include_in_schema = False

    # The queue --------------------------------------------------------------------------------

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
        counts = "-".join(str(result[k]) for k in ("created", "updated", "resolved", "reopened"))
        return Redirect(f"{_queue_url(study)}?ran={counts}", status_code=303)

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
        mine = []
        for raw in dict.fromkeys(chosen):
            number = whole_number(raw)
            if number is None:
                refused[raw] = f"'{raw}' is not a deviation number"
                continue
            try:  # the route's scope: the sites where the reader reviews
                mine.append((await _visible(study, number, access))["id"])
            except NotFound as error:
                refused[raw] = str(error)
        done = (
            await deviation_review.acknowledge_many(study, mine, access.user_id)
            if mine
            else {"acknowledged": [], "refused": {}}
        )
        refused.update({str(k): v for k, v in done["refused"].items()})
        if not refused:
            return Redirect(f"{_queue_url(study)}?acknowledged={len(done['acknowledged'])}", status_code=303)
        context = await _queue_context(study, access, today, None, None, None, None, None)
        context.update(acknowledged=done["acknowledged"], refused=refused)
        return Template("deviations.html", context=context, status_code=200 if done["acknowledged"] else 422)

    # One deviation and its review steps -------------------------------------------------------------

    @get("/deviations/{deviation_id:int}", opt=VIEW)
    async def deviation(
        self, study: StudyPath, deviation_id: DeviationPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        row = await _visible(study, deviation_id, access)
        context = await _deviation_context(study, row, access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("deviation.html", context=context)

    @post("/deviations/{deviation_id:int}/respond", opt=needs(Action.RESPOND_DEVIATION, across_sites=True))
    async def respond(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.RESPOND, data, access, today, account_rules)

    @post("/deviations/{deviation_id:int}/acknowledge", opt=REVIEW)
    async def acknowledge_one(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.ACKNOWLEDGE, data, access, today, account_rules)

    @post("/deviations/{deviation_id:int}/classify", opt=SIGNED_REVIEW)
    async def classify(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.CLASSIFY, data, access, today, account_rules)

    @post("/deviations/{deviation_id:int}/close", opt=SIGNED_REVIEW)
    async def close(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.CLOSE, data, access, today, account_rules)

    @post("/deviations/{deviation_id:int}/reopen", opt=REVIEW)
    async def reopen(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: Form,
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> Template | Redirect:
        return await _take(study, deviation_id, Step.REOPEN, data, access, today, account_rules)

    # CAPA -------------------------------------------------------------------------------------------

    @get("/capas", opt=VIEW)
    async def capas(self, study: StudyPath, access: AccessDep, today: Today) -> Template:
        return Template("capas.html", context=await _capas_context(study, access, today))

    @post("/capas", opt=RECORD)
    async def create_capa(self, study: StudyPath, data: Form, access: AccessDep, today: Today) -> Template | Redirect:
        form = FormReader(data)
        fields = {
            name: form.text(name, label)
            for name, label in (
                ("title", "title"),
                ("root_cause", "root cause"),
                ("corrective", "corrective action"),
                ("preventive", "preventive action"),
                ("owner", "owner"),
            )
        }
        if fields["owner"] and len(fields["owner"]) > OWNER_LENGTH:
            form.errors["owner"] = f"The owner is longer than {OWNER_LENGTH} characters."
        due_on = form.date("due_on", "due date", required=False)
        raw_ids = form.text("deviation_ids", "deviation numbers", required=False) or ""
        parts = [part for part in re.split(r"[\s,;]+", raw_ids) if part]
        ids = [n for n in map(whole_number, parts) if n is not None]
        if len(ids) != len(parts):
            form.errors["deviation_ids"] = "Enter deviation numbers such as 12, 15 (digits, separated by commas)."
        if not form.errors:
            try:
                made = await deviation_review.create_capa(
                    study, *fields.values(), due_on, ids, access.user_id, sites=_sites(access)
                )
                return Redirect(f"/studies/{quote(study, safe='')}/capas/{made['id']}?saved=created", status_code=303)
            except (NotFound, Conflict) as error:  # unseen, or already grouped under another record
                form.errors["deviation_ids"] = str(error)
            except InvalidInput as error:
                form.errors.update(
                    _renamed(
                        field_messages(error), {"corrective_action": "corrective", "preventive_action": "preventive"}
                    )
                )
        context = await _capas_context(study, access, today)
        context.update(errors=form.errors, form=form.data)
        return Template("capas.html", context=context, status_code=422)

    @get("/capas/{capa_id:int}", opt=VIEW)
    async def capa(
        self, study: StudyPath, capa_id: CapaPath, access: AccessDep, today: Today, saved: QueryStr = None
    ) -> Template:
        context = await _capa_context(study, capa_id, access, today)
        context["notice"] = NOTICES.get(saved or "")
        return Template("capa.html", context=context)

    @post("/capas/{capa_id:int}/close", opt=RECORD)
    async def close_capa(
        self, study: StudyPath, capa_id: CapaPath, data: Form, access: AccessDep, today: Today
    ) -> Template | Redirect:
        context = await _capa_context(study, capa_id, access, today)  # 404 before anything else
        form = FormReader(data)
        reason = form.text("reason", "effectiveness check")
        if not form.errors:
            try:
                await deviation_review.close_capa(study, capa_id, access.user_id, reason, sites=_sites(access))
                return Redirect(f"/studies/{quote(study, safe='')}/capas/{capa_id}?saved=closed", status_code=303)
            except (InvalidInput, Conflict) as error:
                form.errors.update(field_messages(error))
        context.update(errors=form.errors, form=form.data)
        return Template("capa.html", context=context, status_code=422)


# The queue ----------------------------------------------------------------------------------------


def _queue_url(study: str) -> str:
    return f"/studies/{quote(study, safe='')}/deviations"


def _sites(access: Access) -> frozenset[str] | None:
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
    rows, total = [], 0
    if not errors:

        async def listed(n: int) -> tuple[list[dict], int]:
            return await queue.listing(
                study,
                states=states or None,
                sites=_sites(access),
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
        return f"{_queue_url(study)}?{urlencode([*kept, ('page', n)], quote_via=quote)}"

    pages = max(1, -(-total // PAGE_SIZE))
    sites = [row["code"] for row in await list_sites(study) if access.shows(row["code"])]
    return {
        "study": await protocols.get_study(study),
        "rows": rows,
        "total": total,
        "page": number,
        "pages": pages,
        "prev_url": link(number - 1) if number > 1 else None,
        "next_url": link(number + 1) if number < pages else None,
        "ages": {row["id"]: queue.age_days(row, today) for row in rows},
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


async def _visible(study: str, deviation_id: int, access: Access) -> dict:
    """The deviation, if it is at one of the sites of the route's scope; else 404 as for a missing one (IDs
    are sequential: a 403 would tell which exist)."""
    row = await queue.get(study, deviation_id)
    if not access.shows(row["site"]):
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    return row


def _offered(study: str, row: dict, access: Access, today: date) -> list[str]:
    """The steps the reader may take now: the state allows them and their grants at the site do."""
    offered = []
    for step, transition in TRANSITIONS.items():
        if row["state"] in transition.sources and all(
            access.may(a, study, row["site"], today) for a in transition.needs
        ):
            offered.append(str(step))
    return offered


async def _take(
    study: str, deviation_id: int, step: Step, data: dict, access: Access, today: date, rules: AccountRules
) -> Template | Redirect:
    row = await _visible(study, deviation_id, access)
    transition = TRANSITIONS[step]
    for action in transition.needs:
        if not access.may(action, study, row["site"], today):  # the guard could only check the study
            raise PermissionDeniedException(
                f"{access.user_id} may not {step} deviations at site {row['site']} ({str(action).replace('_', ' ')})"
            )
    form = FormReader({k: v for k, v in data.items() if isinstance(v, str)})
    values = _step_values(step, form)
    errors = form.errors
    if not errors:
        try:
            check_step(step, row["state"], **{k: v for k, v in values.items() if k != "corrective_action"})
            signing = None
            if transition.meaning is not None:
                password = data.get("password")
                signing = await signing_ceremony(
                    access.viewer,
                    str(transition.meaning),
                    password if isinstance(password, str) else "",
                    form.data.get("user_id") or None,
                    rules=rules,
                )
            await deviation_review.take_step(
                study,
                deviation_id,
                step,
                access.user_id,
                row_version=form.integer("row_version"),
                signing=signing,
                **values,
            )
            return Redirect(f"{_queue_url(study)}/{deviation_id}?saved={step}", status_code=303)
        except (InvalidInput, Conflict, NotFound) as error:
            errors = _renamed(field_messages(error), {"response": "reason"})
    errors = {(k if k in STEP_FIELDS[step] else ""): v for k, v in errors.items()}
    context = await _deviation_context(study, await queue.get(study, deviation_id), access, today)
    values = {k: v for k, v in form.data.items() if k != "password"}  # a password is never sent back
    context["failed"] = {"step": str(step), "errors": errors, "form": values}
    return Template("deviation.html", context=context, status_code=422)


def _step_values(step: Step, form: FormReader) -> dict[str, Any]:
    if step is Step.RESPOND:
        return {
            "response": form.text("reason", "reason the deviation happened"),
            "corrective_action": form.text("corrective_action", "corrective action", required=False),
        }
    if step is Step.REOPEN:
        return {"reason": form.text("reason", "reason for reopening")}
    if step in (Step.CLASSIFY, Step.CLOSE):
        form.text("password", "password")  # never an empty attempt: a failed one counts towards lock-out
    if step is Step.CLASSIFY:
        return {
            "classification": form.text("classification", "classification", choice=True),
            "category": form.text("category", "category", choice=True),
            "subcategory": form.text("subcategory", "subcategory", required=False, choice=True),
        }
    return {}


def _renamed(errors: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    return {names.get(k, k): v for k, v in errors.items()}


async def _deviation_context(study: str, row: dict, access: Access, today: date) -> dict[str, Any]:
    zone = next((s["time_zone"] for s in await list_sites(study) if s["code"] == row["site"]), "UTC")
    signatures = [
        {**s, "local_time": _local(s["instant"], zone)}
        for s in await deviation_review.verify_signatures(study, row["id"])
    ]
    steps = [{**s, "local_time": _local(s["at"], zone)} for s in row["steps"]]
    timeline = None
    if row["participant"]:
        visits = [visit_row(v) for v in await worklists.participant_schedule(study, row["participant"], today)]
        timeline = build_timeline(visits, today, highlight=row["visit"])
    return {
        "study": await protocols.get_study(study),
        "row": row,
        "steps": steps,
        "signatures": signatures,
        "timeline": timeline,
        "offered": _offered(study, row, access, today),
        "today": today,
        "age": queue.age_days(row, today),
        "detected_at": _local(row["detected_at"], zone),
        "closed_at": _local(row["closed_at"], zone) if row["closed_at"] else None,
        "classifications": CLASSIFICATIONS,
        "categories": [(c, c) for c in CATEGORIES],
        "subcategories": SUBCATEGORIES,
        "notice": None,
        "failed": {"step": "", "errors": {}, "form": {}},
    }


def _local(instant: str, zone: str) -> str:
    try:
        return local_time(instant, zone, ZoneInfo(zone))
    except ValueError:  # an instant in another format: shown as stored
        return instant


# CAPA ---------------------------------------------------------------------------------------------


async def _capas_context(study: str, access: Access, today: date) -> dict[str, Any]:
    capas = await deviation_review.list_capas(study, _sites(access), access.user_id)  # members: theirs only
    return {
        "study": await protocols.get_study(study),
        "capas": capas,
        "errors": {},
        "form": {},
        "notice": None,
        "can_record": await _may_record(study, access, today),
    }


async def _capa_context(study: str, capa_id: int, access: Access, today: date) -> dict[str, Any]:
    capa = await deviation_review.get_capa(study, capa_id, _sites(access), access.user_id)  # 404 if unseen
    members = [await queue.get(study, i) for i in capa["deviations"]]
    return {
        "study": await protocols.get_study(study),
        "capa": capa,
        "members": members,
        "errors": {},
        "form": {},
        "notice": None,
        "can_record": await _may_record(study, access, today),
    }


async def _may_record(study: str, access: Access, today: date) -> bool:
    """CAPA forms are for those who record deviations at one of the sites they see."""
    return any(
        access.may(Action.RECORD_DEVIATION, study, row["code"], today)
        for row in await list_sites(study)
        if access.shows(row["code"])
    )
