"""The same review step on several deviations at once, from the queue: a site's response, a classification, a
closure. All or nothing: one transaction, so a deviation that cannot take the step leaves every other unchanged,
and the refusal names each such deviation and why. A signed step runs the signing ceremony once for the batch and
stores one signature (and one audit entry) per deviation, as `deviation_review.take_step` does for one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from trialcoord.accounts.rules.accounts import Signing
from trialcoord.deviations import store
from trialcoord.deviations.deviation_review import StepFields, apply_step, signer
from trialcoord.deviations.records import Deviation, as_deviation
from trialcoord.deviations.rules.deviation_review import TRANSITIONS, Step, check_step
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput, Problem, invalid
from trialcoord.scheduling import protocols

BULK_STEPS = (Step.RESPOND, Step.CLASSIFY, Step.CLOSE)
MAX_BATCH = 500

Item = tuple[int, int | None]  # a deviation and the row_version the reader saw (None: not checked)


async def check_steps(
    study: str,
    step: str,
    items: Sequence[Item],
    fields: StepFields,
    *,
    visible: Collection[str] | None,
    permitted: Collection[str] | None,
) -> None:
    """Whether every deviation can take the step now (read only: before a password is asked for)."""
    _check_batch(step, items)
    async with read():
        study_id = (await protocols.require_study(study)).id
        rows = [(deviation_id, version, await store.find(study_id, deviation_id)) for deviation_id, version in items]
    _refuse(study, step, rows, fields, visible, permitted)


async def take_steps(
    study: str,
    step: str,
    items: Sequence[Item],
    actor: str,
    fields: StepFields,
    *,
    visible: Collection[str] | None,
    permitted: Collection[str] | None,
    signing: Signing | None = None,
    installation: Installation | None = None,
) -> list[Deviation]:
    """The step on every deviation of `items`, in one transaction, or on none. `visible`: the sites the actor sees
    (a deviation elsewhere reads as missing); `permitted`: those where the actor may take the step."""
    _check_batch(step, items)
    signed_by = await signer(step, TRANSITIONS[Step(step)], actor, signing, installation)
    done: list[Deviation] = []
    async with transaction(f"{len(items)} deviations of study {study}"):
        study_id = (await protocols.require_study(study)).id
        rows = []
        for deviation_id, version in items:
            await store.lock(deviation_id)
            rows.append((deviation_id, version, await store.find(study_id, deviation_id)))
        _refuse(study, step, rows, fields, visible, permitted)
        for _, _, row in rows:
            if row is None:  # _refuse named every missing one
                raise AssertionError("a deviation went missing after it was checked")
            done.append(as_deviation(await apply_step(study, study_id, row, Step(step), actor, fields, signed_by)))
    return done


def _check_batch(step: str, items: Sequence[Item]) -> None:
    if step not in BULK_STEPS:
        raise invalid(f"'{step}' is not a step taken in bulk; choose one of {', '.join(BULK_STEPS)}", field="step")
    if not items:
        raise invalid("choose at least one deviation", field="ids")
    if len(items) > MAX_BATCH:
        raise invalid(f"choose at most {MAX_BATCH} deviations at a time", field="ids")
    if len({i for i, _ in items}) != len(items):
        raise invalid("a deviation is chosen twice", field="ids")


def _refuse(
    study: str,
    step: str,
    rows: list[tuple[int, int | None, dict[str, Any] | None]],
    fields: StepFields,
    visible: Collection[str] | None,
    permitted: Collection[str] | None,
) -> None:
    """Every deviation that cannot take the step, named with why: InvalidInput (a field problem about the step's
    own fields stays on its field), or Conflict when each refusal is a deviation changed since it was read."""
    refusals: list[Problem] = []
    fields_problems: dict[str, Problem] = {}
    stale = 0
    for deviation_id, version, row in rows:
        why = None
        if row is None or (visible is not None and row["site"] not in visible):
            why = f"study {study} has no deviation {deviation_id}"
        elif permitted is not None and row["site"] not in permitted:
            why = f"you may not {step} deviations at site {row['site']}"
        elif version is not None and row["row_version"] != version:
            why = f"it changed meanwhile (version {row['row_version']}, not {version}); reload the queue"
            stale += 1
        else:
            try:
                check_step(step, row["state"], **fields.checked())
            except InvalidInput as error:
                for problem in error.problems:
                    if problem.field == "state":
                        why = problem.message
                    else:  # the step's own fields: said once, at the field
                        fields_problems.setdefault(problem.field or "", problem)
        if why:
            refusals.append(Problem(f"deviation {deviation_id}: {why}", field="ids"))
    if fields_problems:
        raise InvalidInput(list(fields_problems.values()) + refusals)
    if refusals and stale == len(refusals):
        raise Conflict("; ".join(p.message for p in refusals))
    if refusals:
        raise InvalidInput(refusals)
