"""An SDTM dataset read from SAS XPORT (with pyreadstat) or CSV: its rows over its columns, checked for the
variables its domain needs; problems name the file."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trialcoord.kernel.problems import InvalidInput, Problem

NEEDED = {"SV": ("USUBJID", "SVSTDTC"), "DS": ("USUBJID", "DSDECOD", "DSSTDTC"), "DM": ("USUBJID",)}


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str  # the file's name, as problems cite it
    domain: str  # SV, DS or DM
    rows: Sequence[dict[str, Any]]


class Columns(Sequence):
    """A dataset's rows over its columns (as pyreadstat returns them): each row's dict is made when it is read,
    so a million-row dataset is held once, as columns, not as a million dicts."""

    def __init__(self, columns: dict[str, list]):
        self.columns, self.names = columns, list(columns)
        self.length = len(next(iter(columns.values()), []))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.length))]
        return {name: self.columns[name][index] for name in self.names}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        names = self.names
        for values in zip(*(self.columns[name] for name in names)):
            yield dict(zip(names, values))


def read_dataset(path: Path, domain: str) -> Dataset:
    """A dataset's rows from XPT (by the extension .xpt) or CSV; InvalidInput names the file."""
    name = path.name
    try:
        if path.suffix.lower() == ".xpt":
            import pyreadstat  # only for XPT files

            data, _ = pyreadstat.read_xport(str(path), output_format="dict")
            rows = Columns(
                {
                    key.upper(): values.tolist() if hasattr(values, "tolist") else list(values)
                    for key, values in data.items()
                }
            )
        else:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                reader = csv.reader(stream)
                header = [key.strip().upper() for key in next(reader, [])]
                values: list[list[str]] = [[] for _ in header]
                for record in reader:
                    if not record:
                        continue  # an empty line, as DictReader skips (a line of commas is a row: reported)
                    record += [""] * (len(header) - len(record))
                    for column, value in zip(values, record):
                        column.append(value)
            rows = Columns(dict(zip(header, values)))
    except FileNotFoundError:
        raise InvalidInput([Problem("no such file", name)]) from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InvalidInput([Problem(f"cannot be read as {domain} ({error})", name)]) from None
    except Exception as error:  # pyreadstat's ReadstatError and friends: a file that is not XPT
        raise InvalidInput(
            [Problem(f"is not a SAS transport (XPT) file ({type(error).__name__}: {error})", name)]
        ) from None
    missing = [var for var in NEEDED[domain] if rows and var not in rows[0]]
    if not rows:
        raise InvalidInput([Problem(f"the {domain} dataset has no rows", name)])
    if domain == "SV" and "VISIT" not in rows[0] and "VISITNUM" not in rows[0]:
        missing.append("VISIT")
    if missing:
        raise InvalidInput(
            [Problem(f"the {domain} dataset lacks the variable {var}", name, field=var) for var in missing]
        )
    return Dataset(name, domain, rows)
