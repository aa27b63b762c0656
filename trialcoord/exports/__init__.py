"""Sponsor exports: the compliance package a site (or a CRO) sends its sponsor (issue 14), built feature-first
like every other feature: `rules/` (pure SDTM datasets and their limits), the writers, the use cases above."""
