"""The results ledger and the results page: what was measured, kept small, and reported with honest intervals.

- `rl.results.grid`: the page's grid (datasets × agents × seeds at a budget) and the exact run of each cell;
- `rl.results.datasets`: the grid's datasets as `rl.collect` recipes, checked against the ledger's fingerprints;
- `rl.results.ledger`: run summaries (`RUN_DIR/summary.json`, see `rl.train.summary`) kept under `results/ledger/`,
  and which cells they cover;
- `rl.results.stats`: IQM, mean, stratified-bootstrap intervals and performance profiles (with `rliable`);
- `rl.results.report` and `rl.results.figures`: `docs/results.md` and its figures, from the ledger alone;
- `rl.results.screens` and `rl.results.study`: the study's screens (short runs, each asking one question about one
  agent, and evaluation-only variants that re-evaluate finished runs) and `docs/study.md`, from the ledger and
  `results/study/` alone;
- `python -m rl.results` (`rl.results.cli`): `datasets`, `add`, `missing`, `run`, `report`, `study`.

`rliable` (for `stats`, `report`) is the optional extra `results`: `pip install -e '.[results]'`.
"""
