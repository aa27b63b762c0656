"""A study's search: participants by subject ID, documents by title, a deviation by its number, each result with
the address of its page. Only what the viewer may see: participants and deviations of their sites; documents as
the binder's own listing gives them to this reader (drafts to who manages documents), of their sites, subject
logs only to who may see personal data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from urllib.parse import quote, urlencode

from trialcoord.deviations import queue
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import Reader
from trialcoord.kernel.problems import NotFound, invalid
from trialcoord.kernel.rules.access import Action, Grant, SiteScope, authorize
from trialcoord.scheduling import participants

LONGEST = 200
SHOWN = 20  # results of each kind; the participants' list holds the rest
_DEVIATION_NUMBER = re.compile(r"#?\s*([0-9]{1,9})")


@dataclass(frozen=True, slots=True)
class Found:
    kind: str  # participant, document, deviation
    label: str
    detail: str
    url: str


@dataclass(frozen=True, slots=True)
class Results:
    found: list[Found]
    more_participants: bool  # past SHOWN: the study page's participants list, filtered, holds them all


async def search(study: str, text: str, grants: tuple[Grant, ...], sites: SiteScope | None, today: date) -> Results:
    """`sites`: the sites the viewer sees (None: every site)."""
    text = text.strip()
    if len(text) > LONGEST:
        raise invalid(f"search for at most {LONGEST} characters", field="q")
    if not text:
        return Results([], False)
    within = None if sites is None or sites.all_sites else sites.sites
    people = await participants.participants_page(study, within=within, text=text, limit=SHOWN + 1)
    found = [
        Found(
            "participant",
            row.subject_id,
            f"site {row.site}, {row.status}",
            _study(study, "participants", row.subject_id),
        )
        for _, row in people[:SHOWN]
    ]
    found += (await _documents(study, text, grants, sites, today))[:SHOWN]
    found += await _deviation(study, text, sites)
    return Results(found, len(people) > SHOWN)


async def _documents(
    study: str, text: str, grants: tuple[Grant, ...], sites: SiteScope | None, today: date
) -> list[Found]:
    latest: dict[tuple[str, str], documents.FiledVersion] = {}
    for version in await documents.list_documents(study, None, Reader(grants, today)):  # oldest version first
        if text.lower() in version.name.lower() and _visible(study, version, grants, sites, today):
            latest[(version.site or "", version.name)] = version
    return [_document(study, version) for _, version in sorted(latest.items())]


def _document(study: str, version: documents.FiledVersion) -> Found:
    where = f"site {version.site}" if version.site else "study"
    query = {"name": version.name, "label": version.label, **({"site": version.site} if version.site else {})}
    return Found(
        "document",
        version.name,
        f"{where} document, version {version.label}, {version.status}",
        f"{_study(study, 'documents', 'version')}?{urlencode(query)}",
    )


def _visible(
    study: str, version: documents.FiledVersion, grants: tuple[Grant, ...], sites: SiteScope | None, today: date
) -> bool:
    """As the binder's pages show documents: study-level ones and their sites', subject logs with personal data."""
    if version.site is not None and sites is not None and not sites.includes(version.site):
        return False
    return not documents.holds_personal_data(version) or bool(
        authorize(grants, Action.VIEW_PERSONAL_DATA, study, version.site, today)
    )


async def _deviation(study: str, text: str, sites: SiteScope | None) -> list[Found]:
    number = _DEVIATION_NUMBER.fullmatch(text)
    if number is None:
        return []
    try:
        row = await queue.get(study, int(number.group(1)))
    except NotFound:
        return []
    if sites is not None and not sites.includes(row.site):
        return []  # as a deviation of another site reads on its page: not there
    about = f"participant {row.participant}, " if row.participant else ""
    return [
        Found(
            "deviation",
            f"Deviation {row.id}",
            f"{about}site {row.site}: {row.description} ({row.state.replace('_', ' ')})",
            _study(study, "deviations", str(row.id)),
        )
    ]


def _study(study: str, *parts: str) -> str:
    return "/".join(["", "studies", quote(study, safe=""), *(quote(part, safe="") for part in parts)])
