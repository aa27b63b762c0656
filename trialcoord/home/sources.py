"""The two lists other features are still building, behind one small interface each, assembled in `SOURCES`:
the signature requests awaiting a user (documents: `open_signature_requests(user_id, today)`) and the
window-extension requests of a study's sites (deviations: `open_extension_requests(study, sites)`). Wiring the
real function is a one-line change of `SOURCES`; the page reads only the attributes the protocols below name.

Until then signature requests are read from what most resembles them: the document versions in review that the
user may sign and has not signed. Window-extension requests have no such data (an investigator records an
approved extension directly), so that source is absent (None) and its section says so.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from trialcoord.accounts import users
from trialcoord.accounts.rules.accounts import Meaning
from trialcoord.documents import documents
from trialcoord.documents.rules.documents import DocumentKey, DocumentStatus, Reader
from trialcoord.documents.signatures import may_sign
from trialcoord.home import store
from trialcoord.kernel.database.engine import read
from trialcoord.kernel.rules.access import Action, visible_sites
from trialcoord.scheduling import protocols


class SignatureRequest(Protocol):
    """A document version awaiting the user's signature (`site` None: a study-level document)."""

    @property
    def study(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def label(self) -> str: ...


class ExtensionRequest(Protocol):
    """A request to extend one visit's window, awaiting an investigator's decision."""

    @property
    def study(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def subject_id(self) -> str: ...
    @property
    def visit(self) -> str: ...


SignatureRequests = Callable[[str, date], Awaitable[Sequence[SignatureRequest]]]  # (user ID, today)
ExtensionRequests = Callable[[str, Collection[str] | None], Awaitable[Sequence[ExtensionRequest]]]  # (study, sites)


@dataclass(frozen=True, slots=True)
class Sources:
    signature_requests: SignatureRequests
    extension_requests: ExtensionRequests | None  # None: trialcoord records no such requests yet


@dataclass(frozen=True, slots=True)
class AwaitingSignature:
    """A version in review the user may sign and has not signed (the stand-in for a signature request)."""

    study: str
    site: str | None
    name: str
    label: str


async def versions_awaiting_signature(user_id: str, today: date) -> list[AwaitingSignature]:
    """The document versions in review, in the studies where `user_id` may sign today, that their grants allow
    them to sign for review and that they have signed for no meaning yet: one read per study, and one for
    what they signed."""
    async with read():
        grants = tuple(await users.grants_held(user_id))
        signed = await store.signed_by(user_id)
    reader = Reader(grants, today)
    studies = [
        study.code
        for study in await protocols.list_studies()
        if (scope := visible_sites(grants, Action.SIGN, study.code, today)).all_sites or scope.sites
    ]
    found = []
    for study in studies:
        for version in await documents.list_documents(study, reader=reader):
            key = DocumentKey(study, version.site, version.name)
            if (
                version.status == DocumentStatus.IN_REVIEW
                and (study, version.site, version.name, version.label) not in signed
                and may_sign(grants, key, Meaning.REVIEW, today)
            ):
                found.append(AwaitingSignature(study, version.site, version.name, version.label))
    return found


SOURCES = Sources(signature_requests=versions_awaiting_signature, extension_requests=None)
