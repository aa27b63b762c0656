"""The review of a deviation: its states, which step moves it, and who may take each step.

detected -> site response (reason, corrective action) -> under monitor review -> classified -> closed, and
reopened with a reason. Classification and closure are electronic signatures (review, approval). Detection
itself moves a record to "resolved by data correction" when its fact goes away, and back when it returns.
SDTM DV terms: DVCAT is the category, DVDECOD the subcategory's controlled term (TransCelerate's list).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.deviations.rules.deviations import State as DetectionState
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.kernel.rules.access import Action
from trialcoord.scheduling.rules.classification import Category, Classification


class State(StrEnum):
    DETECTED = "detected"
    SITE_RESPONSE = "site_response"
    UNDER_REVIEW = "under_review"
    CLASSIFIED = "classified"
    CLOSED = "closed"
    REOPENED = DetectionState.REOPENED.value
    RESOLVED_BY_CORRECTION = DetectionState.RESOLVED_BY_CORRECTION.value


OPEN_STATES = frozenset({State.DETECTED, State.SITE_RESPONSE, State.UNDER_REVIEW, State.CLASSIFIED, State.REOPENED})


class Step(StrEnum):
    RESPOND = "respond"
    ACKNOWLEDGE = "acknowledge"  # a monitor takes it into review (also in bulk, from the queue)
    CLASSIFY = "classify"
    CLOSE = "close"
    REOPEN = "reopen"


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[State]
    target: State
    action: Action
    meaning: Meaning | None = None  # an electronic signature with this meaning

    @property
    def needs(self) -> tuple[Action, ...]:
        """Every action the step needs at the deviation's site: a signed step also the right to sign."""
        return (self.action, Action.SIGN) if self.meaning is not None else (self.action,)


# The order: the site explains (and may amend its response until a monitor takes it up), then the
# monitor reviews. Bulk acknowledgement takes responded deviations into review.
TRANSITIONS: dict[Step, Transition] = {
    Step.RESPOND: Transition(
        frozenset({State.DETECTED, State.REOPENED, State.SITE_RESPONSE}), State.SITE_RESPONSE, Action.RESPOND_DEVIATION
    ),
    Step.ACKNOWLEDGE: Transition(frozenset({State.SITE_RESPONSE}), State.UNDER_REVIEW, Action.REVIEW_DEVIATION),
    # A classification may be signed again (a second look) before closure.
    Step.CLASSIFY: Transition(
        frozenset({State.UNDER_REVIEW, State.CLASSIFIED}), State.CLASSIFIED, Action.REVIEW_DEVIATION, Meaning.REVIEW
    ),
    Step.CLOSE: Transition(frozenset({State.CLASSIFIED}), State.CLOSED, Action.REVIEW_DEVIATION, Meaning.APPROVAL),
    Step.REOPEN: Transition(
        frozenset({State.CLOSED, State.CLASSIFIED, State.RESOLVED_BY_CORRECTION}),
        State.REOPENED,
        Action.REVIEW_DEVIATION,
    ),
}

# TransCelerate categories (DVCAT) and their subcategories' decoded terms (DVDECOD) this product offers.
SUBCATEGORIES: dict[str, tuple[str, ...]] = {
    Category.INFORMED_CONSENT: (
        "CONSENT NOT OBTAINED BEFORE PROCEDURES",
        "RE-CONSENT NOT OBTAINED",
        "WRONG CONSENT VERSION",
        "CONSENT FORM INCOMPLETE",
    ),
    Category.ELIGIBILITY: ("SCREENING OUTSIDE WINDOW", "INCLUSION CRITERIA NOT MET", "EXCLUSION CRITERIA MET"),
    Category.VISIT_SCHEDULE: ("VISIT OUT OF WINDOW", "VISIT MISSED", "VISIT AFTER END OF STUDY"),
    "study intervention": ("DOSE NOT ADMINISTERED", "WRONG DOSE", "WRONG TREATMENT"),
    "assessments": ("ASSESSMENT NOT PERFORMED", "ASSESSMENT OUT OF WINDOW"),
    "concomitant medication": ("PROHIBITED MEDICATION TAKEN",),
    "safety reporting": ("SAE NOT REPORTED IN TIME",),
    "other": ("OTHER",),
}
CATEGORIES = tuple(SUBCATEGORIES)


def check_step(
    step: Step | str,
    state: str,
    *,
    reason: str | None = None,
    classification: str | None = None,
    category: str | None = None,
    subcategory: str | None = None,
    response: str | None = None,
) -> Transition:
    """The transition `step` takes from `state`, or InvalidInput naming what is wrong (a forbidden step, a
    missing reason, a term outside the controlled lists)."""
    problems: list[Problem] = []
    try:
        step = Step(step)
    except ValueError:
        message = f"'{step}' is not a review step; choose one of {', '.join(Step)}"
        raise InvalidInput([Problem(message, field="step")]) from None
    transition = TRANSITIONS[step]
    if state not in transition.sources:
        allowed = ", ".join(sorted(s.value for s in transition.sources))
        problems.append(
            Problem(f"a deviation that is {state} cannot be {_past(step)}; only one that is {allowed}", field="state")
        )
    if step is Step.RESPOND and not (response or "").strip():
        problems.append(Problem("a site response needs the reason the deviation happened", field="response"))
    if step is Step.REOPEN and not (reason or "").strip():
        problems.append(Problem("reopening needs the reason", field="reason"))
    if step is Step.CLASSIFY:
        problems.extend(classification_problems(classification, category, subcategory))
    if problems:
        raise InvalidInput(problems)
    return transition


def classification_problems(classification: str | None, category: str | None, subcategory: str | None) -> list[Problem]:
    problems = []
    if classification not in set(Classification):
        problems.append(
            Problem(
                f"'{classification}' is not a classification; choose one of {', '.join(Classification)}",
                field="classification",
            )
        )
    if category not in SUBCATEGORIES:
        problems.append(
            Problem(f"'{category}' is not a category; choose one of {', '.join(CATEGORIES)}", field="category")
        )
    elif subcategory is not None and subcategory not in SUBCATEGORIES[category]:
        problems.append(
            Problem(
                f"'{subcategory}' is not a subcategory of {category}; choose one of "
                f"{', '.join(SUBCATEGORIES[category])}",
                field="subcategory",
            )
        )
    return problems


def default_subcategory(rule: str | None) -> str | None:
    """The DVDECOD a detected deviation starts with."""
    return {
        "visit_early": "VISIT OUT OF WINDOW",
        "visit_late": "VISIT OUT OF WINDOW",
        "visit_missed": "VISIT MISSED",
        "visit_after_ending_event": "VISIT AFTER END OF STUDY",
        "screening_out_of_window": "SCREENING OUTSIDE WINDOW",
        "visit_before_consent": "CONSENT NOT OBTAINED BEFORE PROCEDURES",
        "visit_under_superseded_consent": "RE-CONSENT NOT OBTAINED",
    }.get(rule or "")


def _past(step: Step) -> str:
    return {
        Step.RESPOND: "responded to",
        Step.ACKNOWLEDGE: "acknowledged",
        Step.CLASSIFY: "classified",
        Step.CLOSE: "closed",
        Step.REOPEN: "reopened",
    }[step]
