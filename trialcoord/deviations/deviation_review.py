"""Taking a deviation through its review (`rules/deviation_review.py`), and CAPA records.

Each step runs in one transaction with its history row and its audit entry. Classification and closure are
electronic signatures: the signer's Ed25519 key (the same keys and registry as document signatures) signs a
statement of the SHA-256 of the decision's canonical JSON, and the signature is judged before it is stored.
Who may take a step is checked at the door (web guard, `Action`s in `TRANSITIONS`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

from trialcoord.accounts import signer_keys
from trialcoord.accounts.rules.accounts import Meaning, Signing
from trialcoord.accounts.rules.signers import SignerKey
from trialcoord.deviations import capa_store, review_store, store
from trialcoord.deviations.queue import StoredSignature, stored_signature
from trialcoord.deviations.records import Deviation, as_deviation, now, record_id, record_id_of
from trialcoord.deviations.rules.deviation_review import TRANSITIONS, Step, Transition, check_step
from trialcoord.documents.rules.signatures import Signature, Statement, judge
from trialcoord.kernel import audit_log, signing_keys
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.installation import Installation
from trialcoord.kernel.problems import Conflict, InvalidInput, NotFound, Problem, invalid
from trialcoord.kernel.rules.audit_entries import canonical_json
from trialcoord.scheduling import protocols


@dataclass(frozen=True, slots=True)
class JudgedSignature(StoredSignature):
    """A stored signature with its verdict now (`valid`, `invalid`...) and the reason."""

    verdict: str
    reason: str


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A bulk acknowledgement: the deviations taken into review, and the reason each refused one was refused."""

    acknowledged: list[int]
    refused: dict[int, str]


@dataclass(frozen=True, slots=True)
class CapaRecord:
    """A CAPA record: root cause, corrective and preventive action, and the deviations it groups (those the
    reader may see)."""

    id: int
    title: str
    root_cause: str
    corrective_action: str
    preventive_action: str
    owner: str
    due_on: str | None
    state: str
    created_by: str
    created_at: str
    closed_at: str | None
    row_version: int
    deviations: list[int]


