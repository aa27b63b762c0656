"""Parameters shared by the API and the pages: path segments, `as_of`, today, worklist kinds."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, Optional

from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.openapi.spec import Example
from litestar.params import FromQuery, PathParameter

from trialcoord.kernel.installation import Installation
from trialcoord.kernel.web.guard import Access
from trialcoord.kernel.web.schemas import check_plausible


def as_of_or_today(as_of: date | None, today: date) -> date:
    """The `as_of` query parameter, defaulting to today in the configured time zone."""
    return plausible(as_of, "as_of") or today


def plausible(day: date | None, field: str) -> date | None:
    """A date query parameter within the years the app accepts (others are typing mistakes), else 400."""
    try:
        check_plausible(day, field)
    except ValueError as error:
        raise ValidationException(str(error), extra=[{"key": field, "message": str(error)}]) from None
    return day


# Explicit parameter kinds (litestar 3 drops the inferred ones); path examples name demo data.
StudyPath = Annotated[str, PathParameter(description="Study code", examples=[Example(value="DEMO-001")])]
SubjectPath = Annotated[str, PathParameter(description="Subject ID", examples=[Example(value="101-001")])]
VisitPath = Annotated[str, PathParameter(description="Visit code, such as C3D1", examples=[Example(value="V3")])]
SitePath = Annotated[str, PathParameter(description="Site code", examples=[Example(value="101")])]
Today = NamedDependency[date]  # provided by the app: today in the configured time zone
InstallationDep = NamedDependency[Installation]  # provided by the app: settings, keys, render cache
AccessDep = NamedDependency[Access]  # provided by the app: who is asking, found by the guard
AsOf = FromQuery[Optional[date]]  # noqa: UP045 (aliases read at run time by the API's parameter parsing)
QueryStr = FromQuery[Optional[str]]  # noqa: UP045
WorklistKind = Literal["today", "week", "overdue", "missed_or_out_of_window"]
