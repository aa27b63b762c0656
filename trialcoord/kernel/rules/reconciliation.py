"""The current records against the audit trail (Part 11 11.10(e)): the trail's entries, folded in sequence per
record, give the values the trail says each record holds now; each current row is compared with them.

A `RecordKind` says which entries name rows of one table (`record_type`, and the shape of `record_id` when one
type names rows of two tables), which fields the entries record (`fields`: an entry's `new` by those names, or
what `values` makes of an entry), which actions delete the row, and what a row no entry named must hold
(`defaults`: a visit nobody recorded anything on; None: every row needs an entry). The adapter reads the entries
in ascending sequence and each table once, each row's values in the order of the kind's fields and in the entries'
canonical form (`iso_day`, `flag`, `json_list`, `presence`), and hands them to a `Reconciler`.

Pure: no clock, no database. docs/audit-trail.md, "Current records against the trail", lists the fields covered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

Values = Mapping[str, Any]

DIFFERS = "differs from the trail"
CREATED_OUTSIDE = "created outside the recorded paths"
DELETED_OUTSIDE = "deleted outside the recorded paths"
PRESENT_THOUGH_DELETED = "present though the trail deleted it"


def new_values(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    """What most entries set: their `new`."""
    return new


def any_record(record_id: str) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class RecordKind:
    record_type: str
    table: str  # named in the report
    fields: tuple[str, ...]  # compared, by the entries' names; the adapter's rows use the same names
    shape: Callable[[str], bool] = any_record  # which record IDs of the type name rows of this table
    # (action, actor, new, reason) -> the fields an entry sets
    values: Callable[[str, str, Values | None, str | None], Values | None] = new_values
    deletes: frozenset[str] = frozenset({"delete"})
    defaults: Values | None = None  # what a row no entry named holds, every field; None: such a row was created outside

    def __post_init__(self) -> None:
        if self.defaults is not None and set(self.defaults) != set(self.fields):
            raise ValueError(f"{self.table}: defaults must name every field compared, and only those")


@dataclass(frozen=True, slots=True)
class Difference:
    """A current row that is not what the trail says: `field` None for the whole row (created or deleted outside
    the recorded paths); `sequence` the entry that set the expected value (None: no entry set it)."""

    table: str
    record_type: str
    record_id: str
    field: str | None
    current: Any
    expected: Any
    sequence: int | None
    what: str

    def __str__(self) -> str:
        by = f"entry {self.sequence}" if self.sequence is not None else "no entry"
        if self.field is None:
            return f"{self.table} {self.record_id}: {self.what} ({by})"
        return (
            f"{self.table} {self.record_id}: {self.field} is {_shown(self.current)}, the trail says"
            f" {_shown(self.expected)} ({by})"
        )


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@dataclass(slots=True)
class _Record:
    fields: dict[str, tuple[Any, int | None]] = field(default_factory=dict)  # name -> (value, sequence that set it)
    last: int = 0
    deleted: int | None = None


class Reconciler:
    """Feed the entries in ascending sequence (`feed_rows`, `feed`), then each kind's rows once (`compare`), then
    `unmatched`."""

    def __init__(self, kinds: Iterable[RecordKind]):
        self.kinds = tuple(kinds)
        self._by_type: dict[str, list[RecordKind]] = {}
        for kind in self.kinds:
            self._by_type.setdefault(kind.record_type, []).append(kind)
        self._records: dict[str, dict[str, _Record]] = {kind.table: {} for kind in self.kinds}  # by record_id
        self.entries = 0

    @property
    def record_types(self) -> tuple[str, ...]:
        return tuple(self._by_type)

    def feed(
        self, sequence: int, actor: str, action: str, record_type: str, record_id: str, new: Any, reason: str | None
    ) -> None:
        """One entry, its `new` already parsed."""
        self.feed_rows([(sequence, actor, action, record_type, record_id, new, reason)], lambda new: new)

    def feed_rows(self, rows: Iterable[Sequence[Any]], parse: Callable[[Any], Any]) -> None:
        """Entries as stored rows (sequence, actor, action, record_type, record_id, new, reason), `new` as text that
        `parse` makes a mapping of (the adapter's JSON decoder; None for text that is not JSON)."""
        by_type, by_table = self._by_type, self._records
        for sequence, actor, action, record_type, record_id, text, reason in rows:
            kinds = by_type.get(record_type)
            if kinds is None:
                continue
            new = None if text is None else parse(text)
            mapping = new if type(new) is dict else None
            for kind in kinds:
                if kind.shape is not any_record and not kind.shape(record_id):  # most kinds take every ID
                    continue
                self.entries += 1
                records = by_table[kind.table]
                record = records.get(record_id)
                if record is None:
                    record = records[record_id] = _Record()
                record.last = sequence
                if action in kind.deletes:
                    record.deleted = sequence
                    continue
                record.deleted = None
                values = mapping if kind.values is new_values else kind.values(action, actor, mapping, reason)
                if values:
                    fields = record.fields
                    for name in kind.fields:
                        if name in values:
                            fields[name] = (values[name], sequence)

    def compare(self, kind: RecordKind, rows: Iterable[tuple[str, Sequence[Any]]]) -> Iterator[Difference]:
        """Each current row of `kind`'s table, as (record_id, its values in the order of `kind.fields`), against the
        trail."""
        records, table, record_type, names = self._records[kind.table], kind.table, kind.record_type, kind.fields
        index = {name: i for i, name in enumerate(names)}
        # What a row no entry names must hold, in the row's order (a kind with defaults gives one for every field).
        unnamed = None if kind.defaults is None else tuple(kind.defaults[name] for name in names)
        for record_id, row in rows:
            record = records.pop(record_id, None)
            if record is None:
                if unnamed is None:
                    yield Difference(table, record_type, record_id, None, None, None, None, CREATED_OUTSIDE)
                elif tuple(row) != unnamed:  # one comparison for the many rows nobody recorded anything on
                    for name, current, expected in zip(names, row, unnamed, strict=True):
                        if current != expected:
                            yield Difference(table, record_type, record_id, name, current, expected, None, DIFFERS)
                continue
            if record.deleted is not None:
                deleted = record.deleted
                yield Difference(table, record_type, record_id, None, None, None, deleted, PRESENT_THOUGH_DELETED)
                continue
            fields = record.fields
            for name, (expected, sequence) in fields.items():
                current = row[index[name]]
                if current != expected:
                    yield Difference(table, record_type, record_id, name, current, expected, sequence, DIFFERS)
            if unnamed is not None and len(fields) < len(names):  # the fields no entry set hold their defaults
                for name, current, default in zip(names, row, unnamed, strict=True):
                    if name not in fields and current != default:
                        yield Difference(table, record_type, record_id, name, current, default, None, DIFFERS)

    def unmatched(self) -> Iterator[Difference]:
        """Records the trail says exist whose row no `compare` met: deleted outside the recorded paths."""
        for kind in self.kinds:
            records = self._records[kind.table]
            for record_id, record in sorted(records.items()):
                if record.deleted is None:
                    yield Difference(
                        kind.table, kind.record_type, record_id, None, None, None, record.last, DELETED_OUTSIDE
                    )
            records.clear()


# The entries' canonical forms of stored values --------------------------------------------------------------


def iso_day(value: Any) -> Any:
    """A DATE column (a date from asyncpg, ISO text from SQLite) as the ISO text the entries hold."""
    return value.isoformat() if isinstance(value, date) else value


def flag(value: Any) -> Any:
    """A BOOLEAN column (0/1 on SQLite) as the entries' JSON boolean."""
    return None if value is None else bool(value)


def json_list(value: Any) -> Any:
    """A JSON list stored as text (NULL: empty), as the entries' list."""
    if value is None:
        return []
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def presence(value: Any) -> str:
    """Whether an encrypted value is stored: all a change marker can be compared with."""
    return "absent" if value is None else "present"


def marker_presence(action: str, actor: str, new: Values | None, reason: str | None) -> Values | None:
    """A personal-data change marker (`set`, `changed`, `cleared`) as the presence of the value it names."""
    if new is None:
        return None
    return {name: "absent" if marker == "cleared" else "present" for name, marker in new.items()}
