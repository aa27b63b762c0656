"""Deviations over the API: detection runs, the queue, one deviation, review steps, exceptions, CAPA.

A deviation at a site the reader may not see answers 404 with the words of a missing one (IDs are
sequential: a 403 would tell which exist). Review steps are checked per step at the deviation's site
(`TRANSITIONS` names the action; classification and closure also need SIGN) before any password is asked.
Reading (the queue, a deviation, exceptions, CAPA records) needs view_schedule: every role of the study sees
coded deviation data; each write keeps its own action. CAPA records a reader may not see answer 404 too.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.exceptions import PermissionDeniedException
from litestar.params import JSONBody, PathParameter, QueryParameter

from trialcoord.accounts.signing import signing_ceremony
from trialcoord.accounts.users import AccountRules
from trialcoord.deviations import detection, deviation_review, manual, queue
from trialcoord.deviations.rules.deviation_review import TRANSITIONS, Step, check_step
from trialcoord.kernel.problems import InvalidInput, NotFound, Problem
from trialcoord.kernel.rules.access import Action
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.params import AccessDep, AsOf, QueryStr, StudyPath, SubjectPath, Today, as_of_or_today
from trialcoord.kernel.web.schemas import Code, Text, check_plausible
from trialcoord.scheduling import participants

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
RECORD = needs(Action.RECORD_DEVIATION, across_sites=True)
READ = problem_responses(400, 401, 403, 404, 422)
WRITE = problem_responses(400, 401, 403, 404, 409, 422)
PAGE, MAX_PAGE, MAX_IDS = 50, 500, 500
DeviationPath = Annotated[int, PathParameter(description="Deviation number", ge=1, le=2**31 - 1)]
CapaPath = Annotated[int, PathParameter(description="CAPA record number", ge=1, le=2**31 - 1)]
Term = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
StateParam = Annotated[
    str | None, QueryParameter(name="state", required=False, max_length=500, description="comma-separated states")
]
Days = Annotated[int, msgspec.Meta(ge=0, le=3650)]
Ids = Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]], msgspec.Meta(max_length=MAX_IDS)]


# Bodies -------------------------------------------------------------------------------------------


class DetectIn(msgspec.Struct):
    as_of: date | None = None  # default: today
    full: bool = False  # look at every participant, not only those changed since the previous run

    def __post_init__(self) -> None:
        check_plausible(self.as_of, "as_of")


class DeviationIn(msgspec.Struct):
    site: Code
    category: Term
    description: Text
    occurred_on: date
    subject_id: Code | None = None
    visit: Code | None = None
    subcategory: Term | None = None
    classification: Term = "non_important"

    def __post_init__(self) -> None:
        check_plausible(self.occurred_on, "occurred_on")


class StepIn(msgspec.Struct):
    step: Annotated[str, msgspec.Meta(max_length=20, description=", ".join(Step))]
    row_version: int | None = None  # the version the client saw; a stale one is a 409
    reason: Text | None = None  # reopen: why
    response: Text | None = None  # respond: why the deviation happened
    corrective_action: Text | None = None
    classification: Term | None = None
    category: Term | None = None
    subcategory: Term | None = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None  # classify, close: the signature
    user_id: Code | None = None  # at the first signing of a continuous period


class IdsIn(msgspec.Struct):
    ids: Ids


class ExceptionIn(msgspec.Struct):
    visit: Code
    earlier_days: Days
    later_days: Days
    approved_on: date
    reason: Text

    def __post_init__(self) -> None:
        check_plausible(self.approved_on, "approved_on")


class CapaIn(msgspec.Struct):
    title: Text
    root_cause: Text
    corrective_action: Text
    preventive_action: Text
    owner: Code
    due_on: date | None = None
    deviations: Ids = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        check_plausible(self.due_on, "due_on")


class ReasonIn(msgspec.Struct):
    reason: Text


# Responses ----------------------------------------------------------------------------------------


class DetectOut(msgspec.Struct):
    study: str
    as_of: date
    scope: str
    created: int
    updated: int
    resolved: int
    reopened: int


class DeviationOut(msgspec.Struct):
    id: int
    participant: str | None
    site: str
    visit: str | None
    occurrence: int | None
    rule: str | None
    source: str
    category: str
    subcategory: str | None
    classification: str
    state: str
    days_outside: int
    occurred_on: date | None
    description: str
    site_reason: str | None
    corrective_action: str | None
    capa: int | None
    detected_at: str
    updated_at: str
    closed_at: str | None
    resolved_by_entry: int | None
    row_version: int
    dvcat: str
    dvdecod: str | None
    open: bool


class StepOut(msgspec.Struct):
    id: int
    step: str
    from_state: str
    to_state: str
    actor: str
    at: str
    reason: str | None
    detail: dict[str, Any] | None


class SignatureOut(msgspec.Struct):
    step: int
    content_sha256: str
    record: str
    signer_id: str
    printed_name: str
    meaning: str
    instant: str
    key_id: str
    value: str
    verdict: str
    reason: str


class DeviationDetail(DeviationOut):
    steps: list[StepOut]
    signatures: list[SignatureOut]


class DeviationPage(msgspec.Struct):
    items: list[DeviationOut]
    total: int
    limit: int
    offset: int


class Refusal(msgspec.Struct):
    id: int
    reason: str


class AcknowledgedOut(msgspec.Struct):
    acknowledged: list[int]
    refused: list[Refusal]


class ExceptionOut(msgspec.Struct):
    subject_id: str
    site: str
    visit: str
    earlier_days: int
    later_days: int
    approved_on: date
    approved_by: str
    reason: str


class CapaOut(msgspec.Struct):
    id: int
    title: str
    root_cause: str
    corrective_action: str
    preventive_action: str
    owner: str
    due_on: date | None
    state: str
    created_by: str
    created_at: str
    closed_at: str | None
    row_version: int
    deviations: list[int]  # those the reader may see


# Helpers ------------------------------------------------------------------------------------------


def visible_sites(access: Access) -> list[str] | None:
    """The sites a listing may show (None: all of them)."""
    if access.sites is None or access.sites.all_sites:
        return None
    return sorted(access.sites.sites)


async def visible_deviation(access: Access, study: str, deviation_id: int) -> dict:
    row = await queue.get(study, deviation_id)
    if not access.shows(row["site"]):
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    return row


def capa_out(capa: dict) -> CapaOut:
    return msgspec.convert(capa, CapaOut)


def detail(row: dict, judged: list[dict]) -> DeviationDetail:
    steps = [{**s, "detail": msgspec.json.decode(s["detail"]) if s["detail"] else None} for s in row["steps"]]
    return msgspec.convert({**row, "steps": steps, "signatures": judged}, DeviationDetail)


class DeviationController(Controller):
    path = "/api/studies/{study:str}"
    tags = ["deviations"]

    @post("/deviations/detect", opt=RECORD, status_code=200, responses=READ)
    async def detect(
        self, study: StudyPath, access: AccessDep, today: Today, data: JSONBody[DetectIn | None] = None
    ) -> DetectOut:
        """Create, update, resolve and reopen the study's automatic deviations (incremental unless `full`).
        Only a reader of every site of the study may choose `as_of` (not after today, nor before the last
        run) or `full`."""
        data = data or DetectIn()
        if (data.as_of is not None or data.full) and visible_sites(access) is not None:
            # a run's date and scope decide every site's records: only a reader of all of them chooses
            raise PermissionDeniedException(
                f"{access.user_id} may not choose as_of or full: that needs a grant covering every site of the study"
            )
        counts = await detection.detect(study, data.as_of or today, access.user_id, full=data.full, today=today)
        return msgspec.convert(counts, DetectOut)

    @get("/deviations", opt=VIEW, responses=READ)
    async def queue(
        self,
        study: StudyPath,
        access: AccessDep,
        today: Today,
        states: StateParam = None,
        site: QueryStr = None,
        category: QueryStr = None,
        participant: QueryStr = None,
        min_age_days: Annotated[int | None, QueryParameter(ge=0, le=36500, required=False)] = None,
        as_of: AsOf = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = PAGE,
        offset: Annotated[int, QueryParameter(ge=0, le=2**31 - 1)] = 0,
    ) -> DeviationPage:
        """The deviations of the sites the reader sees (`site` narrows to one), oldest first; `state` is a
        comma-separated list, `min_age_days` counts from detection to `as_of` (default today)."""
        wanted = [s.strip() for s in states.split(",") if s.strip()] if states else None
        rows, total = await queue.listing(
            study,
            states=wanted,
            sites=visible_sites(access),
            category=category or None,
            min_age_days=min_age_days,
            as_of=as_of_or_today(as_of, today),
            limit=limit,
            offset=offset,
            participant=participant or None,
        )
        return DeviationPage([msgspec.convert(r, DeviationOut) for r in rows], total, limit, offset)

    @get("/deviations/{deviation_id:int}", opt=VIEW, responses=READ)
    async def one(self, study: StudyPath, deviation_id: DeviationPath, access: AccessDep) -> DeviationDetail:
        """A deviation with its review steps and its signatures, each judged now against the signer registry."""
        row = await visible_deviation(access, study, deviation_id)
        return detail(row, await deviation_review.verify_signatures(study, deviation_id))

    @post("/deviations", opt=RECORD, status_code=201, responses=WRITE)
    async def record(
        self, study: StudyPath, data: JSONBody[DeviationIn], access: AccessDep, today: Today
    ) -> DeviationOut:
        """A deviation someone found (any category), at a site or of one of its participants."""
        access.require_site(data.site, "record deviations")
        row = await manual.record_manual(
            study,
            data.site,
            data.category,
            data.description,
            data.occurred_on,
            access.user_id,
            subject_id=data.subject_id,
            visit=data.visit,
            subcategory=data.subcategory,
            classification=data.classification,
            today=today,
        )
        return msgspec.convert(row, DeviationOut)

    @post(
        "/deviations/{deviation_id:int}/steps",
        opt=RECORD,
        status_code=200,
        responses=problem_responses(400, 401, 403, 404, 409, 422, 503),
    )
    async def step(
        self,
        study: StudyPath,
        deviation_id: DeviationPath,
        data: JSONBody[StepIn],
        access: AccessDep,
        today: Today,
        account_rules: NamedDependency[AccountRules],
    ) -> DeviationDetail:
        """One review step: respond (site staff), acknowledge, classify, close, reopen (monitors). Classify
        and close are electronic signatures (review, approval): the password, and the user ID at the first
        signing of a continuous period. A wrong password changes nothing."""
        row = await visible_deviation(access, study, deviation_id)
        fields = dict(
            reason=data.reason,
            response=data.response,
            classification=data.classification,
            category=data.category,
            subcategory=data.subcategory,
        )
        transition = TRANSITIONS.get(data.step) or check_step(data.step, row["state"], **fields)  # unknown: 422
        for action in transition.needs:
            if not access.may(action, study, row["site"], today):
                raise PermissionDeniedException(
                    f"{access.user_id} may not {data.step} deviations at site"
                    f" {row['site']} ({str(action).replace('_', ' ')})"
                )
        check_step(data.step, row["state"], **fields)  # a step that cannot be taken asks for no password
        signing = None
        if transition.meaning is not None and data.row_version is None:  # never sign a record one has not seen
            raise InvalidInput(
                [
                    Problem(
                        f"to {data.step} deviation {deviation_id}, send the row_version you read"
                        f" (now {row['row_version']})",
                        field="row_version",
                    )
                ]
            )
        if transition.meaning is not None:
            signing = await signing_ceremony(
                access.viewer, str(transition.meaning), data.password or "", data.user_id, rules=account_rules
            )
        await deviation_review.take_step(
            study,
            deviation_id,
            data.step,
            access.user_id,
            row_version=data.row_version,
            corrective_action=data.corrective_action,
            signing=signing,
            **fields,
        )
        return detail(
            await queue.get(study, deviation_id), await deviation_review.verify_signatures(study, deviation_id)
        )

    @post(
        "/deviations/acknowledge",
        opt=needs(Action.REVIEW_DEVIATION, across_sites=True),
        status_code=200,
        responses=READ,
    )
    async def acknowledge(self, study: StudyPath, data: JSONBody[IdsIn], access: AccessDep) -> AcknowledgedOut:
        """Take several deviations into review at once; each refused one is listed with the reason."""
        shown, refused = [], []
        for deviation_id in dict.fromkeys(data.ids):
            try:
                shown.append((await visible_deviation(access, study, deviation_id))["id"])
            except NotFound as exc:
                refused.append(Refusal(deviation_id, str(exc)))
        done: dict = {"acknowledged": [], "refused": {}}
        if shown or not refused:  # no IDs at all: the service names the field
            done = await deviation_review.acknowledge_many(study, shown, access.user_id)
        refused += [Refusal(int(i), reason) for i, reason in done["refused"].items()]
        return AcknowledgedOut(done["acknowledged"], sorted(refused, key=lambda r: r.id))

    @post(
        "/participants/{subject_id:str}/window-exceptions",
        opt=needs(Action.APPROVE_EXCEPTION),
        status_code=201,
        responses=WRITE,
    )
    async def approve_exception(
        self, study: StudyPath, subject_id: SubjectPath, data: JSONBody[ExceptionIn], access: AccessDep, today: Today
    ) -> ExceptionOut:
        """An investigator's approved window extension of one visit: it prevents the early or late deviation
        only if approved on or before the visit day. Audited."""
        row = await manual.approve_exception(
            study,
            subject_id,
            data.visit,
            data.earlier_days,
            data.later_days,
            data.approved_on,
            data.reason,
            access.user_id,
            today=today,
        )
        return msgspec.convert(row, ExceptionOut)

    @get("/window-exceptions", opt=VIEW, responses=READ)
    async def exceptions(self, study: StudyPath, access: AccessDep) -> list[ExceptionOut]:
        site_of = {p["subject_id"]: p["site"] for p in await participants.list_participants(study)}
        rows = [
            {**e, "site": site_of[e["subject_id"]], "approved_on": _day(e["approved_on"])}
            for e in await manual.exceptions_of(study)
        ]
        return [msgspec.convert(r, ExceptionOut) for r in rows if access.shows(r["site"])]

    @get("/capas", opt=VIEW, responses=READ)
    async def capas(self, study: StudyPath, access: AccessDep) -> list[CapaOut]:
        """Root cause and corrective/preventive action records, each with the deviations it groups (a reader
        of some sites: the records they made or that group their deviations, and only those deviations)."""
        return [capa_out(c) for c in await deviation_review.list_capas(study, visible_sites(access), access.user_id)]

    @post("/capas", opt=RECORD, status_code=201, responses=WRITE)
    async def create_capa(self, study: StudyPath, data: JSONBody[CapaIn], access: AccessDep) -> CapaOut:
        capa = await deviation_review.create_capa(
            study,
            data.title,
            data.root_cause,
            data.corrective_action,
            data.preventive_action,
            data.owner,
            data.due_on,
            data.deviations,
            access.user_id,
            sites=visible_sites(access),
        )
        return capa_out(capa)

    @get("/capas/{capa_id:int}", opt=VIEW, responses=READ)
    async def capa(self, study: StudyPath, capa_id: CapaPath, access: AccessDep) -> CapaOut:
        """One record (404 for a record the reader may not see, as for a missing one)."""
        return capa_out(await deviation_review.get_capa(study, capa_id, visible_sites(access), access.user_id))

    @post("/capas/{capa_id:int}/deviations", opt=RECORD, status_code=200, responses=WRITE)
    async def link_capa(self, study: StudyPath, capa_id: CapaPath, data: JSONBody[IdsIn], access: AccessDep) -> CapaOut:
        """Group more deviations under the record (only deviations the caller sees)."""
        capa = await deviation_review.link_capa(study, capa_id, data.ids, access.user_id, sites=visible_sites(access))
        return capa_out(capa)

    @post("/capas/{capa_id:int}/close", opt=RECORD, status_code=200, responses=WRITE)
    async def close_capa(
        self, study: StudyPath, capa_id: CapaPath, data: JSONBody[ReasonIn], access: AccessDep
    ) -> CapaOut:
        """Close the record with how its effectiveness was checked."""
        capa = await deviation_review.close_capa(
            study, capa_id, access.user_id, data.reason, sites=visible_sites(access)
        )
        return capa_out(capa)


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
