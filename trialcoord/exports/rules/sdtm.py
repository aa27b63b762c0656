"""SDTM datasets as the sponsor package carries them: variables with their metadata, rows, and the limits of SAS
transport version 5 that the FDA requires (compliance-reference.md, SDTM): names of at most 8 characters in upper
case, labels of at most 40, character values of at most 200 bytes, ASCII only. A value that does not fit is an
error naming the dataset, the row and the variable; it is never cut. Pure: no file, no clock, no database."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from operator import itemgetter

from trialcoord.kernel.problems import InvalidInput, Problem

NAME = re.compile(r"[A-Z][A-Z0-9_]{0,7}")
MAX_LABEL, MAX_CHAR_BYTES = 40, 200

Value = str | float | int | None


class Kind(StrEnum):
    TEXT = "text"  # SAS character
    NUMBER = "float"  # SAS numeric (an 8-byte double); integers are exact up to 2**53


class Origin(StrEnum):
    """Define-XML's origin types the package uses: what trialcoord computed, and what it was told."""

    ASSIGNED = "Assigned"  # set by the study's design or by trialcoord (STUDYID, DOMAIN, DVSEQ)
    DERIVED = "Derived"  # computed from recorded data by a rule (VISITDY, --DY, EPOCH)
    COLLECTED = "Collected"  # recorded at the site (visit dates, consent dates)
    PROTOCOL = "Protocol"  # from the protocol's definition (TV, TA)


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    label: str
    kind: Kind = Kind.TEXT
    origin: Origin = Origin.COLLECTED
    rule: str | None = None  # how a derived value is computed, in words (Define-XML's method)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the writers and Define-XML need to know of a dataset's columns, gathered in one pass over its rows
    (by `check`, else on first use) rather than once by each of them."""

    lengths: dict[str, int]  # each character variable's longest value in bytes (at least 1), as the XPT writes it
    # Each variable's distinct values, None included when a value is null: few in a study's columns (its dates,
    # visit numbers and study days repeat over a million rows), and enough to tell a column's type and lengths.
    values: dict[str, frozenset[Value]]
    # Every value is null or of its variable's kind: str for text, int or float (never bool) for a number. When
    # true, `values` tells each value's cell apart (1 and True, which a set takes for one, are never both there).
    typed: bool


@dataclass(frozen=True, slots=True)
class Dataset:
    """One SDTM dataset: `name` (the domain, e.g. DV, or SUPPDV), its label and variables in the SDTMIG order,
    and rows as tuples in that order."""

    name: str
    label: str
    variables: tuple[Variable, ...]
    rows: tuple[tuple[Value, ...], ...] = field(default=())
    # The rows' profile, made once: the rows are immutable, and `replace` gives a new dataset without it.
    _profile: Profile | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.variables)

    def profile(self) -> Profile:
        if self._profile is None:
            object.__setattr__(self, "_profile", _profile_of(self))  # a cache of what the frozen rows hold
        assert self._profile is not None
        return self._profile

    def lengths(self) -> dict[str, int]:
        """Each character variable's length in bytes: its longest value (at least 1), as the XPT writes it."""
        return dict(self.profile().lengths)


_NUMBER_TYPES, _TEXT_TYPES = frozenset({int, float, type(None)}), frozenset({str, type(None)})


def _profile_of(data: Dataset) -> Profile:
    """Two passes of C loops per column (its distinct values; a number column's types too), no Python per value."""
    if not _same_width(data):
        raise ValueError(f"dataset {data.name}: a row's values do not match its {len(data.variables)} variables")
    lengths: dict[str, int] = {}
    values: dict[str, frozenset[Value]] = {}
    typed = True
    for index, variable in enumerate(data.variables):
        column = itemgetter(index)
        distinct = values[variable.name] = frozenset(map(column, data.rows))
        if variable.kind is Kind.TEXT:
            # str equals only str, so the distinct values hold every type of the column
            typed = typed and {type(value) for value in distinct} <= _TEXT_TYPES
            # ASCII replaces each character it lacks with one byte, so a str's length is its bytes' there
            lengths[variable.name] = max((len(v) for v in distinct if isinstance(v, str)), default=1) or 1
        else:
            typed = typed and set(map(type, map(column, data.rows))) <= _NUMBER_TYPES
    return Profile(lengths, values, typed)


