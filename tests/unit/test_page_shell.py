"""The page shell's pure parts: the error summary read from a page, where sign-in may send you back to, and what a
page is told about the inactivity sign-out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from trialcoord.accounts.pages import safe_next
from trialcoord.accounts.sessions import PageTiming, page_timing
from trialcoord.kernel.web.error_summary import error_summary

PAGE = """
<p class="alert" id="form-error" tabindex="-1">The participant 101-001 is enrolled &amp; active.</p>
<div class="field invalid"><label for="enrol-subject_id">Subject ID</label>
  <input id="enrol-subject_id" name="subject_id" aria-invalid="true">
  <span class="error" id="enrol-subject_id-note">Enter the <em>subject</em> ID.</span></div>
<div class="field"><label for="enrol-site">Site</label><input id="enrol-site" name="site">
  <span class="hint" id="enrol-site-note">A hint is not a problem.</span></div>
<fieldset><legend>State</legend><span class="error" id="filter-state-note">Choose a state.</span></fieldset>
<span class="error">A message without an id cannot be linked.</span>
"""


def test_the_summary_lists_each_message_shown_linking_to_its_field():
    assert error_summary(PAGE) == [
        ("form-error", "The participant 101-001 is enrolled & active."),
        ("enrol-subject_id", "Enter the subject ID."),
        ("filter-state-note", "Choose a state."),  # no element has the field's id: the link goes to the message
        ("", "A message without an id cannot be linked."),  # listed all the same
    ]


def test_a_page_without_messages_has_no_summary():
    assert error_summary('<form><input id="a"><span class="hint" id="a-note">Such as 101</span></form>') == []


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "studies",
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",  # browsers drop the tab: //evil.example
        "/\n/evil.example",
    ],
)
def test_sign_in_sends_back_only_to_a_path_of_this_site(target):
    assert safe_next(target) == "/"


def test_a_path_with_its_query_is_kept():
    assert safe_next("/studies/DEMO-001/participants/101-001?as_of=2026-01-02") == (
        "/studies/DEMO-001/participants/101-001?as_of=2026-01-02"
    )
    assert safe_next("/%0a") == "/%0a"


def test_a_page_is_warned_two_minutes_before_the_session_ends_at_the_latest():
    assert page_timing(timedelta(minutes=15)) == PageTiming(870, 120)  # activity may be recorded 30 s late
    assert page_timing(timedelta(minutes=1)) == PageTiming(30, 15)  # a short limit warns halfway
