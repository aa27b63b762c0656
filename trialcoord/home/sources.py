"""The two lists the home page reads from features that keep requests, behind one small interface each, assembled
in `SOURCES`: the signature requests awaiting a user (documents: `open_signature_requests(user_id, today)`) and the
window-extension requests awaiting an investigator's decision at a study's sites (deviations:
`open_extension_requests(study, sites)`). The app holds them in its state, so a test hands in its own to count
calls; the page reads only the attributes the protocols below name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from trialcoord.deviations.window_extensions import open_extension_requests
from trialcoord.documents.signature_requests import open_signature_requests


class SignatureRequest(Protocol):
    """A named person asked to sign a document version with a meaning (`site` None: a study-level document)."""

    @property
    def study(self) -> str: ...
    @property
    def site(self) -> str | None: ...
    @property
    def document(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def meaning(self) -> str: ...
    @property
    def requested_by_name(self) -> str: ...
    @property
    def requested_at(self) -> str: ...
    @property
    def path(self) -> str: ...


class ExtensionRequest(Protocol):
    """A coordinator's request to extend one visit's window, awaiting an investigator's decision."""

    @property
    def site(self) -> str: ...
    @property
    def participant(self) -> str: ...
    @property
    def visit(self) -> str: ...
    @property
    def earlier_days(self) -> int: ...
    @property
    def later_days(self) -> int: ...
    @property
    def requested_at(self) -> str: ...
    @property
    def path(self) -> str: ...


SignatureRequests = Callable[[str, date], Awaitable[Sequence[SignatureRequest]]]  # (user ID, today)
ExtensionRequests = Callable[[str, set[str] | None], Awaitable[Sequence[ExtensionRequest]]]  # (study, its sites)


@dataclass(frozen=True, slots=True)
class Sources:
    signature_requests: SignatureRequests
    extension_requests: ExtensionRequests


SOURCES = Sources(signature_requests=open_signature_requests, extension_requests=open_extension_requests)
