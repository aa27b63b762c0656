"""Server-rendered pages: usable without JavaScript, every form posts and redirects."""

from trialcoord.web.pages.accounts import AccountPages
from trialcoord.web.pages.amendments import AmendmentPages
from trialcoord.web.pages.audit import AuditPages
from trialcoord.web.pages.binder import BinderPages, VersionPages
from trialcoord.web.pages.deviation_reports import ReportPages
from trialcoord.web.pages.deviations import DeviationPages
from trialcoord.web.pages.documents import DocumentPages
from trialcoord.web.pages.participants import ParticipantPages
from trialcoord.web.pages.studies import StudyPages

PAGE_CONTROLLERS = [
    AccountPages,
    AuditPages,
    DocumentPages,
    VersionPages,
    BinderPages,
    StudyPages,
    ParticipantPages,
    DeviationPages,
    ReportPages,
    AmendmentPages,
]
