"""Signature requests: whoever manages a version's documents asks a named person to sign it with a meaning they
choose, and may remind them; the signer's signature of that version with that meaning fulfils the request
(`signatures.sign`, in the same transaction). The signing itself stays the Part 11 ceremony. Every request,
reminder and fulfilment is audited on the version's record.

A request is made only of someone who could sign: their own grants allow the meaning where the version is filed,
and they read the version (a monitor reads released versions only). The signer's open requests are what their
home page lists (`open_signature_requests`); a request of a version no longer in force (superseded or expired)
is closed: nobody can sign it any more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote, urlencode

from trialcoord.accounts import users
from trialcoord.accounts.rules.accounts import Meaning, normalize_user_id
from trialcoord.documents import people, signatures_store
from trialcoord.documents import signature_requests_store as store
from trialcoord.documents.documents import record_id, version_row
from trialcoord.documents.rules.documents import DocumentKey, Reader
from trialcoord.documents.signatures import UNSIGNABLE, may_sign, signing_refusal
from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_log import Change
from trialcoord.kernel.database.engine import read, transaction
from trialcoord.kernel.problems import Conflict, NotFound, invalid
from trialcoord.kernel.rules.audit_entries import utc_instant

OPEN, FULFILLED, CLOSED = "open", "fulfilled", "closed"


@dataclass(frozen=True, slots=True)
class SignatureRequest:
    """A request of a version as its page shows it. `state`: open, fulfilled (signed), or closed (the version is
    superseded or expired: nobody can sign it any more)."""

    id: int
    signer_id: str
    signer_name: str
    meaning: str
    requested_by: str
    requested_by_name: str
    requested_at: str  # UTC instant
    reminders: int
    reminded_at: str | None  # the last reminder's instant
    fulfilled_at: str | None  # the signature's instant
    state: str


@dataclass(frozen=True, slots=True)
class OpenSignatureRequest:
    """A request waiting for its signer, with the way to the version page where they sign it."""

    id: int
    study: str
    site: str | None  # None: a study-level document
    document: str  # the document's title (its name)
    label: str  # the version's label
    meaning: str
    requested_by: str  # user ID
    requested_by_name: str  # printed name
    requested_at: str  # UTC instant
    reminded_at: str | None  # the last reminder's instant; None: never reminded
    reminders: int
    path: str  # the version page: /studies/STUDY/documents/version?name=...&label=...&site=...


def version_path(key: DocumentKey, label: str) -> str:
    """The URL path (with its query) of a version's page."""
    query = urlencode({"name": key.name, "label": label, **({"site": key.site} if key.site else {})}, quote_via=quote)
    return f"/studies/{quote(key.study, safe='')}/documents/version?{query}"


async def request_signature(
    key: DocumentKey, label: str, signer_id: str, meaning: str, actor: str, today: date, reader: Reader | None = None
) -> SignatureRequest:
    """Ask `signer_id` to sign the version for `meaning`; audited. Refused naming the field: an unknown meaning or
    person, a signer whose grants do not allow it or who cannot read the version, a version no longer in force;
    a conflict when they signed it so already or were asked already (remind them instead). `reader` is the
    requester: a version they may not see is not found."""
    if meaning not in set(Meaning):
        raise invalid(f"unknown meaning '{meaning}'; choose one of {', '.join(Meaning)}", field="meaning")
    signer_id = normalize_user_id(signer_id)
    async with transaction(f"signature request of document {key.name} version {label}"):
        stored = await version_row(key, label, reader)
        if stored.version.status in UNSIGNABLE:
            raise invalid(
                f"version {label} is {stored.version.status}: a version no longer in force cannot be signed",
                field="label",
            )
        signer = await _signer(signer_id)
        grants = await users.grants_held(signer_id)
        refusal = signing_refusal(grants, key, meaning, today)
        where = f" at site {key.site}" if key.site else ""
        if refusal is not None:
            raise invalid(
                f"{signer.printed_name} ({signer_id}) may not sign {key.name} for {meaning}{where} ({refusal});"
                " ask someone whose grants allow it",
                field="signer_id",
            )
        if not Reader(tuple(grants), today).sees(key, stored.version.status):
            raise invalid(
                f"{signer.printed_name} ({signer_id}) reads released versions only: ask once version {label} is"
                " approved",
                field="signer_id",
            )
        signed = [
            s
            for s in await signatures_store.signatures_of(stored.id)
            if (s["signer_id"], s["meaning"]) == (signer_id, meaning)
        ]
        if signed:
            raise Conflict(f"{signer_id} signed version {label} of {key.name} for {meaning} at {signed[0]['instant']}")
        pending = await store.open_request(stored.id, signer_id, meaning)
        if pending is not None:
            raise Conflict(
                f"{signer_id} was asked to sign version {label} of {key.name} for {meaning} by"
                f" {pending['requested_by']} at {pending['requested_at']}; send a reminder instead"
            )
        at = utc_instant(audit_log.clock())
        request_id = await store.insert(stored.id, signer_id, meaning, actor, at)
        await audit_log.record(
            actor,
            Change(
                "create",
                "signature_request",
                record_id(key, label),
                None,
                {"request": request_id, "signer_id": signer_id, "meaning": meaning, "state": OPEN},
            ),
        )
        row = await store.find(request_id)
    return await _shown(row)


