"""`python scripts/results.py ...` is `python -m rl.results ...` (datasets, add, missing, run, report).

The results tool lives in the package (`rl.results`): the ledger, the aggregates and the page are imported by tests
and by the study scripts. This file keeps the old command line working.
"""

import sys

from rl.results.cli import main

if __name__ == "__main__":
    sys.exit(main())
