"""The JSON API under /api; OpenAPI at /schema."""

from trialcoord.web.api.accounts import SessionController, UserController
from trialcoord.web.api.amendments import AmendmentController
from trialcoord.web.api.audit import AuditController
from trialcoord.web.api.consent import ConsentController
from trialcoord.web.api.deviation_reports import DeviationReportController
from trialcoord.web.api.deviations import DeviationController
from trialcoord.web.api.documents import DocumentController
from trialcoord.web.api.participants import ParticipantController
from trialcoord.web.api.render_jobs import RenderJobController
from trialcoord.web.api.signatures import BinderController, SignatureController
from trialcoord.web.api.studies import StudyController
from trialcoord.web.api.worklists import WorklistController

API_CONTROLLERS = [
    SessionController,
    UserController,
    AuditController,
    StudyController,
    ParticipantController,
    WorklistController,
    DocumentController,
    SignatureController,
    BinderController,
    ConsentController,
    RenderJobController,
    DeviationController,
    DeviationReportController,
    AmendmentController,
]
