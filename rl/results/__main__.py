"""`python -m rl.results` (see `rl.results.cli`)."""

import sys

from .cli import main

sys.exit(main())
