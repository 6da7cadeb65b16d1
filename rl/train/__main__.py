"""`python -m rl.train`: see `rl.train.cli`."""

import sys

from rl.train.cli import main

sys.exit(main())
