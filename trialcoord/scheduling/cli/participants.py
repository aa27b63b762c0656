"""`trialcoord participant enrol|visit`: enrol a participant, record the day a visit took place (audited, as on
the pages). Personal data has no command: values typed on a command line stay in the shell's history and show in
the process list."""

from __future__ import annotations

from datetime import date

from trialcoord.kernel import command_support as support
from trialcoord.kernel.command_support import iso_date


def register(commands) -> None:
    participant = support.group(commands, "participant", "enrol participants and record their visits")
    enrol = participant.add_parser("enrol", help="enrol a participant at a site (exit 3 if enrolled already)")
    enrol.add_argument("study")
    enrol.add_argument("subject_id", metavar="SUBJECT")
    enrol.add_argument("--site", required=True)
    enrol.add_argument("--arm", help="the arm, where the study is open-label or known at enrolment")
    enrol.add_argument("--version", help="the protocol version (default: the one in effect on the enrolment date)")
    enrol.add_argument("--enrolled-on", type=iso_date, help="YYYY-MM-DD, not after today (default: today)")
    enrol.set_defaults(run=lambda a: participant_enrol(a.study, a.subject_id, a.site, a.arm, a.version, a.enrolled_on))
    visit = participant.add_parser("visit", help="record the day a visit took place")
    visit.add_argument("study")
    visit.add_argument("subject_id", metavar="SUBJECT")
    visit.add_argument("visit", metavar="VISIT", help="a visit code such as V3; another code is an unscheduled visit")
    visit.add_argument("day", type=iso_date, metavar="DATE")
    visit.add_argument("--reason", help="needed outside the visit's window, and to change a recorded day")
    visit.set_defaults(run=lambda a: participant_visit(a.study, a.subject_id, a.visit, a.day, a.reason))


def participant_enrol(
    study: str, subject_id: str, site: str, arm: str | None, version: str | None, enrolled_on: date | None
) -> int:
    from trialcoord.scheduling import participants

    today = support.today()
    row = support.database(
        lambda: participants.enroll_participant(
            study, subject_id, site, arm, version, enrolled_on, today=today, actor=support.actor()
        )
    )
    print(
        f"participant {row.subject_id} enrolled in {study} at site {row.site} on {row.enrolled_on}"
        f" (protocol version {row.protocol_version})"
    )
    return 0


def participant_visit(study: str, subject_id: str, visit: str, day: date, reason: str | None) -> int:
    from trialcoord.scheduling import visits

    today = support.today()
    row = support.database(
        lambda: visits.record_visit(study, subject_id, visit, day, reason=reason, today=today, actor=support.actor())
    )
    done = row.visit
    outside = f", {abs(done.days_outside)} days outside its window" if done.days_outside else ""
    because = f": {row.actual_reason}" if row.actual_reason else ""
    print(f"{study} {subject_id}: {done.visit} recorded on {done.actual} ({done.status}{outside}){because}")
    return 0
