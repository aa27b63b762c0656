"""The review's transition table: every (state, step) pair is either the one allowed move or refused with a
message naming the state; the required fields of each step; the controlled terms."""

from __future__ import annotations

import pytest

from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.deviations.rules.deviation_review import (
    SUBCATEGORIES,
    TRANSITIONS,
    State,
    Step,
    check_step,
    classification_problems,
    default_subcategory,
)
from trialcoord.deviations.rules.deviations import Rule
from trialcoord.kernel.problems import InvalidInput
from trialcoord.kernel.rules.access import ROLE_PERMISSIONS, Action, Role

FILLED = dict(
    reason="why",
    response="why",
    classification="important",
    category="visit schedule",
    subcategory="VISIT OUT OF WINDOW",
)
ALLOWED = {  # the workflow, written out independently of TRANSITIONS
    (State.DETECTED, Step.RESPOND),
    (State.REOPENED, Step.RESPOND),
    (State.SITE_RESPONSE, Step.RESPOND),
    (State.SITE_RESPONSE, Step.ACKNOWLEDGE),
    (State.UNDER_REVIEW, Step.CLASSIFY),
    (State.CLASSIFIED, Step.CLASSIFY),
    (State.CLASSIFIED, Step.CLOSE),
    (State.CLOSED, Step.REOPEN),
    (State.CLASSIFIED, Step.REOPEN),
    (State.RESOLVED_BY_CORRECTION, Step.REOPEN),
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("step", list(Step))
def test_every_state_and_step(state, step):
    if (state, step) in ALLOWED:
        assert check_step(step, state, **FILLED).target is TRANSITIONS[step].target
    else:
        with pytest.raises(InvalidInput, match=f"a deviation that is {state} cannot be"):
            check_step(step, state, **FILLED)


def test_signed_steps_and_who_takes_each():
    assert {step: t.meaning for step, t in TRANSITIONS.items() if t.meaning} == {
        Step.CLASSIFY: Meaning.REVIEW,
        Step.CLOSE: Meaning.APPROVAL,
    }
    assert TRANSITIONS[Step.CLOSE].needs == (Action.REVIEW_DEVIATION, Action.SIGN)
    assert TRANSITIONS[Step.RESPOND].needs == (Action.RESPOND_DEVIATION,)
    takers = {
        step: {role for role, actions in ROLE_PERMISSIONS.items() if t.action in actions}
        for step, t in TRANSITIONS.items()
    }
    assert takers[Step.RESPOND] == {Role.ADMINISTRATOR, Role.COORDINATOR, Role.INVESTIGATOR}
    assert all(
        takers[s] == {Role.ADMINISTRATOR, Role.MONITOR}
        for s in (Step.ACKNOWLEDGE, Step.CLASSIFY, Step.CLOSE, Step.REOPEN)
    )
    assert Action.SIGN in ROLE_PERMISSIONS[Role.MONITOR]


@pytest.mark.parametrize(
    "step, missing, field",
    [
        (Step.RESPOND, {"response": " "}, "response"),
        (Step.REOPEN, {"reason": ""}, "reason"),
        (Step.CLASSIFY, {"classification": "minor"}, "classification"),
        (Step.CLASSIFY, {"category": "catering"}, "category"),
        (Step.CLASSIFY, {"subcategory": "WRONG DOSE"}, "subcategory"),
    ],
)
def test_each_step_names_what_it_lacks(step, missing, field):
    state = next(s for s, t in ALLOWED if t is step)
    with pytest.raises(InvalidInput) as refused:
        check_step(step, state, **{**FILLED, **missing})
    assert [p.field for p in refused.value.problems] == [field]


def test_an_unknown_step_is_refused_by_name():
    with pytest.raises(InvalidInput, match="'approve' is not a review step"):
        check_step("approve", State.DETECTED)


def test_every_rule_starts_with_a_subcategory_of_its_category():
    from trialcoord.deviations.rules.deviations import CATEGORY

    for rule in Rule:
        assert default_subcategory(rule) in SUBCATEGORIES[CATEGORY[rule]], rule
        assert classification_problems("important", str(CATEGORY[rule]), default_subcategory(rule)) == []
