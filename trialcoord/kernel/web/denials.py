"""The one rule for a record a viewer may not see (docs/access-control.md, "Hardening (issue 17)"): a denial is 403.

A route open to anyone working at one site of the study (`across_sites`) looks its record up by a sequential ID
within the sites the viewer sees, so a record elsewhere and no record at all both come back as NotFound. To
someone who sees only some sites both answer the same 403, in the same words, so IDs tell nothing; someone who
sees every site of the study learns that a record does not exist (404). A controller opts in with
`exception_handlers = DENY_UNSEEN`.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response

from trialcoord.kernel.problems import Forbidden, NotFound
from trialcoord.kernel.rules.access import visible_sites
from trialcoord.kernel.web.errors import handle


def deny_unseen(request: Request, exc: Exception) -> Response:
    access = getattr(request.state, "access", None)
    scope = getattr(access, "sites", None)
    study = request.path_params.get("study")
    if not isinstance(exc, NotFound) or access is None or scope is None or scope.all_sites or study is None:
        return handle(request, exc)
    # `scope` may be narrowed to the one site a request chose; whether the viewer sees every site is their grants'
    action = request.route_handler.opt.get("action")
    viewer = access.viewer
    if action is not None and viewer is not None:
        if visible_sites(viewer.grants, action, study, request.app.state.settings.today()).all_sites:
            return handle(request, exc)
    what = re.sub(rf"^study {re.escape(study)} has no ", "", str(exc))
    sites = ", ".join(sorted(scope.sites))
    return handle(
        request,
        Forbidden(
            f"{access.user_id} may not see {what} of {study}: it is at no site their grants cover ({sites}),"
            " if it exists at all"
        ),
    )


DENY_UNSEEN: dict[Any, Any] = {NotFound: deny_unseen}
