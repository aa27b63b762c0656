"""`python -m trialcoord`: the same command line as `trialcoord`."""

import sys

from trialcoord.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
