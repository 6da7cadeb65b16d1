"""Kill a training run with SIGKILL at random moments, resume it each time, and check that it ends bit-identical to
a run that was never interrupted.

A small IQL run on the built-in bandit checkpoints after every chunk of 20 updates. The first `--early` kills land at
random moments of start-up (before the config or the first checkpoint is written); the others wait until the
process trains and then strike at a random moment within 0.3 s, so they land between and in the middle of checkpoint
writes. After `--kills` kills the run is resumed
to the end; its final checkpoint (parameters, optimiser states, RNG keys) must have the same sha256 as the reference
run's, and its per-seed training logs the same losses.

    python scripts/kill_resume.py --kills 20          # about four minutes on two CPU cores

Exit status 0 when everything matches, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rl.train.checkpoint import has_checkpoint, read_header

ROOT = Path(__file__).resolve().parents[1]
RUN = [
    "--agent", "iql", "--dataset", "bandit", "--seeds", "0,1", "--steps", "8000", "--eval-every", "4000",
    "--checkpoint-every", "20", "--train.updates_per_call=20", "--train.batch_size=64", "--train.eval_samples=256",
    "--agent.critic.width=32", "--agent.policy.width=32", "--no-progress",
]


def command(run_dir: Path) -> list[str]:
    if (run_dir / "config.json").is_file():
        return [sys.executable, "-m", "rl.train", "--resume", str(run_dir), "--no-progress"]
    return [sys.executable, "-m", "rl.train", *RUN, "--run-dir", str(run_dir)]


def checkpoint_step(run_dir: Path) -> int | None:
    header = read_header(run_dir / "checkpoint.eqx")
    return None if header is None else header["step"]


def losses(run_dir: Path, seed: int) -> list[tuple[str, ...]]:
    with open(run_dir / f"seed_{seed}" / "train.csv", newline="") as f:
        return [tuple(v for k, v in row.items() if k not in ("time", "updates_per_s")) for row in csv.DictReader(f)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="number of SIGKILLs before the run may finish")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill times")
    parser.add_argument("--early", type=int, default=4, help="of the kills, how many land during start-up")
    parser.add_argument("--max-delay", type=float, default=6.0, help="longest wait before a start-up kill, seconds")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        reference, killed = Path(tmp) / "reference", Path(tmp) / "killed"
        subprocess.run(command(reference), cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        kills, finished_early, before_first, mid_write, fell_back = 0, 0, 0, 0, 0
        while kills < args.kills:
            had_checkpoint = has_checkpoint(killed)
            start_step = checkpoint_step(killed)
            proc = subprocess.Popen(command(killed), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
            if kills < args.early:  # anywhere in start-up: before the config, before the first checkpoint
                time.sleep(rng.uniform(0.5, args.max_delay))
            else:  # once this process trains (a newer checkpoint appears), at a random moment: often mid-write
                deadline = time.monotonic() + 120
                while checkpoint_step(killed) == start_step and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is not None:  # it finished before the kill: start the killing again from scratch
                if proc.returncode != 0:
                    print(proc.stderr.read().decode(), file=sys.stderr)
                    return 1
                finished_early += 1
                for path in sorted(killed.rglob("*"), reverse=True):
                    path.unlink() if path.is_file() else path.rmdir()
                continue
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            kills += 1
            fell_back += b"resuming from the previous good checkpoint" in out
            mid_write += (killed / ".checkpoint.eqx.tmp").is_file()  # killed while a checkpoint was being written
            before_first += not had_checkpoint and not has_checkpoint(killed)
            print(f"kill {kills}: checkpoint at step {checkpoint_step(killed)}", flush=True)
        done = subprocess.run(command(killed), cwd=ROOT, env=env, capture_output=True)
        if done.returncode != 0:
            print(done.stderr.decode(), file=sys.stderr)
            return 1
        same_state = read_header(reference / "checkpoint.eqx")["sha256"] == read_header(killed / "checkpoint.eqx")["sha256"]
        same_logs = all(losses(reference, s) == losses(killed, s) for s in (0, 1))
        fell_back += b"resuming from the previous good checkpoint" in done.stdout
        print(f"{kills} kills ({before_first} before the first checkpoint, {mid_write} during a checkpoint write; "
              f"{fell_back} resumes fell back to the previous checkpoint; {finished_early} runs finished before their "
              f"kill and were restarted): final state {'identical' if same_state else 'DIFFERENT'}, "
              f"training logs {'identical' if same_logs else 'DIFFERENT'}")
        return 0 if same_state and same_logs else 1


if __name__ == "__main__":
    sys.exit(main())
