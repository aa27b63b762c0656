"""Site calendars: holidays by country and region from the `holidays` library, and a site's own closures."""

from __future__ import annotations

from datetime import date

import pytest

from trialcoord.scheduling.calendars import CalendarError, Closure, check_site_calendar, closed_days, site_calendar
from trialcoord.scheduling.rules.durations import Calendar


def test_a_site_names_a_country_and_region():
    bavaria = site_calendar("holidays:DE-BY", (), None)
    assert not bavaria.is_business_day(date(2026, 1, 6))  # Epiphany: Bavaria's, not Berlin's
    assert site_calendar("holidays:DE-BE", (), None).is_business_day(date(2026, 1, 6))
    assert not bavaria.is_business_day(date(2026, 5, 1)) and bavaria.is_business_day(date(2026, 5, 4))
    israel = site_calendar("holidays:IL", (), None)
    assert not israel.is_business_day(date(2026, 5, 8)) and israel.is_business_day(date(2026, 5, 10))  # Fri/Sat off


def test_closures_add_to_the_site_calendar_or_to_the_protocols():
    closure = Closure(date(2026, 12, 24), date(2026, 12, 31), "Christmas closure")
    protocol = Calendar("weekdays")
    own = site_calendar(None, (closure,), protocol)
    assert not own.is_business_day(date(2026, 12, 28)) and own.is_business_day(date(2027, 1, 4))
    assert site_calendar(None, (), protocol) is protocol
    assert site_calendar(None, (closure,), None) is None  # nothing counts business days there
    days = closed_days(site_calendar("holidays:GB-SCT", (closure,), None), date(2026, 12, 24), date(2027, 1, 2))
    assert days[0] == (date(2026, 12, 24), "Christmas closure")
    assert (date(2026, 12, 25), "Christmas Day; Christmas closure") in days
    assert (date(2027, 1, 2), "New Year Holiday") in days  # Scotland's 2 January


@pytest.mark.parametrize(
    "name, words",
    [
        ("holidays:XX", "'XX' is not a country"),
        ("holidays:DE-ZZ", "'ZZ' is not a region of DE"),
        ("business-de", "is not a site calendar"),
    ],
)
def test_an_unknown_calendar_says_which_forms_exist(name, words):
    with pytest.raises(CalendarError, match=words):
        check_site_calendar(name)


def test_known_forms_are_accepted_as_written():
    assert check_site_calendar("holidays:JP") == "holidays:JP"
    assert check_site_calendar(" business-us ") == "business-us"
