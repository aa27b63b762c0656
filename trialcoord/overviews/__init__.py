"""Pages that bring the features together for the people at a site: the study page and the participant page
(schedule, consent, protocol version and personal data side by side)."""
