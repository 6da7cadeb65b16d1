"""Per-seed logs of a run: CSV files (and TensorBoard events when a writer is installed).

    RUN_DIR/seed_<s>/train.csv   one row per chunk: step, time, updates/s, chunk means of the agent's diagnostics
    RUN_DIR/seed_<s>/eval.csv    one row per evaluation
    RUN_DIR/seed_<s>/tb/         TensorBoard events (only with tensorboardX or torch installed)

On resume, rows logged after the checkpoint being resumed from are dropped, so the logs of a resumed run equal those
of an uninterrupted one.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

__all__ = ["SeedLog"]


def _tensorboard_writer(log_dir: Path) -> Any | None:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(str(log_dir))


class _CsvLog:
    """Appends rows to a CSV file; the header is fixed by the first row (or by the existing file on resume)."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or []) or None
                rows = [r for r in reader if r.get("step") and int(float(r["step"])) <= resume_step]
            if self.fields is not None:  # drop rows logged after the checkpoint we resume from
                with open(path, "w", newline="") as f:
                    writer = csv.DictWriter(f, self.fields)
                    writer.writeheader()
                    writer.writerows(rows)
        elif path.exists():
            path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, self.fields).writeheader()
        extra = [k for k in row if k not in self.fields]
        if extra:
            raise ValueError(f"{self.path}: new columns {extra} after the header {self.fields}.")
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow(row)


class SeedLog:
    """The CSV (and TensorBoard) logs of one seed."""

    def __init__(self, directory: Path, resume_step: int | None):
        directory.mkdir(parents=True, exist_ok=True)
        self.train = _CsvLog(directory / "train.csv", resume_step)
        self.eval = _CsvLog(directory / "eval.csv", resume_step)
        self.tb = _tensorboard_writer(directory / "tb")

    def log_train(self, row: dict[str, Any]) -> None:
        self.train.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def log_eval(self, row: dict[str, Any]) -> None:
        self.eval.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(f"eval/{k}", v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- evaluation

