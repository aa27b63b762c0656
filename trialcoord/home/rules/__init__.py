"""Pure rules of the home page: where each role works, which grants ended, the first rows of a list, and when
the nightly run is due."""
