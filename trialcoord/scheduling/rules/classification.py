"""How deviations are named and classified: the rules, their categories, the classifications and a protocol's
classification defaults (its `deviations:` section). Below both the protocol and the deviation rules, which
each use these names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class Rule(StrEnum):
    VISIT_EARLY = "visit_early"
    VISIT_LATE = "visit_late"
    VISIT_MISSED = "visit_missed"
    SCREENING_OUT_OF_WINDOW = "screening_out_of_window"
    VISIT_AFTER_ENDING_EVENT = "visit_after_ending_event"
    VISIT_BEFORE_CONSENT = "visit_before_consent"
    VISIT_UNDER_SUPERSEDED_CONSENT = "visit_under_superseded_consent"


class Category(StrEnum):  # TransCelerate's categories the rules fall in (SDTM DVCAT)
    VISIT_SCHEDULE = "visit schedule"
    ELIGIBILITY = "eligibility"
    INFORMED_CONSENT = "informed consent"


CATEGORY = {
    Rule.VISIT_EARLY: Category.VISIT_SCHEDULE,
    Rule.VISIT_LATE: Category.VISIT_SCHEDULE,
    Rule.VISIT_MISSED: Category.VISIT_SCHEDULE,
    Rule.VISIT_AFTER_ENDING_EVENT: Category.VISIT_SCHEDULE,
    Rule.SCREENING_OUT_OF_WINDOW: Category.ELIGIBILITY,
    Rule.VISIT_BEFORE_CONSENT: Category.INFORMED_CONSENT,
    Rule.VISIT_UNDER_SUPERSEDED_CONSENT: Category.INFORMED_CONSENT,
}


class Classification(StrEnum):
    IMPORTANT = "important"
    NON_IMPORTANT = "non_important"
    NOT_A_DEVIATION = "not_a_protocol_deviation"


class _Judged(Protocol):
    """What a classification reads of a finding."""

    @property
    def rule(self) -> Rule: ...

    @property
    def days_outside(self) -> int: ...


# --- classification defaults (a protocol's `deviations:` section) ---


@dataclass(frozen=True, slots=True)
class Threshold:
    """From `days_over` days outside the window on, the rule's deviations are `classification`."""

    days_over: int
    classification: Classification


@dataclass(frozen=True, slots=True)
class ClassificationDefaults:
    """Per rule: a default and thresholds by days outside; anything else starts non-important."""

    by_rule: Mapping[Rule, Classification]
    thresholds: Mapping[Rule, tuple[Threshold, ...]] = field(default_factory=dict)

    def classify(self, finding: _Judged) -> Classification:
        for threshold in sorted(self.thresholds.get(finding.rule, ()), key=lambda t: -t.days_over):
            if abs(finding.days_outside) > threshold.days_over:
                return threshold.classification
        return self.by_rule.get(finding.rule, Classification.NON_IMPORTANT)


DEFAULTS = ClassificationDefaults(  # any consent deviation is important (TransCelerate), the rest start minor
    {
        Rule.VISIT_BEFORE_CONSENT: Classification.IMPORTANT,
        Rule.VISIT_UNDER_SUPERSEDED_CONSENT: Classification.IMPORTANT,
        Rule.SCREENING_OUT_OF_WINDOW: Classification.IMPORTANT,
    },
)