async def take_step(
    study: str,
    deviation_id: int,
    step: str,
    actor: str,
    *,
    row_version: int | None = None,
    reason: str | None = None,
    response: str | None = None,
    corrective_action: str | None = None,
    classification: str | None = None,
    category: str | None = None,
    subcategory: str | None = None,
    signing: Signing | None = None,
    installation: Installation | None = None,
) -> Deviation:
    """Move the deviation one step; `signing` (from the ceremony) and the installation (the signer's key) for
    the signed steps."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        row = await store.find(study_id, deviation_id)
    if row is None:
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    fields = StepFields(reason, response, corrective_action, classification, category, subcategory)
    transition = check_step(step, row["state"], **fields.checked())
    signed_by = await signer(step, transition, actor, signing, installation)
    async with transaction(f"deviation {deviation_id} of study {study}"):
        await store.lock(deviation_id)
        row = await _found(study, study_id, deviation_id)
        if row_version is not None and row["row_version"] != row_version:
            raise Conflict(
                f"deviation {deviation_id} changed meanwhile (version {row['row_version']}, not"
                f" {row_version}); reload it and try again"
            )
        after = await apply_step(study, study_id, row, Step(step), actor, fields, signed_by)
    return as_deviation(after)


@dataclass(frozen=True, slots=True)
class StepFields:
    """What a review step is given besides the deviation: the reason (reopen), the site's response and corrective
    action (respond), the classification and its terms (classify)."""

    reason: str | None = None
    response: str | None = None
    corrective_action: str | None = None
    classification: str | None = None
    category: str | None = None
    subcategory: str | None = None

    def checked(self) -> dict[str, str | None]:
        """The fields `check_step` checks."""
        return {
            "reason": self.reason,
            "response": self.response,
            "classification": self.classification,
            "category": self.category,
            "subcategory": self.subcategory,
        }


Signer = tuple[Signing, tuple[SignerKey, Any]]  # the ceremony's signing, the signer's key and private key


async def signer(
    step: str, transition: Transition, actor: str, signing: Signing | None, installation: Installation | None
) -> Signer | None:
    """For a signed step: the ceremony's signing (for the step's meaning, by the actor) with the signer's key
    (derived once, however many deviations it signs); None for a step that is not signed."""
    if transition.meaning is None:
        return None
    if signing is None or signing.meaning != transition.meaning or signing.user_id != actor:
        raise invalid(f"to {step} a deviation, {actor} signs it for {transition.meaning}", field="password")
    if installation is None:
        raise TypeError("a signed review step needs the installation, which holds the signers' keys")
    return signing, await signer_keys.key_of_signer(signing.user_id, signing.printed_name, installation)


async def apply_step(
    study: str,
    study_id: int,
    row: dict[str, Any],
    step: Step,
    actor: str,
    fields: StepFields,
    signed_by: Signer | None,
) -> dict[str, Any]:
    """The step on a deviation read under its lock, in the caller's transaction: checked again, stored with its
    history row, signed when it is a signed step, audited. Returns the row after."""
    deviation_id = row["id"]
    transition = check_step(step, row["state"], **fields.checked())
    at = now()
    values = _values(
        step, at, fields.response, fields.corrective_action, fields.classification, fields.category, fields.subcategory
    )
    values.update(state=transition.target.value, updated_at=at)
    if not await store.update(deviation_id, row["row_version"], **values):
        raise Conflict(f"deviation {deviation_id} changed meanwhile; reload it and try again")
    detail = {k: v for k, v in values.items() if k not in ("state", "updated_at")}
    reason = (fields.reason or "").strip() or None
    step_id = await review_store.insert_step(
        deviation_id,
        str(step),
        row["state"],
        transition.target.value,
        actor,
        at,
        reason,
        canonical_json(detail).decode(),
    )
    after = await _found(study, study_id, deviation_id)
    audited = {"state": after["state"], **detail}
    if signed_by is not None:
        audited["signature"] = await _sign(study, after, step_id, *signed_by)
    await audit_log.record(
        actor, Change(str(step), "deviation", record_id_of(study, row), {"state": row["state"]}, audited, reason)
    )
    return after


async def _found(study: str, study_id: int, deviation_id: int) -> dict[str, Any]:
    row = await store.find(study_id, deviation_id)
    if row is None:
        raise NotFound(f"study {study} has no deviation {deviation_id}")
    return row


def _values(
    step: Step,
    at: str,
    response: str | None,
    corrective_action: str | None,
    classification: str | None,
    category: str | None,
    subcategory: str | None,
) -> dict[str, Any]:
    """The columns a step sets (`check_step` made sure a response is given to respond)."""
    if step is Step.RESPOND:
        return {
            "site_reason": (response or "").strip(),
            "corrective_action": (corrective_action or "").strip() or None,
        }
    if step is Step.CLASSIFY:
        return {"classification": classification, "category": category, "subcategory": subcategory}
    if step is Step.CLOSE:
        return {"closed_at": at}
    if step is Step.REOPEN:
        return {"closed_at": None}
    return {}


class SignedDecision(TypedDict):
    """What a classification or closure signature vouches for: signed as canonical JSON, so a mapping, stored with
    the signature and read back to verify it."""

    record: str
    state: str
    classification: str
    category: str
    subcategory: str | None
    description: str
    site_reason: str | None
    corrective_action: str | None


def decision(study: str, row: dict[str, Any]) -> SignedDecision:
    """The decision a signature of the deviation (a stored row) vouches for."""
    return SignedDecision(
        record=record_id_of(study, row),
        state=row["state"],
        classification=row["classification"],
        category=row["category"],
        subcategory=row["subcategory"],
        description=row["description"],
        site_reason=row["site_reason"],
        corrective_action=row["corrective_action"],
    )


async def _sign(study: str, row: dict[str, Any], step_id: int, signing: Signing, signer: tuple[SignerKey, Any]) -> str:
    signer_key, private = signer
    await signer_keys.hold_in_force(signer_key, signing.user_id)
    signed = canonical_json(decision(study, row))
    content = hashlib.sha256(signed).hexdigest()
    instant = max(now(), signer_key.valid_from)
    record = f"{record_id_of(study, row)}#{step_id}"
    statement = Statement(content, signing.user_id, Meaning(signing.meaning), instant, record)
    signature = Signature(
        statement,
        signing.printed_name,
        signer_key.key_id,
        signing_keys.sign_bytes(statement.canonical_bytes(), private),
    )
    check = judge(signature, {signer_key.key_id: signer_key}, content, signing_keys.verify_hex, instant)
    if not check.ok:  # never store a signature that would not verify
        raise Conflict(f"the signature could not be made: {check.reason}")
    await review_store.insert_signature(
        row["id"],
        step_id,
        signed.decode(),
        content,
        record,
        signing.user_id,
        signing.printed_name,
        str(signing.meaning),
        instant,
        signer_key.key_id,
        signature.value,
    )
    return signature.value


MEANING_OF_STEP = {str(step): transition.meaning for step, transition in TRANSITIONS.items() if transition.meaning}


def _judged(s: StoredSignature, keys: Mapping[str, SignerKey], now_instant: str) -> tuple[str, str]:
    """(verdict, reason) of one stored deviation signature: the decision stored with it is the one whose hash
    was signed, for this deviation, this step and this step's meaning, and the signature verifies against the
    registry."""
    rid = f"{record_id(s.study, s.site, s.subject_id, s.deviation)}#{s.step}"
    try:
        signed = json.loads(s.decision)
    except ValueError:
        signed = None
    if hashlib.sha256(s.decision.encode()).hexdigest() != s.content_sha256 or not isinstance(signed, dict):
        return "invalid", "the decision stored with it is not the one signed"
    if s.record != rid or signed.get("record") != rid.partition("#")[0]:
        return "invalid", f"it was made for {s.record}, not for this deviation's step ({rid})"
    if MEANING_OF_STEP.get(s.step_name) != s.meaning or signed.get("state") != s.to_state:
        return "invalid", f"a {s.meaning} signature does not belong to a {s.step_name} step"
    statement = Statement(s.content_sha256, s.signer_id, Meaning(s.meaning), s.instant, s.record)
    check = judge(
        Signature(statement, s.printed_name, s.key_id, s.value),
        keys,
        s.content_sha256,
        signing_keys.verify_hex,
        now_instant,
    )
    return str(check.verdict), check.reason


async def verify_signatures(study: str, deviation_id: int) -> list[JudgedSignature]:
    """Each signature of the deviation judged now (see `_judged`)."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        if await store.find(study_id, deviation_id) is None:
            raise NotFound(f"study {study} has no deviation {deviation_id}")
        stored = [stored_signature(row) for row in await review_store.signatures(deviation_id)]
        keys = {k.key_id: k for k in await signer_keys.all_keys()}
    at = now()
    judged = []
    for s in stored:
        verdict, reason = _judged(s, keys, at)
        judged.append(
            JudgedSignature(
                **{name: getattr(s, name) for name in StoredSignature.__dataclass_fields__},
                verdict=verdict,
                reason=reason,
            )
        )
    return judged


