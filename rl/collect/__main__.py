"""`python -m rl.collect`: see `rl.collect.cli`."""

from rl.collect.cli import main

main()