async def remind(
    key: DocumentKey, label: str, request_id: int, actor: str, reader: Reader | None = None
) -> SignatureRequest:
    """Remind the signer of an open request of this version (the last reminder is shown with the request);
    audited. A request of another version is not found; a fulfilled or closed one is a conflict."""
    async with transaction(f"signature request {request_id}"):
        stored = await version_row(key, label, reader)
        row = await store.find(request_id)
        if row is None or row["version"] != stored.id:
            raise NotFound(f"version {label} of {key.name} has no signature request {request_id}")
        if row["fulfilled_at"] is not None:
            raise Conflict(f"{row['signer_id']} signed version {label} for {row['meaning']} at {row['fulfilled_at']}")
        if stored.version.status in UNSIGNABLE:
            raise Conflict(f"version {label} is {stored.version.status}: nobody can sign it any more")
        at = utc_instant(audit_log.clock())
        count = await store.remind(request_id, at)
        if not count:  # signed between the read and the reminder (PostgreSQL reads committed rows)
            raise Conflict(f"{row['signer_id']} signed version {label} for {row['meaning']} just now")
        await audit_log.record(
            actor,
            Change(
                "update",
                "signature_request",
                record_id(key, label),
                {"request": request_id, "reminders": count - 1, "reminded_at": row["reminded_at"]},
                {"request": request_id, "reminders": count, "reminded_at": at},
                f"reminder to {row['signer_id']}",
            ),
        )
        row = await store.find(request_id)
    return await _shown(row)


async def requests_of_version(key: DocumentKey, label: str, reader: Reader | None = None) -> list[SignatureRequest]:
    """The version's requests, oldest first: open, fulfilled or closed; NotFound for a version the `reader`
    (given one) may not see."""
    async with read():
        stored = await version_row(key, label, reader)
        rows = await store.of_version(stored.id)
        names = await _names()
    return [_request(row, names) for row in rows]


async def open_signature_requests(user_id: str, today: date) -> list[OpenSignatureRequest]:
    """What `user_id` is asked to sign and still may: their open requests of versions in force, which their grants
    today allow them to sign for the meaning asked and to read; oldest first."""
    user_id = normalize_user_id(user_id)
    async with read():
        rows = await store.open_for(user_id)
        grants = await users.grants_held(user_id)
        names = await _names() if rows else {}
    reader = Reader(tuple(grants), today)
    found = []
    for row in rows:
        key = DocumentKey(row["study"], row["site"] or None, row["name"])
        if row["status"] in UNSIGNABLE or not reader.sees(key, row["status"]):
            continue
        if not may_sign(grants, key, row["meaning"], today):
            continue
        found.append(
            OpenSignatureRequest(
                row["id"],
                key.study,
                key.site,
                key.name,
                row["label"],
                row["meaning"],
                row["requested_by"],
                names.get(row["requested_by"], row["requested_by"]),
                row["requested_at"],
                row["reminded_at"],
                row["reminders"],
                version_path(key, row["label"]),
            )
        )
    return found


async def possible_signers(key: DocumentKey, status: str, today: date) -> list[people.Person]:
    """Who may be asked to sign a version of the document in `status`: people granted at its site (or at any site,
    for a study-level document) or for the whole study, who read it and whose grants allow at least one meaning
    there today."""
    return [
        person
        for person in await people.of_study(key.study, today)
        if (key.site is None or person.works_at(key.site))
        and Reader(person.grants, today).sees(key, status)
        and any(may_sign(person.grants, key, meaning, today) for meaning in Meaning)
    ]


async def _signer(signer_id: str) -> users.UserWithGrants:
    try:
        signer = await users.get_user(signer_id)
    except NotFound:
        raise invalid(f"no user {signer_id}: choose who is to sign", field="signer_id") from None
    if signer.status != "active":
        raise invalid(f"{signer.printed_name} ({signer_id}) has a {signer.status} account", field="signer_id")
    return signer


async def _names() -> dict[str, str]:
    return {user.user_id: user.printed_name for user in await users.list_users()}


async def _shown(row: dict | None) -> SignatureRequest:
    if row is None:  # written just now, in the same transaction
        raise AssertionError("a signature request was stored but cannot be read back")
    async with read():
        return _request(row, await _names())


def _request(row: dict, names: dict[str, str]) -> SignatureRequest:
    state = FULFILLED if row["fulfilled_at"] else (CLOSED if row["status"] in UNSIGNABLE else OPEN)
    return SignatureRequest(
        row["id"],
        row["signer_id"],
        names.get(row["signer_id"], row["signer_id"]),
        row["meaning"],
        row["requested_by"],
        names.get(row["requested_by"], row["requested_by"]),
        row["requested_at"],
        row["reminders"],
        row["reminded_at"],
        row["fulfilled_at"],
        state,
    )
