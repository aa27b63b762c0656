"""The home page of one's tasks: each role's work across its studies and sites, the task counts in the
navigation, and the nightly schedule refresh with deviation detection that `trialcoord serve` runs on SQLite
(docs/daily-use.md)."""
