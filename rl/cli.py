"""What every `python -m rl....` command line shares: errors are one line on stderr, exit status 2.

`ArgumentParser.error` prints the usage text before the message; for a command whose options parsed but
whose values are wrong (a missing file, a bad id), that text hides the one line that matters. `Parser`
prints `prog: error: message` alone; `--help` still gives the full usage.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["USAGE_ERROR", "Parser"]

# Exit status of a command line that was refused before any work (argparse's own).
USAGE_ERROR = 2


class Parser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line, `prog: error: message`, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print `prog: error: message` (newlines folded into spaces) to stderr and exit with status 2."""
        self.exit(USAGE_ERROR, f"{self.prog}: error: {' '.join(message.split())}\n")
