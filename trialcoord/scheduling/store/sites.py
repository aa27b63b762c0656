"""Sites, the calendar each follows and the days each is closed."""

from __future__ import annotations

from datetime import date
from typing import Any

from piccolo.columns import Column

from trialcoord.kernel.database.engine import fetch, fetch_rows
from trialcoord.kernel.database.tables import Site
from trialcoord.scheduling.calendars import Closure
from trialcoord.scheduling.store import as_date, now, stored


async def find_site(study_id: int, code: str) -> dict[str, Any] | None:
    return await Site.select().where((Site.study == study_id) & (Site.code == code)).first()


async def list_sites(study_id: int) -> list[dict[str, Any]]:
    return sorted(await Site.select().where(Site.study == study_id), key=lambda row: row["code"])


async def insert_site(study_id: int, code: str, name: str, time_zone: str, calendar: str | None) -> dict[str, Any]:
    stamp = now()
    await Site.insert(
        Site(
            study=study_id,
            code=code,
            name=name,
            time_zone=time_zone,
            calendar=calendar,
            created_at=stamp,
            updated_at=stamp,
        )
    )
    return stored(await find_site(study_id, code), f"site {code}")


async def update_site(site_id: int, **values: Any) -> None:
    changes: dict[Column | str, Any] = {name: value for name, value in values.items()}
    changes[Site.updated_at] = now()
    await Site.update(changes).where(Site._meta.primary_key == site_id)


async def site_calendars(study_id: int) -> dict[str, tuple[str | None, tuple[Closure, ...]]]:
    """(calendar name, closures) of each site of the study that has either."""
    found: dict[str, tuple[str | None, tuple[Closure, ...]]] = {}
    for code, name in await fetch_rows("SELECT code, calendar FROM sites WHERE study = {}", study_id):
        if name:
            found[code] = (name, ())
    for code, first, last, reason in await fetch_rows(
        "SELECT s.code, c.first_day, c.last_day, c.reason FROM site_closures c JOIN sites s ON s.id = c.site"
        " WHERE s.study = {} ORDER BY c.first_day, c.id",
        study_id,
    ):
        name, closures = found.get(code, (None, ()))
        found[code] = (name, (*closures, Closure(as_date(first), as_date(last), reason)))
    return found


async def insert_closure(site_id: int, first_day: date, last_day: date, reason: str) -> None:
    await fetch(
        "INSERT INTO site_closures (site, first_day, last_day, reason) VALUES ({}, {}, {}, {})",
        site_id,
        first_day,
        last_day,
        reason,
    )


async def delete_closure(site_id: int, first_day: date) -> None:
    await fetch("DELETE FROM site_closures WHERE site = {} AND first_day = {}", site_id, first_day)