async def verify_stored(registry_keys: Mapping[str, SignerKey], now_instant: str) -> tuple[int, list[str]]:
    """For `trialcoord verify`: every deviation signature (see `_judged`), the audit entry made with it (a row
    inserted behind the application's back has none), and each classified or closed deviation's current
    classification against the last one signed."""
    async with read():
        stored = [stored_signature(row) for row in await review_store.signatures()]
    audited = {
        (e.new or {}).get("signature")
        for e in await audit_log.export_rows(audit_log.AuditFilter(record_type="deviation"), 10_000_000)
        if e.action in ("classify", "close")
    }
    problems: list[str] = []
    last_classified: dict[int, tuple[StoredSignature, dict[str, Any]]] = {}
    for s in stored:
        verdict, reason = _judged(s, registry_keys, now_instant)
        where = f"deviation {s.record}: signature by {s.signer_id} ({s.meaning}, {s.instant})"
        if verdict == "invalid":
            problems.append(f"{where}: {reason}")
        elif s.value not in audited:
            problems.append(f"{where}: the audit trail has no record of it being made")
        elif s.step_name == Step.CLASSIFY:
            last_classified[s.deviation] = (s, json.loads(s.decision))
    for s, signed in last_classified.values():
        now_holds = {
            "classification": s.current_classification,
            "category": s.current_category,
            "subcategory": s.current_subcategory,
        }
        if s.current_state in ("classified", "closed") and any(signed[k] != v for k, v in now_holds.items()):
            problems.append(
                f"deviation {s.record.partition('#')[0]}: its classification is not the one signed"
                f" ({signed['classification']}, {signed['category']}, {signed['subcategory']})"
            )
    return len(stored), problems


