"""The published shapes of studies, sites, participants and their events: request and response bodies of the API,
typed so the OpenAPI document is precise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from trialcoord.kernel.web.schemas import Code, Text, check_plausible

_Date = date  # the type, where a field is named `date`
_Body = TypeVar("_Body", bound=msgspec.Struct)


def from_record(kind: type[_Body], record: object) -> _Body:
    """A response body from a use case's result, by the body's field names (the result may hold more; an
    attribute it lacks is null, as an optional field of the body)."""
    return kind(**{name: getattr(record, name, None) for name in kind.__struct_fields__})


class Study(msgspec.Struct):
    code: str
    title: str
    created_at: datetime | None


class ProtocolSource(msgspec.Struct):
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=1_000_000)]
    name: Annotated[str, msgspec.Meta(max_length=200)] = "protocol.yaml"


class ProtocolVersion(msgspec.Struct):
    study: str
    version: str
    effective: date
    source_name: str
    sha256: str
    loaded_at: datetime | None


PersonalText = Annotated[str, msgspec.Meta(max_length=500)]


class Identity(msgspec.Struct):
    """A participant's personal data: stored encrypted, shown only to roles that may see it."""

    name: str | None = None
    date_of_birth: str | None = None
    contact: str | None = None
    mrn: str | None = None


class IdentityIn(msgspec.Struct):
    """Fields to set; an empty string clears one, an absent field stays as stored."""

    name: PersonalText | None = None
    date_of_birth: PersonalText | None = None
    contact: PersonalText | None = None
    mrn: PersonalText | None = None


CalendarName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9:_-]+$",
        description="business-us, weekdays, or holidays:<country>[-<region>] such as holidays:DE-BY",
    ),
]


class SiteIn(msgspec.Struct):
    code: Code
    name: Text = ""
    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    calendar: CalendarName | None = None


class SiteCalendarIn(msgspec.Struct):
    calendar: CalendarName | None = None  # None: the protocol's calendar


class ClosureIn(msgspec.Struct):
    first_day: date
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
    last_day: date | None = None


class WithdrawalIn(msgspec.Struct):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Closure(msgspec.Struct):
    study: str
    site: str
    first_day: date
    last_day: date
    reason: str


class ClosedDay(msgspec.Struct):
    date: date
    reason: str


class ClosureOut(msgspec.Struct):
    first_day: date
    last_day: date
    reason: str


class SiteCalendar(msgspec.Struct):
    site: str
    calendar: str | None  # the site's own, else the protocol's (None: neither names one)
    own: bool
    closed: list[ClosedDay]
    closures: list[ClosureOut]


class Site(msgspec.Struct):
    study: str
    code: str
    name: str
    time_zone: str
    calendar: str | None


class EnrolmentIn(msgspec.Struct):
    subject_id: Code
    site: Code
    arm: Code | None = None
    enrolled_on: date | None = None
    version: Code | None = None

    def __post_init__(self) -> None:
        check_plausible(self.enrolled_on, "enrolled_on")


class Participant(msgspec.Struct):
    study: str
    subject_id: str
    site: str
    arm: str | None
    protocol_version: str
    status: str
    enrolled_on: date
    events: dict[str, date] | None = None  # recorded events, on the single-participant route


class EventIn(msgspec.Struct):
    event: Code
    date: date
    reason: Text | None = None

    def __post_init__(self) -> None:
        check_plausible(self.date, "date")


class RecordedEvent(msgspec.Struct):
    study: str
    subject_id: str
    event: str
    date: date
    previous: _Date | None
    changed: bool


class ArmIn(msgspec.Struct):
    arm: Code


class VersionChangeIn(msgspec.Struct):
    version: Code
    effective: date
    reason: Text

    def __post_init__(self) -> None:
        check_plausible(self.effective, "effective")


class VisitDateIn(msgspec.Struct):
    date: date
    reason: Text | None = None
    # the version the client saw (0: none stored yet); required, and a stale one is a 409 (`row_version_required`)
    row_version: int | None = None

    def __post_init__(self) -> None:
        check_plausible(self.date, "date")


class MissedIn(msgspec.Struct):
    reason: Text
    row_version: int | None = None  # as in VisitDateIn


# A protocol file sent to the API: the YAML itself, or JSON {source, name} (loading and the impact of a version).
YAML_TYPES = ("application/yaml", "text/plain")


@dataclass
class ProtocolBodyOperation(Operation):
    """Documents both bodies the upload accepts; litestar infers only one from a `data` parameter."""

    def __post_init__(self) -> None:
        text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING, min_length=1, description="protocol YAML"))
        as_json = Schema(
            type=OpenAPIType.OBJECT,
            required=["source"],
            properties={
                "source": Schema(type=OpenAPIType.STRING, min_length=1, description="protocol YAML"),
                "name": Schema(type=OpenAPIType.STRING, max_length=200, description="file name shown in problems"),
            },
        )
        content = {"application/json": OpenAPIMediaType(schema=as_json)}
        content.update({media_type: text for media_type in YAML_TYPES})
        self.request_body = RequestBody(content=content, required=True)


async def protocol_source(request: Request) -> ProtocolSource:
    body = await request.body()
    if request.content_type[0] == "application/json":
        try:
            return msgspec.json.decode(body, type=ProtocolSource)
        except msgspec.ValidationError as error:
            raise ValidationException(
                "The JSON body does not match {source, name}", extra=[{"message": str(error)}]
            ) from None
        except msgspec.DecodeError:
            raise ValidationException("The body is not JSON", extra=[{"key": "body", "message": "not JSON"}]) from None
    try:
        return ProtocolSource(source=body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValidationException(
            "The protocol is not UTF-8 text", extra=[{"key": "body", "message": "not UTF-8"}]
        ) from None
