"""The `deviations:` section: the classification a protocol gives each deviation rule by default, and the
thresholds by days outside a window."""

from __future__ import annotations

import difflib

from yaml.nodes import MappingNode, Node, ScalarNode

from trialcoord.scheduling.protocol_files.nodes import _BAD, _describe, _read, _Reader, _suggest, _Where
from trialcoord.scheduling.rules.classification import DEFAULTS, Classification, ClassificationDefaults, Rule, Threshold

_DEVIATION_RULES = tuple(str(rule) for rule in Rule)
_RULES_WITH_DAYS = (Rule.VISIT_EARLY, Rule.VISIT_LATE, Rule.SCREENING_OUT_OF_WINDOW)  # thresholds apply to them
_DEVIATION_RULE_KEYS = ("classification", "thresholds")
_THRESHOLD_KEYS = ("over_days", "classification")
_CLASSIFICATIONS = tuple(str(classification) for classification in Classification)


# ---- deviations ------------------------------------------------------------------------------------


def _read_deviations(node: Node, where: _Where, reader: _Reader) -> ClassificationDefaults | None:
    """The protocol's classification defaults: each rule it names over DEFAULTS, key by key; None when the
    section has problems."""
    known_problems = len(reader.problems)
    entries = (
        {}
        if _is_null(node)
        else reader.entries(
            node, where, "a mapping of deviation rules, such as 'visit_late: {classification: important}'"
        )
    )
    if entries is None:
        return None
    if not entries:
        reader.report(
            node,
            where,
            "names no rule; give at least one rule, such as "
            "'visit_late: {classification: important}', or remove 'deviations'",
        )
        return None
    by_rule, thresholds = dict(DEFAULTS.by_rule), dict(DEFAULTS.thresholds)
    for name, (key_node, value_node) in entries.items():
        if name not in _DEVIATION_RULES:
            reader.report(
                key_node,
                where.key(name),
                f"unknown deviation rule '{name}'; {_suggest(name, _DEVIATION_RULES, 'rules')}",
            )
            continue
        rule = Rule(name)
        classification, rule_thresholds = _read_deviation_rule(
            reader, rule, key_node, value_node, where.key(name, f"deviation rule {name}")
        )
        if classification is not None:
            by_rule[rule] = classification
        if rule_thresholds is not None:
            thresholds[rule] = rule_thresholds
    return None if len(reader.problems) > known_problems else ClassificationDefaults(by_rule, thresholds)


def _read_deviation_rule(
    reader: _Reader, rule: Rule, key_node: Node, node: Node, where: _Where
) -> tuple[Classification | None, tuple[Threshold, ...] | None]:
    """One rule's classification and thresholds, each None when absent or reported as a problem."""
    if _is_null(node) or (isinstance(node, MappingNode) and not node.value):
        reader.report(
            key_node,
            where,
            "is empty; give its 'classification', its 'thresholds', or both (or remove the rule to keep its default)",
        )
        return None, None
    fields = reader.fields(node, where, (), _DEVIATION_RULE_KEYS) or {}
    classification = _read(fields, where, "classification", _read_classification, reader)
    if "thresholds" not in fields or rule in _RULES_WITH_DAYS:
        return classification, _read(fields, where, "thresholds", _read_thresholds, reader, rule)
    with_days = ", ".join(_RULES_WITH_DAYS[:-1]) + f" and {_RULES_WITH_DAYS[-1]}"
    reader.report(
        _key_node(node, "thresholds"),
        where.key("thresholds"),
        f"{rule} has no days outside a window, so it takes no thresholds (only {with_days} do); "
        "remove 'thresholds' and give its 'classification' instead",
    )
    return classification, None


def _read_thresholds(node: Node, where: _Where, reader: _Reader, rule: Rule) -> tuple[Threshold, ...] | None:
    """A rule's thresholds, lowest first (the caller keeps them only when no problem was reported)."""
    items = reader.items(node, where, "thresholds, such as '- {over_days: 7, classification: important}'")
    if items is None:
        return None
    if not items:
        reader.report(node, where, "lists no threshold; list at least one, or remove 'thresholds'")
        return None
    thresholds: list[Threshold] = []
    first_line: dict[int, int] = {}  # over_days -> the line of the threshold that gives it
    for index, item in enumerate(items):
        item_where = where.item(index, f"deviation rule {rule} threshold {index + 1}")
        fields = reader.fields(item, item_where, _THRESHOLD_KEYS) or {}
        days = _read(fields, item_where, "over_days", _read_over_days, reader)
        classification = _read(fields, item_where, "classification", _read_classification, reader)
        if days in first_line:
            reader.report(
                fields["over_days"],
                item_where.key("over_days"),
                f"over_days {days} is already given by the threshold on line {first_line[days]}; "
                "give each threshold its own number of days",
            )
        elif days is not None:
            first_line[days] = fields["over_days"].start_mark.line + 1
            if classification is not None:
                thresholds.append(Threshold(days, classification))
    return tuple(sorted(thresholds, key=lambda threshold: threshold.days_over))


def _read_over_days(node: Node, where: _Where, reader: _Reader) -> int | None:
    value = reader.scalar(node, where, "a whole number of days")
    if value is _BAD:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    reader.report(
        node,
        where,
        f"expected a whole number of days outside the window (0 or more), such as 7, found {_describe(node)}",
    )
    return None


def _read_classification(node: Node, where: _Where, reader: _Reader) -> Classification | None:
    value = reader.text(node, where)
    if value is None:
        return None
    if value not in _CLASSIFICATIONS:
        close = difflib.get_close_matches(value, _CLASSIFICATIONS, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        reader.report(
            node,
            where,
            f"'{value}' is not a classification{hint}; write "
            f"{', '.join(_CLASSIFICATIONS[:-1])} or {_CLASSIFICATIONS[-1]}",
        )
        return None
    return Classification(value)


def _is_null(node: Node) -> bool:
    """An empty value, as in `deviations:` with nothing after it."""
    return isinstance(node, ScalarNode) and node.tag.endswith(":null")


def _key_node(node: Node, key: str) -> Node:
    """The key node of `key` in a mapping, to report a problem where the key is written."""
    if not isinstance(node, MappingNode):
        raise TypeError(f"{key} is looked up in a mapping, not in {type(node).__name__}")
    return next(k for k, _ in node.value if isinstance(k, ScalarNode) and k.value == key)
