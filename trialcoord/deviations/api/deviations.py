"""Deviations over the API, what every route shares: the guards, the problems they answer, the bodies and answers,
the sites a reader sees. The routes: `queue` (detection runs, the queue, a deviation someone found), `review` (one
deviation, review steps, several at once), `window_exceptions` (approved directly, or requested and decided),
`capa`.

A deviation at a site the reader may not see answers 403, and so does a missing one to a reader of some sites,
in the same words (`kernel.web.denials`; IDs are sequential and tell nothing). Review steps are checked per
step at the deviation's site (`TRANSITIONS` names the action; classification and closure also need SIGN)
before any password is asked.
Reading (the queue, a deviation, exceptions, CAPA records) needs view_schedule: every role of the study sees
coded deviation data; each write keeps its own action. CAPA records a reader may not see answer 403 too.

Every body and answer has a class name of its own across the API, so the OpenAPI document names its components
after the classes alone, whatever module holds them (`StepSignatureOut`, beside documents' `SignatureOut`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import msgspec
from litestar.exceptions import NotAuthorizedException

from trialcoord.deviations.rules.deviation_review import Step
from trialcoord.kernel.rules.access import Action, Viewer
from trialcoord.kernel.web.errors import problem_responses
from trialcoord.kernel.web.guard import Access, needs
from trialcoord.kernel.web.schemas import Code, Text, check_plausible

VIEW = needs(Action.VIEW_SCHEDULE, across_sites=True)
RECORD = needs(Action.RECORD_DEVIATION, across_sites=True)
READ = problem_responses(400, 401, 403, 404, 422)
WRITE = problem_responses(400, 401, 403, 404, 409, 422)
MAX_IDS = 500
Term = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
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


class ChosenIn(msgspec.Struct):
    id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    row_version: int | None = None  # the version the client saw; required to sign


class StepsIn(msgspec.Struct):
    """One step on several deviations: respond, classify or close; all or none."""

    step: Annotated[str, msgspec.Meta(max_length=20, description="respond, classify, close")]
    deviations: Annotated[list[ChosenIn], msgspec.Meta(min_length=1, max_length=MAX_IDS)]
    response: Text | None = None
    corrective_action: Text | None = None
    classification: Term | None = None
    category: Term | None = None
    subcategory: Term | None = None
    password: Annotated[str, msgspec.Meta(max_length=1024)] | None = None  # classify, close: one ceremony
    user_id: Code | None = None


class ExceptionIn(msgspec.Struct):
    visit: Code
    earlier_days: Days
    later_days: Days
    approved_on: date
    reason: Text

    def __post_init__(self) -> None:
        check_plausible(self.approved_on, "approved_on")


class ExtensionRequestIn(msgspec.Struct):
    visit: Code
    earlier_days: Days
    later_days: Days
    reason: Text


class ExtensionDecisionIn(msgspec.Struct):
    approve: bool
    reason: Text | None = None  # declining: why (required); approving: an optional note
    row_version: int | None = None  # the version the client saw; a stale one is a 409


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


class CapaCloseIn(msgspec.Struct):
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


class StepSignatureOut(msgspec.Struct):
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
    signatures: list[StepSignatureOut]


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


class ExtensionRequestOut(msgspec.Struct):
    id: int
    participant: str
    site: str
    visit: str
    earlier_days: int
    later_days: int
    reason: str
    requested_by: str
    requested_at: str
    state: str
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    row_version: int
    path: str  # the page that shows and decides it


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


def signed_in(access: Access) -> Viewer:
    """The viewer of a route that needs an action (the guard lets no request without one through)."""
    if access.viewer is None:
        raise NotAuthorizedException("sign in first")
    return access.viewer


def visible_sites(access: Access) -> list[str] | None:
    """The sites a listing may show (None: all of them)."""
    if access.sites is None or access.sites.all_sites:
        return None
    return sorted(access.sites.sites)
