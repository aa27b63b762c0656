"""What other features read of the schedule's records, inside their own unit of work: studies, sites, protocol
versions, participants and stored visits. The scheduling store stays private to its feature; these reads are
the ones it publishes (import-linter holds every other feature to them)."""

from __future__ import annotations

from trialcoord.scheduling import store

find_study = store.find_study
find_site = store.find_site
list_sites = store.list_sites
list_versions = store.list_versions
find_subject = store.find_subject
find_visit = store.find_visit
load_inputs = store.load_inputs
worklist_rows = store.worklist_rows