def dataset(name: str, label: str, variables: Sequence[Variable], rows: Iterable[Mapping[str, Value]]) -> Dataset:
    """A dataset from rows keyed by variable name (a missing key is a null), checked against the limits."""
    names = [v.name for v in variables]
    return check(Dataset(name, label, tuple(variables), tuple(tuple(row.get(n) for n in names) for row in rows)))


def check(data: Dataset) -> Dataset:
    """Every limit of XPT v5 and SDTM, each broken one named by dataset, row (1-based) and variable; returns the
    dataset, its profile made on the way. The values are judged by their columns' distinct values: only a dataset
    with a value that may not fit is walked row by row, to name where."""
    problems: list[Problem] = []
    where = f"dataset {data.name}"
    if not NAME.fullmatch(data.name):
        problems.append(Problem(f"{where}: the name must be 1-8 upper-case letters, digits or _", field="dataset"))
    problems += _label_problems(where, data.label, "dataset")
    seen: set[str] = set()
    for variable in data.variables:
        at = f"{where}, variable {variable.name}"
        if not NAME.fullmatch(variable.name):
            problems.append(Problem(f"{at}: the name must be 1-8 upper-case letters, digits or _", field="variable"))
        if variable.name in seen:
            problems.append(Problem(f"{at}: the variable is listed twice", field="variable"))
        seen.add(variable.name)
        problems += _label_problems(at, variable.label, "label")
    if not _same_width(data) or not _fits(data.variables, data.profile()):
        problems += _row_problems(data)
    if problems:
        raise InvalidInput(problems)
    return data


def _same_width(data: Dataset) -> bool:
    return set(map(len, data.rows)) <= {len(data.variables)}


def _fits(variables: Sequence[Variable], profile: Profile) -> bool:
    """Whether every value surely fits (else `_row_problems` looks for the ones that do not)."""
    if not profile.typed:
        return False
    for variable in variables:
        if variable.kind is Kind.TEXT:
            texts = [value for value in profile.values[variable.name] if isinstance(value, str)]
            if profile.lengths[variable.name] > MAX_CHAR_BYTES or not all(map(str.isascii, texts)):
                return False
    return True


def _row_problems(data: Dataset) -> list[Problem]:
    where, problems = f"dataset {data.name}", []
    for number, row in enumerate(data.rows, start=1):
        if len(row) != len(data.variables):
            problems.append(Problem(f"{where}, row {number}: {len(row)} values for {len(data.variables)} variables"))
            continue
        for variable, value in zip(data.variables, row):
            problem = _value_problem(variable, value)
            if problem:
                problems.append(Problem(f"{where}, row {number}, variable {variable.name}: {problem}", field="value"))
    return problems


def _label_problems(where: str, label: str, what: str) -> list[Problem]:
    if not label.isascii():
        return [Problem(f"{where}: the label {label!r} is not ASCII", field=what)]
    if not 0 < len(label) <= MAX_LABEL:
        return [Problem(f"{where}: the label has {len(label)} characters; 1 to {MAX_LABEL} fit", field=what)]
    return []


def _value_problem(variable: Variable, value: Value) -> str | None:
    if value is None:
        return None
    if variable.kind is Kind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{value!r} is not a number"
        return None
    if not isinstance(value, str):
        return f"{value!r} is not text"
    if not value.isascii():
        return f"{value!r} is not ASCII (SAS transport version 5 holds ASCII only)"
    if len(value) > MAX_CHAR_BYTES:
        return f"{len(value)} bytes; at most {MAX_CHAR_BYTES} fit (the value is never cut)"
    return None


def study_day(day: date, reference: date) -> int:
    """SDTM's --DY: the day's number counted from the reference start date (RFSTDTC), with no day 0."""
    delta = (day - reference).days
    return delta + 1 if delta >= 0 else delta


def dtc(day: date | None) -> str | None:
    """An ISO 8601 date as SDTM's --DTC variables hold it (the date only: trialcoord records dates)."""
    return day.isoformat() if day is not None else None
