"""CSV import: every bad line reported, nothing imported from a bad file, a second import changes nothing."""

from __future__ import annotations

from datetime import date

import pytest

from trialcoord.kernel.problems import InvalidInput
from trialcoord.scheduling import participants, sites, worklists
from trialcoord.scheduling.importing import ImportResult, import_events

TODAY = date(2024, 3, 25)
GOOD = """participant,event,date,arm
101-001,randomization,2024-03-04,A
101-001,V2,2024-03-18,A
101-001,first_dose,2024-03-04,
101-002,randomization,2024-03-11,P
101-002,UNSCHED1,2024-03-12,
"""


def where(problems) -> list[tuple[int | None, str]]:
    return [(p.line, p.field) for p in problems]


@pytest.mark.anyio
@pytest.mark.db
async def test_a_file_with_problems_imports_nothing(study):
    text = GOOD + "101-003,randomization,2024-13-01,\n"
    with pytest.raises(InvalidInput) as error:
        await import_events(study, text, site="101", file="events.csv", today=TODAY)
    assert where(error.value.problems) == [(7, "date")] and str(error.value).startswith("events.csv:7: date:")
    with pytest.raises(InvalidInput) as error:
        await import_events(study, GOOD, site="999", file="events.csv", today=TODAY)
    assert where(error.value.problems) == [(None, "site")]
    with pytest.raises(InvalidInput) as error:
        await import_events(study, GOOD, file="events.csv", today=TODAY)  # new participants need a site
    assert where(error.value.problems) == [(line, "participant") for line in range(2, 7)]
    with pytest.raises(InvalidInput, match="events.csv:7: date: participant 101-003: consent on 2024-03-26 is after"):
        await import_events(study, GOOD + "101-003,consent,2024-03-26,\n", site="101", file="events.csv", today=TODAY)
    assert await participants.list_participants(study) == []


@pytest.mark.anyio
@pytest.mark.db
async def test_import_records_everything_once(study):
    first = await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    assert first == ImportResult(created_participants=2, events_recorded=3, visits_recorded=2, unchanged=0)
    again = await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    assert again == ImportResult(0, 0, 0, 5)
    people = {p.subject_id: p for p in await participants.list_participants(study)}
    assert (people["101-001"].arm, people["101-002"].arm) == ("A", "P")
    schedule = {row.visit.visit: row.visit for row in await worklists.participant_schedule(study, "101-001", TODAY)}
    assert (schedule["V2"].actual, schedule["V2"].status) == (date(2024, 3, 18), "on_time")
    assert schedule["C1D1"].target == date(2024, 3, 4)
    other = {row.visit.visit: row.visit for row in await worklists.participant_schedule(study, "101-002", TODAY)}
    assert other["UNSCHED1"].status == "unscheduled"


@pytest.mark.anyio
@pytest.mark.db
async def test_import_refuses_to_change_recorded_dates(study):
    await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    changed = "participant,event,date,arm\n101-001,randomization,2024-03-05,\n101-002,randomization,2024-03-11,A\n"
    with pytest.raises(InvalidInput) as error:
        await import_events(study, changed, file="fix.csv", today=TODAY)
    assert where(error.value.problems) == [(2, "date"), (3, "arm")]
    assert "already recorded on 2024-03-04" in str(error.value)


@pytest.mark.anyio
@pytest.mark.db
async def test_an_imported_consent_event_is_never_later_than_a_consent_on_record(study):
    from trialcoord.documents import consent_store
    from trialcoord.kernel.database.engine import transaction

    await import_events(study, GOOD, site="101", file="events.csv", today=TODAY)
    person = await participants.subject_row(study, "101-001")
    async with transaction("a consent recorded before consent events were kept in step"):
        await consent_store.insert_consent(
            person.id, None, "2024-03-01", "cora", "2024-03-01T00:00:00Z", (), ("paper 12", None, None)
        )
    late = "participant,event,date\n101-001,consent,2024-03-02\n"
    with pytest.raises(
        InvalidInput,
        match="events.csv:2: date: participant 101-001: consent on 2024-03-02 is after the first consent on record",
    ):
        await import_events(study, late, file="events.csv", today=TODAY)
    same = await import_events(study, late.replace("03-02", "03-01"), file="events.csv", today=TODAY)
    assert same.events_recorded == 1


MULTI_SITE = """participant,event,date,site
101-001,randomization,2024-03-04,101
205-001,randomization,2024-03-05,205
205-001,UNSCHEDULED 9.2,2024-03-08,205
205-001,UNSCHEDULED 9.2,2024-03-20,205
205-001,UNSCHEDULED 9.2,2024-03-08,205
301-001,randomization,2024-03-06,
"""


