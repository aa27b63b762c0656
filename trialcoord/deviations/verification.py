"""Every stored signature checked at once (`trialcoord verify`): the documents' and the deviations'. Above both
use cases, since a deviation review signs with the signer keys the documents' use case keeps."""

from __future__ import annotations

from trialcoord.deviations import deviation_review
from trialcoord.documents import signatures


async def verify_all() -> tuple[int, list[str]]:
    """(items checked, problems): `signatures.verify_documents`, then every signature of a deviation's
    classification or closure against the same registry, as of the same instant."""
    found = await signatures.verify_documents()
    more_checked, more = await deviation_review.verify_stored(found.registry_keys, found.checked_at)
    return found.checked + more_checked, found.problems + more
