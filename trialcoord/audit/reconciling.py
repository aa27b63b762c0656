"""`audit reconcile`: every regulated table's current rows against the values the audit trail recorded
(Part 11 11.10(e); the rule is `kernel/rules/reconciliation.py`, the fields covered are in docs/audit-trail.md).

One read, one snapshot: the entries of the record types below in ascending sequence (up to the head read first),
then each table once, a keyset batch at a time. Like the sponsor package's store, this reads the tables of the
features below it directly: it is a read of everything at once, which no feature's use cases offer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from trialcoord.kernel import audit_store
from trialcoord.kernel.database.engine import bound_engine, fetch, fetch_rows, is_sqlite, read
from trialcoord.kernel.rules.reconciliation import (
    Difference,
    Reconciler,
    RecordKind,
    Values,
    flag,
    iso_day,
    json_list,
    marker_presence,
    presence,
)

BATCH = 10_000

# What names a participant's records (`STUDY/SITE/SUBJECT`): joined into every participant's table.
_PERSON = (
    "JOIN participants p ON p.id = {0}.participant JOIN sites s ON s.id = p.site JOIN studies st ON st.id = p.study"
)


def _parts(count: int, marker: str | None = None, at: int = 0) -> Callable[[str], bool]:
    def shape(record_id: str) -> bool:
        parts = record_id.split("/")
        return len(parts) == count and (marker is None or parts[at] == marker)

    return shape


def _visit_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    """A booking and a missed visit store the entry's reason with them."""
    if new is None:
        return None
    if "appointment" in new:
        return {**new, "appointment_reason": reason}
    if "missed" in new:
        return {**new, "missed": bool(new["missed"]), "missed_reason": reason if new["missed"] else None}
    return new


def _closure_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    return None if new is None else {**new, "reason": reason}


def _grant_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    if action == "grant":
        return {**(new or {}), "granted_by": actor, "revoked_by": None}
    if action == "revoke":
        return {"revoked_by": actor}
    return new


def _deviation_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    if new is None:
        return None
    values = dict(new)
    if "caused_by_entry" in values:  # a resolution names the entry that resolved it
        values["resolved_by_entry"] = values.pop("caused_by_entry")
    if action == "reopen" and "closed_at" not in values:  # detection found the fact again
        values["resolved_by_entry"] = None
    return values


def _capa_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    if action == "create":
        return {**(new or {}), "state": "open", "created_by": actor}
    return new


@dataclass(frozen=True, slots=True)
class Table:
    """A kind of record, the SELECT of its table's rows (ending in its WHERE, paged by `key`, the first column
    selected) and the (record_id, values in the order of the kind's fields) of a row."""

    kind: RecordKind
    select: str
    key: str
    row: Callable[[Sequence[Any]], tuple[str, Sequence[Any]]]


def _rid(*parts: Any) -> str:
    return "/".join(str(part) for part in parts)


