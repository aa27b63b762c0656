"""Protocol definition files (YAML; see docs/protocol-format.md) -> the domain `Protocol`.

Every problem in a file is reported at once, each with its file, line, column and field path. Values are
built from PyYAML nodes rather than from `yaml.safe_load` output so that each one keeps its position.
Field paths index lists from 0 (`visits[2]` is the third visit); messages name the visit by its code.

The parts: `nodes.py` (reading typed values from YAML nodes, keeping positions), `top_level.py` (study, title,
version, events and arms; the Protocol built from every section), `visits.py` (each visit with its window, repeat
and arms), `references.py` (events, arms and visits named by other fields, checked against what the file defines),
`calendar_specs.py` (`calendar:` and `calendars:`), `deviation_defaults.py` (`deviations:`). `protocol.schema.json`,
for editors, is beside this package (pyproject's package-data ships `scheduling/*.json`).
"""

from __future__ import annotations

from pathlib import Path

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.protocol_files.nodes import _Reader
from trialcoord.scheduling.protocol_files.top_level import _read_protocol
from trialcoord.scheduling.rules.protocol import Protocol

SCHEMA_PATH = Path(__file__).parents[1] / "protocol.schema.json"  # trialcoord/scheduling/, beside this package


# ---- public API ------------------------------------------------------------------------------------


def parse_protocol(text: str, file: str = "<protocol>") -> Protocol:
    """Build a Protocol from YAML text; raise InvalidInput listing every problem found."""
    reader = _Reader(file)
    root = reader.compose(text)
    protocol = _read_protocol(reader, root) if root is not None else None
    if reader.problems or protocol is None:
        raise InvalidInput(sorted(reader.problems, key=lambda p: (p.line or 0, p.column or 0)))
    return protocol


def load_protocol(path: str | Path) -> Protocol:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        message = f"the file is not UTF-8 text (byte {error.start}); save it as UTF-8"
        raise InvalidInput([Problem(message, str(path))]) from None
    except OSError as error:
        raise InvalidInput([Problem(f"cannot read the file: {error.strerror or error}", str(path))]) from None
    return parse_protocol(text, file=str(path))


def validate_protocol_file(path: str | Path) -> list[Problem]:
    try:
        load_protocol(path)
    except InvalidInput as error:
        return error.problems
    return []
