"""What other features read of the schedule's records, inside their own unit of work: studies, sites, protocol
versions, participants, stored visits, and what reports count from them. The scheduling store stays private to
its feature; these reads are the ones it publishes (import-linter holds every other feature to them)."""

from __future__ import annotations

from trialcoord.scheduling.store import counts
from trialcoord.scheduling.store import inputs as inputs_store
from trialcoord.scheduling.store import participants as participants_store
from trialcoord.scheduling.store import sites as sites_store
from trialcoord.scheduling.store import studies as studies_store
from trialcoord.scheduling.store import visits as visits_store

find_study = studies_store.find_study
find_site = sites_store.find_site
list_sites = sites_store.list_sites
list_versions = studies_store.list_versions
find_subject = participants_store.find_subject
find_visit = visits_store.find_visit
load_inputs = inputs_store.load_inputs
worklist_rows = visits_store.worklist_rows
site_people = counts.site_people
site_visit_states = counts.site_visit_states
visit_groups = counts.visit_groups
event_dates = counts.event_dates