@pytest.mark.anyio
@pytest.mark.db
async def test_a_multi_site_file_enrols_each_participant_at_its_site(study):
    with pytest.raises(InvalidInput) as unknown:  # 205 does not exist yet: nothing imported, the line named
        await import_events(study, MULTI_SITE, site="101", file="edc.csv", today=TODAY)
    assert [(p.line, p.field) for p in unknown.value.problems] == [(3, "site")]
    assert "has no site 205; add it (trialcoord site add) or import with --create-sites" in str(unknown.value)
    assert await participants.list_participants(study) == [] and len(await sites.list_sites(study)) == 1
    result = await import_events(study, MULTI_SITE, site="101", file="edc.csv", today=TODAY, create_sites=True)
    assert (result.created_sites, result.created_participants, result.visits_recorded) == (("205",), 3, 2)
    people = {p.subject_id: p.site for p in await participants.list_participants(study)}
    assert people == {"101-001": "101", "205-001": "205", "301-001": "101"}  # no site column value: --site
    visits = {
        r.visit.visit: r.visit.actual
        for r in await worklists.participant_schedule(study, "205-001", TODAY)
        if r.visit.status == "unscheduled"
    }
    assert visits == {"UNSCHEDULED 9.2": date(2024, 3, 8), "UNSCHEDULED 9.2#2": date(2024, 3, 20)}
    again = await import_events(study, MULTI_SITE, site="101", file="edc.csv", today=TODAY)
    assert (again.created_participants, again.visits_recorded, again.unchanged) == (0, 0, 6)
    moved = MULTI_SITE.replace("205-001,randomization,2024-03-05,205", "205-001,randomization,2024-03-05,101")
    with pytest.raises(InvalidInput, match="participant 205-001 is enrolled at site 205, not at site 101"):
        await import_events(study, moved, file="edc.csv", today=TODAY)


@pytest.mark.anyio
@pytest.mark.db
async def test_a_long_import_says_where_it_is(study):
    heard: list[str] = []
    await import_events(study, GOOD, site="101", file="events.csv", today=TODAY, progress=heard.append)
    assert heard[0] == "5 rows read, 2 participants; checking them" and heard[1] == "checked; storing (all or nothing)"
    assert heard[2].startswith("5 new facts stored; re-evaluating 2 participants")


@pytest.mark.anyio
@pytest.mark.db
async def test_stored_statuses_equal_check_of_the_same_file(study, tmp_path):
    """Done-when of issue 12: what an import stores is what `trialcoord check` computes from the same file."""
    from tests.conftest import PROTOCOL_V1, PROTOCOL_V2
    from trialcoord.scheduling.events_csv import read_events_file
    from trialcoord.scheduling.protocol_files import parse_protocol
    from trialcoord.scheduling.rules.schedule import evaluate

    path = tmp_path / "edc.csv"
    path.write_text(MULTI_SITE, encoding="utf-8")
    await import_events(study, MULTI_SITE, site="101", file="edc.csv", today=TODAY, create_sites=True)
    protocols = {"1.0": parse_protocol(PROTOCOL_V1), "2.0": parse_protocol(PROTOCOL_V2)}
    followed = {p.subject_id: protocols[p.protocol_version] for p in await participants.list_participants(study)}
    for subject, facts in read_events_file(path, protocols["1.0"]).items():
        protocol = followed[subject]  # `check` is given the version the participant follows
        checked = {
            (r.visit, r.status, r.actual) for r in evaluate(protocol, facts.events, facts.actuals, TODAY, arm=facts.arm)
        }
        stored = {
            (r.visit.visit, r.visit.status, r.visit.actual)
            for r in await worklists.participant_schedule(study, subject, TODAY)
        }
        assert stored == checked, subject


@pytest.mark.anyio
@pytest.mark.db
async def test_review_findings_on_sites_and_unscheduled_numbering(study):
    # a participant's first row names no site, a later one does: enrolled there, and a second import agrees
    text = (
        "participant,event,date,site\n901,randomization,2024-03-04,\n901,UNS,2024-03-06,101\n"
        "902,UNS,2024-03-01,101\n902,UNS,2024-03-05,101\n902,UNS#2,2024-03-09,101\n"
    )
    await import_events(study, text, site="999", file="edc.csv", today=TODAY, create_sites=True)
    people = {p.subject_id: p.site for p in await participants.list_participants(study)}
    assert people == {"901": "101", "902": "101"}  # not --site 999 (nor is 999 created)
    assert [s.code for s in await sites.list_sites(study)] == ["101"]
    # a literal label "UNS#2" in the file is never given to another date: three visits, none lost
    visits = {
        r.visit.visit: r.visit.actual
        for r in await worklists.participant_schedule(study, "902", TODAY)
        if r.visit.status == "unscheduled"
    }
    assert visits == {"UNS": date(2024, 3, 1), "UNS#3": date(2024, 3, 5), "UNS#2": date(2024, 3, 9)}
    # against stored codes: a new date comes on top, the known ones keep theirs
    more = text + "902,UNS,2024-02-20,101\n"
    again = await import_events(study, more, file="edc.csv", today=TODAY)
    assert (again.visits_recorded, again.unchanged) == (1, 5)
    visits = {
        r.visit.visit: r.visit.actual
        for r in await worklists.participant_schedule(study, "902", TODAY)
        if r.visit.status == "unscheduled"
    }
    assert visits["UNS#4"] == date(2024, 2, 20) and visits["UNS"] == date(2024, 3, 1)
    with pytest.raises(InvalidInput, match="site code 'A/B' holds a '/'"):
        await import_events(
            study,
            "participant,event,date,site\n903,randomization,2024-03-04,A/B\n",
            file="edc.csv",
            today=TODAY,
            create_sites=True,
        )


@pytest.mark.anyio
@pytest.mark.db
async def test_a_new_participants_site_may_be_on_any_of_its_rows_without_a_default(study):
    text = "participant,event,date,site\n911,randomization,2024-03-04,\n911,V2,2024-03-18,101\n"
    result = await import_events(study, text, file="edc.csv", today=TODAY)  # no --site
    assert result.created_participants == 1
    assert {p.subject_id: p.site for p in await participants.list_participants(study)} == {"911": "101"}
