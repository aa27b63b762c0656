"""Transfers: the DV records created, changed and closed since the sponsor's previous package."""

from trialcoord.exports.rules.transfers import changes_since


def test_the_first_transfer_creates_every_record_and_lists_those_already_closed():
    current = {"2": ["b", False], "10": ["c", True], "1": ["a", False]}
    assert changes_since(None, current) == {"created": ["1", "2", "10"], "changed": [], "closed": ["10"]}


def test_later_transfers_list_new_changed_and_newly_closed_records_in_record_order():
    previous = {"1": ["a", False], "2": ["b", False], "3": ["c", True], "4": ["d", False]}
    current = {
        "1": ["a", False],  # unchanged
        "2": ["b2", False],  # changed
        "3": ["c2", True],  # closed before and still: a change
        "4": ["d2", True],  # closed now
        "5": ["e", False],  # new
    }
    assert changes_since(previous, current) == {"created": ["5"], "changed": ["2", "3"], "closed": ["4"]}


def test_a_record_no_longer_delivered_is_not_reported_as_a_change():
    assert changes_since({"1": ["a", False]}, {}) == {"created": [], "changed": [], "closed": []}