async def acknowledge_many(study: str, ids: list[int], actor: str) -> Acknowledgement:
    """Bulk acknowledgement from the queue: each deviation on its own (one refused does not stop the others)."""
    if not ids:
        raise invalid("choose at least one deviation to acknowledge", field="ids")
    done: list[int] = []
    refused: dict[int, str] = {}
    for deviation_id in dict.fromkeys(ids):
        try:
            done.append((await take_step(study, deviation_id, Step.ACKNOWLEDGE, actor)).id)
        except (InvalidInput, NotFound, Conflict) as exc:
            refused[deviation_id] = str(exc)
    return Acknowledgement(done, refused)


# CAPA --------------------------------------------------------------------------------------------


async def create_capa(
    study: str,
    title: str,
    root_cause: str,
    corrective: str,
    preventive: str,
    owner: str,
    due_on: date | None,
    deviation_ids: list[int],
    actor: str,
    sites: Collection[str] | None = None,
) -> CapaRecord:
    """A root cause with its corrective and preventive actions, grouping deviations of the study."""
    fields = {
        "title": title,
        "root_cause": root_cause,
        "corrective_action": corrective,
        "preventive_action": preventive,
        "owner": owner,
    }
    problems = [
        Problem(f"a CAPA record needs its {name.replace('_', ' ')}", field=name)
        for name, value in fields.items()
        if not value.strip()
    ]
    if problems:
        raise InvalidInput(problems)
    async with transaction(f"a CAPA record of study {study}"):
        study_id = (await protocols.require_study(study)).id
        rows = await _deviations(study, study_id, deviation_ids, sites)
        _not_grouped_elsewhere(rows, None)
        at = now()
        capa_id = await capa_store.insert_capa(
            study_id,
            title.strip(),
            root_cause.strip(),
            corrective.strip(),
            preventive.strip(),
            owner.strip(),
            due_on.isoformat() if due_on else None,
            actor,
            at,
        )
        changes = [
            Change(
                "create",
                "capa",
                f"{study}/capa/{capa_id}",
                None,
                {**{k: v.strip() for k, v in fields.items()}, "due_on": due_on, "deviations": [r["id"] for r in rows]},
            )
        ]
        await _group(study, rows, capa_id, at, changes)
        await audit_log.record(actor, *changes)
    return await get_capa(study, capa_id, sites, actor)


async def _group(study: str, rows: list[dict[str, Any]], capa_id: int, at: str, changes: list[Change]) -> None:
    for row in rows:
        if not await store.update(row["id"], row["row_version"], capa=capa_id, updated_at=at):
            raise Conflict(f"deviation {row['id']} changed meanwhile; try again")
        changes.append(
            Change("update", "deviation", record_id_of(study, row), {"capa": row["capa"]}, {"capa": capa_id})
        )


