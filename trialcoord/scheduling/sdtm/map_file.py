"""The `--map` YAML that overrides parts of the default mapping, read and checked for its shape, then checked
against the protocol's visits, events and arms."""

from __future__ import annotations

from pathlib import Path

import yaml

from trialcoord.kernel.problems import InvalidInput, Problem
from trialcoord.scheduling.rules.protocol import Protocol

MAP_KEYS = {"visits", "ds", "ds_treatment", "arms", "events", "dm"}
DM_DATES = ("RFSTDTC", "RFICDTC")


def read_map(path: Path | None) -> dict:
    """The `--map` YAML: `visits: {LABEL: CODE}`, `ds: {TERM: EVENT}`, `arms: {ARMCD: ARM}`,
    `events: {EVENT: {sv: VISIT}}`."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InvalidInput([Problem(f"cannot be read as a mapping ({error})", path.name)]) from None
    if (
        not isinstance(loaded, dict)
        or not set(loaded) <= MAP_KEYS
        or not all(isinstance(value, dict) for value in loaded.values())
    ):
        raise InvalidInput([Problem(f"a mapping holds only {', '.join(sorted(MAP_KEYS))}, each a mapping", path.name)])
    problems = []
    for key, entries in loaded.items():
        for label, target in entries.items():
            if key == "events":
                ok = isinstance(target, dict) and set(target) == {"sv"} and isinstance(target["sv"], str)
                shape = "{sv: VISIT}"
            elif key == "dm":
                ok = label.upper() in DM_DATES and (target is None or isinstance(target, str) and bool(target.strip()))
                shape = f"an event or null, for {' or '.join(DM_DATES)}"
            else:
                ok, shape = isinstance(target, str) and bool(target.strip()), "a name"
            if not ok:
                problems.append(
                    Problem(f"{key}: {label} must map to {shape}, not {target!r}", path.name, field=f"{key}.{label}")
                )
    if problems:
        raise InvalidInput(problems)
    return {
        key: {(str(k).upper() if key == "dm" else str(k)): v for k, v in value.items()} for key, value in loaded.items()
    }


def check_map(mapping: dict, protocol: Protocol) -> list[Problem]:
    """A map's targets against the protocol: visit codes it defines, its events and arms; each problem names
    the entry and what it could be."""
    problems = []
    codes = ", ".join(v.code for v in protocol.visits)
    for label, code in mapping.get("visits", {}).items():
        if protocol.resolve_visit_code(code) is None:
            problems.append(
                Problem(
                    f"'{label}' maps to {code}, which is no visit of protocol version"
                    f" {protocol.version} (visits: {codes})",
                    "--map",
                    field=f"visits.{label}",
                )
            )
    events = ", ".join(protocol.events)
    for key in ("ds", "ds_treatment", "dm"):
        for label, target in mapping.get(key, {}).items():
            if target is not None and target not in protocol.events:
                problems.append(
                    Problem(
                        f"'{label}' maps to {target}, which is no event of protocol version"
                        f" {protocol.version} (events: {events})",
                        "--map",
                        field=f"{key}.{label}",
                    )
                )
    for event in mapping.get("events", {}):
        if event not in protocol.events:
            problems.append(
                Problem(
                    f"{event} is no event of protocol version {protocol.version} (events: {events})",
                    "--map",
                    field=f"events.{event}",
                )
            )
    arms = ", ".join(sorted(protocol.arm_codes)) or "none"
    for label, arm in mapping.get("arms", {}).items():
        if arm not in protocol.arm_codes:
            problems.append(
                Problem(
                    f"'{label}' maps to {arm}, which is no arm of protocol version {protocol.version} (arms: {arms})",
                    "--map",
                    field=f"arms.{label}",
                )
            )
    return problems
