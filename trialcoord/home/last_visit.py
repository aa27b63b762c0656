"""A user's previous visit: the sign-in before the session they are using, as the audit trail records every
sign-in (`sign_in` on the session's record). What changed since is what a monitor and an administrator see first."""

from __future__ import annotations

from trialcoord.kernel import audit_log
from trialcoord.kernel.audit_store import AuditFilter


async def previous_sign_in(user_id: str, session_id: int) -> str | None:
    """The instant (audit text, UTC) of `user_id`'s latest sign-in other than session `session_id`'s: None for a
    first visit."""
    entries = await audit_log.browse(AuditFilter(record_type="session", actor=user_id, action="sign_in"), limit=2)
    earlier = [entry for entry in entries if entry.record_id != str(session_id)]
    return earlier[0].recorded_at if earlier else None
