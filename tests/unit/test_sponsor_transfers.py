"""Transfers: the DV records created, changed, closed and removed since the sponsor's previous package."""

from trialcoord.exports.rules.transfers import changes_since

R = "S/101/001/deviation/"


def test_the_first_transfer_creates_every_record_and_lists_those_already_closed():
    current = {R + "2": ["b", False], R + "10": ["c", True], R + "9": ["a", False]}
    assert changes_since(None, current) == {
        "created": [R + "2", R + "9", R + "10"],  # record order, not text order
        "changed": [],
        "closed": [R + "10"],
        "removed": [],
    }


def test_later_transfers_list_new_changed_newly_closed_and_removed_records_in_record_order():
    previous = {R + "1": ["a", False], R + "2": ["b", False], R + "3": ["c", True], R + "4": ["d", False]}
    previous[R + "6"] = ["f", False]
    current = {
        R + "1": ["a", False],  # unchanged
        R + "2": ["b2", False],  # changed
        R + "3": ["c2", True],  # closed before and still: a change
        R + "4": ["d2", True],  # closed now
        R + "5": ["e", False],  # new
    }
    assert changes_since(previous, current) == {
        "created": [R + "5"],
        "changed": [R + "2", R + "3"],
        "closed": [R + "4"],
        "removed": [R + "6"],  # no longer a deviation (or resolved by a correction): the sponsor removes it too
    }