TABLES: tuple[Table, ...] = (
    Table(
        RecordKind("study", "studies", ("title",)),
        "SELECT id, code, title FROM studies WHERE",
        "id",
        lambda r: (r[1], (r[2],)),
    ),
    Table(
        RecordKind("protocol_version", "protocol_versions", ("effective", "source_name", "sha256")),
        "SELECT v.id, st.code, v.version, v.effective, v.source_name, v.sha256 FROM protocol_versions v"
        " JOIN studies st ON st.id = v.study WHERE",
        "v.id",
        lambda r: (_rid(r[1], "protocol", r[2]), (iso_day(r[3]), r[4], r[5])),
    ),
    Table(
        RecordKind("site", "sites", ("name", "time_zone", "calendar"), shape=_parts(2)),
        "SELECT s.id, st.code, s.code, s.name, s.time_zone, s.calendar FROM sites s JOIN studies st ON st.id = s.study"
        " WHERE",
        "s.id",
        lambda r: (_rid(r[1], r[2]), (r[3], r[4], r[5])),
    ),
    Table(
        RecordKind(
            "site",
            "site_closures",
            ("first_day", "last_day", "reason"),
            shape=_parts(4, "closure", 2),
            values=_closure_values,
        ),
        "SELECT c.id, st.code, s.code, c.first_day, c.last_day, c.reason FROM site_closures c"
        " JOIN sites s ON s.id = c.site JOIN studies st ON st.id = s.study WHERE",
        "c.id",
        lambda r: (
            _rid(r[1], r[2], "closure", iso_day(r[3])),
            (iso_day(r[3]), iso_day(r[4]), r[5]),
        ),
    ),
    Table(
        RecordKind("participant", "participants", ("site", "arm", "protocol_version", "enrolled_on"), shape=_parts(3)),
        "SELECT p.id, st.code, s.code, p.subject_id, p.arm, v.version, p.enrolled_on FROM participants p"
        " JOIN sites s ON s.id = p.site JOIN studies st ON st.id = p.study"
        " JOIN protocol_versions v ON v.id = p.protocol_version WHERE",
        "p.id",
        lambda r: (
            f"{r[1]}/{r[2]}/{r[3]}",
            (r[2], r[4], r[5], iso_day(r[6])),
        ),
    ),
    Table(
        RecordKind("participant_event", "recorded_events", ("date",)),
        f"SELECT e.id, st.code, s.code, p.subject_id, e.event, e.date FROM recorded_events e {_PERSON.format('e')}"
        " WHERE",
        "e.id",
        lambda r: (f"{r[1]}/{r[2]}/{r[3]}/{r[4]}", (iso_day(r[5]),)),
    ),
    Table(
        RecordKind(
            "visit",
            "visits",
            ("actual", "appointment", "appointment_reason", "missed", "missed_reason"),
            values=_visit_values,
            defaults=dict.fromkeys(("actual", "appointment", "appointment_reason", "missed_reason"), None)
            | {"missed": False},
        ),
        "SELECT x.id, st.code, s.code, p.subject_id, x.code, x.actual, x.appointment, x.appointment_reason,"
        f" x.missed_reason FROM visits x {_PERSON.format('x')} WHERE",
        "x.id",
        lambda r: (
            f"{r[1]}/{r[2]}/{r[3]}/{r[4]}",
            (iso_day(r[5]), iso_day(r[6]), r[7], r[8] is not None, r[8]),
        ),
    ),
    Table(
        RecordKind(
            "participant_identity",
            "participant_identities",
            ("name", "date_of_birth", "contact", "mrn"),
            values=marker_presence,
        ),
        "SELECT i.participant, st.code, s.code, p.subject_id, i.name, i.date_of_birth, i.contact, i.mrn"
        f" FROM participant_identities i {_PERSON.format('i')} WHERE",
        "i.participant",
        lambda r: (
            f"{r[1]}/{r[2]}/{r[3]}",
            (presence(r[4]), presence(r[5]), presence(r[6]), presence(r[7])),
        ),
    ),
    Table(
        RecordKind(
            "grant",
            "grants",
            ("user_id", "role", "study", "site", "valid_from", "valid_to", "personal_data", "granted_by", "revoked_by"),
            values=_grant_values,
            deletes=frozenset(),
        ),
        "SELECT id, user_id, role, study, site, valid_from, valid_to, personal_data, granted_by, revoked_by FROM grants"
        " WHERE",
        "id",
        lambda r: (
            str(r[0]),
            (r[1], r[2], r[3], r[4], r[5], r[6], flag(r[7]), r[8], r[9]),
        ),
    ),
    Table(
        RecordKind("consent_version", "consent_versions", ("protocol_version", "effective_on"), deletes=frozenset()),
        "SELECT id, study, site, language, label, protocol_version, effective_on FROM consent_versions WHERE",
        "id",
        lambda r: (_rid(r[1], r[2], "consent", r[3], r[4]), (r[5], r[6])),
    ),
    Table(
        RecordKind(
            "participant_consent",
            "participant_consents",
            ("signed_on", "obtained_by", "signed_by", "paper_reference", "language", "label"),
        ),
        "SELECT c.id, st.code, s.code, p.subject_id, cv.label, c.signed_on, c.obtained_by, c.signed_by,"
        " c.paper_reference, c.paper_label, c.paper_language, cv.language FROM participant_consents c"
        f" {_PERSON.format('c')} LEFT JOIN consent_versions cv ON cv.id = c.consent_version WHERE",
        "c.id",
        lambda r: (
            _rid(r[1], r[2], r[3], "consent", r[4] if r[4] is not None else f"paper/{r[5]}"),
            (
                r[5],
                r[6],
                json_list(r[7]),
                r[8],
                r[11] if r[4] is not None else r[10],  # language
                r[4] if r[4] is not None else r[9],  # label
            ),
        ),
    ),
    Table(
        RecordKind(
            "deviation",
            "deviations",
            (
                "visit",
                "occurrence",
                "rule",
                "source",
                "category",
                "subcategory",
                "classification",
                "state",
                "occurred_on",
                "days_outside",
                "description",
                "site_reason",
                "corrective_action",
                "capa",
                "closed_at",
                "resolved_by_entry",
            ),
            values=_deviation_values,
            deletes=frozenset(),
        ),
        "SELECT d.id, st.code, s.code, p.subject_id, d.visit, d.occurrence, d.rule, d.source, d.category,"
        " d.subcategory, d.classification, d.state, d.occurred_on, d.days_outside, d.description, d.site_reason,"
        " d.corrective_action, d.capa, d.closed_at, d.resolved_by_entry FROM deviations d"
        " JOIN studies st ON st.id = d.study JOIN sites s ON s.id = d.site"
        " LEFT JOIN participants p ON p.id = d.participant WHERE",
        "d.id",
        lambda r: (
            _rid(r[1], r[2], r[3] or "-", "deviation", r[0]),
            tuple(r[4:]),
        ),
    ),
    Table(
        RecordKind(
            "capa",
            "capas",
            ("title", "root_cause", "corrective_action", "preventive_action", "owner", "due_on", "state", "created_by"),
            values=_capa_values,
            deletes=frozenset(),
        ),
        "SELECT c.id, st.code, c.title, c.root_cause, c.corrective_action, c.preventive_action, c.owner, c.due_on,"
        " c.state, c.created_by FROM capas c JOIN studies st ON st.id = c.study WHERE",
        "c.id",
        lambda r: (
            _rid(r[1], "capa", r[0]),
            tuple(r[2:10]),
        ),
    ),
    Table(
        RecordKind("document", "documents", ("artifact", "site", "person"), deletes=frozenset()),
        "SELECT id, study, site, name, artifact, person FROM documents WHERE",
        "id",
        lambda r: (
            _rid(r[1], *([r[2]] if r[2] else []), "documents", r[3]),
            (r[4], r[2], r[5]),
        ),
    ),
    Table(
        RecordKind(
            "document_version",
            "document_versions",
            ("sha256", "size", "media_type", "status", "change_summary", "expires_on"),
            deletes=frozenset(),
        ),
        "SELECT v.id, d.study, d.site, d.name, v.label, v.sha256, v.size, v.media_type, v.status, v.change_summary,"
        " v.expires_on FROM document_versions v JOIN documents d ON d.id = v.document WHERE",
        "v.id",
        lambda r: (
            _rid(r[1], *([r[2]] if r[2] else []), "documents", r[3], r[4]),
            tuple(r[5:11]),
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    entries: int  # the trail's entries about the records checked
    rows: dict[str, int]  # table -> rows compared
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


async def reconcile(tables: Sequence[Table] = TABLES) -> Reconciliation:
    """Fold the trail, then compare each table's rows; everything in one snapshot."""
    reconciler = Reconciler(table.kind for table in tables)
    differences: list[Difference] = []
    counts: dict[str, int] = {}
    outermost = bound_engine().current_transaction.get() is None
    async with read():
        if outermost and not is_sqlite():  # one snapshot for every statement (SQLite's read transaction is one)
            await fetch("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        head = await audit_store.head_size()
        async for rows in audit_store.stream_records(reconciler.record_types, head):
            reconciler.feed_rows(rows, _parsed)
        for table in tables:
            count = 0
            async for batch in table_rows(table):
                count += len(batch)
                differences += reconciler.compare(table.kind, map(table.row, batch))
            counts[table.kind.table] = counts.get(table.kind.table, 0) + count
    differences += reconciler.unmatched()
    return Reconciliation(reconciler.entries, counts, differences)


_decode = msgspec.json.Decoder().decode  # several times json.loads' speed, the same values


def _parsed(text: str) -> Any:
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return None  # not JSON: `audit verify` reports the entry as altered


async def table_rows(table: Table) -> AsyncIterator[list[Sequence[Any]]]:
    after = 0
    while True:
        rows = await fetch_rows(f"{table.select} {table.key} > {{}} ORDER BY {table.key} LIMIT {BATCH}", after)
        if rows:
            yield rows
        if len(rows) < BATCH:
            return
        after = rows[-1][0]


def summary(found: Reconciliation) -> str:
    rows = sum(found.rows.values())
    if found.ok:
        return f"all {rows} rows of {len(found.rows)} regulated tables match the {found.entries} entries about them"
    return (
        f"{len(found.differences)} differences between {rows} rows of {len(found.rows)} regulated tables and"
        f" the {found.entries} entries about them"
    )


def as_json(found: Reconciliation) -> dict[str, Any]:
    return {
        "ok": found.ok,
        "entries": found.entries,
        "rows": found.rows,
        "differences": [
            {
                "table": d.table,
                "record_type": d.record_type,
                "record_id": d.record_id,
                "field": d.field,
                "current": d.current,
                "expected": d.expected,
                "sequence": d.sequence,
                "what": d.what,
            }
            for d in found.differences
        ],
    }