def _not_grouped_elsewhere(rows: list[dict[str, Any]], capa_id: int | None) -> None:
    """A deviation belongs to one CAPA record: moving it silently would rewrite a record already reviewed."""
    taken = [row["id"] for row in rows if row["capa"] is not None and row["capa"] != capa_id]
    if taken:
        raise Conflict(f"deviation {', '.join(map(str, taken))} already belongs to another CAPA record")


async def link_capa(
    study: str, capa_id: int, deviation_ids: list[int], actor: str, sites: Collection[str] | None = None
) -> CapaRecord:
    await get_capa(study, capa_id, sites, actor)  # NotFound for a record the actor may not see
    async with transaction(f"CAPA {capa_id} of study {study}"):
        study_id = (await protocols.require_study(study)).id
        await capa_store.lock_capa(capa_id)  # a close waits, or this sees it closed
        capa = await capa_store.find_capa(study_id, capa_id)
        if capa is None:
            raise NotFound(f"study {study} has no CAPA record {capa_id}")
        if capa["state"] == "closed":
            raise Conflict(f"CAPA record {capa_id} is closed: group the deviations under a new one")
        rows = [row for row in await _deviations(study, study_id, deviation_ids, sites) if row["capa"] != capa_id]
        _not_grouped_elsewhere(rows, capa_id)
        changes: list[Change] = []
        await _group(study, rows, capa_id, now(), changes)
        await audit_log.record(actor, *changes)
    return await get_capa(study, capa_id, sites, actor)


async def close_capa(
    study: str, capa_id: int, actor: str, reason: str, sites: Collection[str] | None = None
) -> CapaRecord:
    await get_capa(study, capa_id, sites, actor)  # NotFound for a record the actor may not see
    if not reason.strip():
        raise invalid("closing a CAPA record needs how its effectiveness was checked", field="reason")
    async with transaction(f"CAPA {capa_id} of study {study}"):
        study_id = (await protocols.require_study(study)).id
        capa = await capa_store.find_capa(study_id, capa_id)
        if capa is None:
            raise NotFound(f"study {study} has no CAPA record {capa_id}")
        if capa["state"] == "closed" or not await capa_store.close_capa(capa_id, now()):
            raise Conflict(f"CAPA record {capa_id} is already closed")
        await audit_log.record(
            actor,
            Change("close", "capa", f"{study}/capa/{capa_id}", {"state": "open"}, {"state": "closed"}, reason.strip()),
        )
    return await get_capa(study, capa_id, sites, actor)


async def _deviations(study: str, study_id: int, ids: list[int], sites: Collection[str] | None) -> list[dict[str, Any]]:
    rows = []
    for deviation_id in dict.fromkeys(ids):
        row = await store.find(study_id, deviation_id)
        if row is None or (sites is not None and row["site"] not in sites):
            raise NotFound(f"study {study} has no deviation {deviation_id}")
        rows.append(row)
    return rows


async def list_capas(study: str, sites: Collection[str] | None = None, user_id: str | None = None) -> list[CapaRecord]:
    """The study's CAPA records. `sites` (None: all): a reader limited to some sites sees a record they
    created or one grouping a deviation at their sites, and only those of its deviations."""
    async with read():
        study_id = (await protocols.require_study(study)).id
        capas = await capa_store.capas(study_id)
        grouped = await capa_store.grouped(study_id)
    members: dict[int, list[int]] = {}
    for deviation_id, capa_id, site in grouped:
        if sites is None or site in sites:
            members.setdefault(capa_id, []).append(deviation_id)
    return [
        CapaRecord(**capa, deviations=members.get(capa["id"], []))
        for capa in capas
        if sites is None or capa["created_by"] == user_id or capa["id"] in members
    ]


async def get_capa(
    study: str, capa_id: int, sites: Collection[str] | None = None, user_id: str | None = None
) -> CapaRecord:
    for capa in await list_capas(study, sites, user_id):
        if capa.id == capa_id:
            return capa
    raise NotFound(f"study {study} has no CAPA record {capa_id}")
