"""Piccolo tables, mirroring the schema that `migrations.py` creates (piccolo never creates them).

Dates are calendar dates in the site's time zone; `*_at` columns are UTC instants.
"""

from __future__ import annotations

from piccolo.columns import Boolean, Date, DoublePrecision, ForeignKey, Integer, Text, Timestamptz
from piccolo.table import Table


class Study(Table, tablename="studies"):
    code = Text(unique=True)
    title = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class ProtocolVersion(Table, tablename="protocol_versions"):
    study = ForeignKey(Study)
    version = Text()
    effective = Date()
    source_name = Text()
    source_text = Text()
    sha256 = Text()  # of the source's UTF-8 bytes
    loaded_at = Timestamptz()


class Site(Table, tablename="sites"):
    study = ForeignKey(Study)
    code = Text()
    name = Text()
    time_zone = Text()
    calendar = Text(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Participant(Table, tablename="participants"):
    study = ForeignKey(Study)
    subject_id = Text()
    site = ForeignKey(Site)
    arm = Text(null=True, default=None)
    protocol_version = ForeignKey(ProtocolVersion)
    status = Text()  # 'active', or 'ended' once an event that ends the schedule is recorded
    enrolled_on = Date()
    schedule_horizon = Date(null=True, default=None)  # the last day its stored schedule lists (migration 7)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class ProtocolChange(Table, tablename="protocol_changes"):
    participant = ForeignKey(Participant)
    from_version = ForeignKey(ProtocolVersion)
    to_version = ForeignKey(ProtocolVersion)
    effective = Date()
    reason = Text()
    recorded_at = Timestamptz()


class RecordedEvent(Table, tablename="recorded_events"):
    participant = ForeignKey(Participant)
    event = Text()
    date = Date()
    reason = Text(null=True, default=None)  # why the date was last changed
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Visit(Table, tablename="visits"):
    """One visit occurrence as last evaluated, plus what coordinators recorded about it."""

    participant = ForeignKey(Participant)
    code = Text()
    definition = Text()
    occurrence = Integer()
    name = Text()
    number = DoublePrecision(null=True, default=None)
    target = Date(null=True, default=None)
    earliest = Date(null=True, default=None)
    latest = Date(null=True, default=None)
    actual = Date(null=True, default=None)
    actual_reason = Text(null=True, default=None)  # why the actual date was last changed
    status = Text()
    days_outside = Integer()
    study_day = Integer(null=True, default=None)
    optional = Boolean()
    appointment = Date(null=True, default=None)
    appointment_reason = Text(null=True, default=None)
    missed_reason = Text(null=True, default=None)
    protocol_version = ForeignKey(ProtocolVersion)
    evaluated_on = Date()
    row_version = Integer()  # optimistic concurrency: bumped whenever a recorded fact or window changes
    created_at = Timestamptz()
    updated_at = Timestamptz()


TABLES: tuple[type[Table], ...] = (Study, ProtocolVersion, Site, Participant, ProtocolChange, RecordedEvent, Visit)
