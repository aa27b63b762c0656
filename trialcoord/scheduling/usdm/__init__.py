"""A CDISC USDM v4 study (JSON) becomes a protocol definition: YAML text whose comments say where each value
came from (USDM ids), and a list of everything that could not be mapped. Pure: no files, no clock.

Read as plain JSON rather than through the `usdm4` model: files written by other tools carry attributes that a
strict model refuses or lacks, and the mapping needs a handful of keys, each checked here with its path.

Mapping (docs/importing.md has the whole table):
- the first study design's main timeline (`mainTimeline: true`); its Fixed Reference instance is the event
  that is Study Day 1, named after that instance;
- each instance of that timeline with an encounter, in timeline order (entry, then each default), is a
  visit: name = encounter label, code from the instance's name (else the encounter's), number = position;
- its timing (`relativeFromScheduledInstanceId` = the instance): Before/After `value` is the offset,
  `windowLower`/`windowUpper` the window, `relativeToScheduledInstanceId` the `from` (the Day 1 event or that
  instance's visit; instances without an encounter in between are walked through, adding their offsets);
- another timeline with a Fixed Reference and whole-day timings becomes an event and conditional visits
  (`when:`); early termination and withdrawal end the schedule;
- adverse-event and unscheduled timelines, time points within a day, decisions' other branches, conditions
  and other study designs are listed as not mapped, never dropped silently.

The parts, each pure: `typed_json.py` (the JSON with each value the mapping reads of the type it expects),
`durations.py` (ISO 8601 durations in the protocol format's units), `text.py` (ids, labels, codes and YAML
scalars as one line of text), `visits.py` (the visit an instance becomes), `placing.py` (a visit's offset,
reference and window from its timings), `timelines.py` (each timeline's instances as visits), `writer.py` (the
YAML and its report), `converter.py` (the study, its version and first design, bringing them together).
"""

from __future__ import annotations

from datetime import date

from trialcoord.kernel.archives import load_json
from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.usdm.converter import Conversion, _Converter
from trialcoord.scheduling.usdm.text import _listing
from trialcoord.scheduling.usdm.typed_json import _typed


def parse_usdm(text: str | bytes, file: str) -> dict:
    document = load_json(text, file)  # bounded in size and depth (kernel/archives.py), each problem naming the file
    if not isinstance(document, dict) or "study" not in document:
        raise InvalidInput(
            [
                Problem(
                    "not a USDM study: the top level has no 'study' (a USDM v4 JSON file holds "
                    '{"study": {...}, "usdmVersion": "4.0.0"})',
                    file,
                )
            ]
        )
    return document


def convert(
    document: dict,
    file: str,
    *,
    study: str | None = None,
    version: str | None = None,
    effective: date | None = None,
    today: date,
) -> Conversion:
    ignored: list[str] = []
    try:
        typed = _typed(document, "", ignored)
    except RecursionError:
        raise InvalidInput([Problem("nested too deeply to be a USDM study", file)]) from None
    converter = _Converter(typed, file, study, version, effective, today)
    converter.reader.ignored = set(ignored)
    if ignored:
        converter.not_mapped.append(f"{len(ignored)} value(s) of the wrong type were ignored: {_listing(ignored)}")
    return converter.run()
