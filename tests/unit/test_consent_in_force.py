"""Which consent versions are in force at a site on a day: per language, the newest effective by then; a version
replaced by a newer one is no longer in force from the newer one's effective date."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from trialcoord.documents.rules.consent import ConsentVersion, in_force, replaced_by

V1 = ConsentVersion("S", "101", "en", "1.0", "1.0", date(2024, 2, 1))
V2 = ConsentVersion("S", "101", "en", "2.0", "1.0", date(2024, 4, 1))
V1_ES = ConsentVersion("S", "101", "es", "1.0", "1.0", date(2024, 2, 1))
OTHER_SITE = ConsentVersion("S", "102", "en", "3.0", "1.0", date(2024, 3, 1))
ALL = [V2, V1, V1_ES, OTHER_SITE]
DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (V1.effective_on - DAY, []),
        (V1.effective_on, [V1, V1_ES]),
        (V2.effective_on - DAY, [V1, V1_ES]),
        (V2.effective_on, [V2, V1_ES]),  # from its first day, the newer version replaces the older one
        (date(2030, 1, 1), [V2, V1_ES]),
    ],
)
def test_the_versions_in_force_at_a_site_on_a_day(on, expected):
    assert in_force(ALL, "101", on) == expected


def test_the_version_that_replaces_another_on_a_day():
    assert replaced_by(V1, ALL, V2.effective_on - DAY) is None  # still in force
    assert replaced_by(V1, ALL, V2.effective_on) == V2
    assert replaced_by(V1_ES, ALL, date(2030, 1, 1)) is None  # another language runs alongside
    assert replaced_by(V2, ALL, V1.effective_on) is None  # not yet effective: nothing replaced it


def test_two_versions_effective_on_one_day_the_later_label_is_in_force():
    twin = ConsentVersion("S", "101", "en", "2.1", "1.0", V2.effective_on)
    assert in_force([V1, V2, twin], "101", V2.effective_on) == [twin]
    assert replaced_by(V2, [V1, V2, twin], V2.effective_on) == twin
