"""How does one agent's setting change the built-in demo? Its row of `python -m rl.train`, under several settings.

The demo (`rl.train.demo`) trains every method for 3000 updates on the multimodal 2-D bandit and scores one action
per state: the mean reward and the share of actions on the rewarded modes. This trains only the row of `--method`
(FlowQ by default, with the demo's own overrides: its learning rate, one action per state), once per setting given
and per seed, and prints the demo's table for each seed and then the mean over seeds per setting. A setting is a
comma-separated list of agent fields, `temperature=1` or `temperature=1,min_ess=none`; `default` adds nothing.

    python scripts/demo_settings.py default temperature=1 min_ess=none --seeds 0,1,2
"""

import argparse
import tempfile

import numpy as np

from rl.train.demo import DEMO_METHODS, run_demo


def _setting(text: str) -> dict[str, str]:
    if text == "default":
        return {}
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise SystemExit(f"a setting is FIELD=VALUE[,FIELD=VALUE...] or 'default', got {text!r}")
        out[key.removeprefix("agent.")] = value
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="settings to compare: FIELD=VALUE[,...] or 'default'")
    labels = [label for label, _, _ in DEMO_METHODS]
    parser.add_argument("--method", default="FlowQ", choices=labels, help="the demo's row to vary")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    args = parser.parse_args(argv)
    _, agent, base = next(m for m in DEMO_METHODS if m[0] == args.method)
    methods = [(f"{args.method} {text}", agent, {**base, **_setting(text)}) for text in args.settings]
    scores: dict[str, list[dict]] = {label: [] for label, _, _ in methods}
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as run_dir:
            for row in run_demo(run_dir=run_dir, seed=seed, progress=False, figure=False, methods=methods)[1:]:
                scores[row["method"]].append(row)
    metrics = [k for k in next(iter(scores.values()))[0] if k not in ("method", "agent", "seconds")]
    print(f"\nmean over seeds {args.seeds}:")
    print(f"{'setting':<40}" + "".join(f"{m:>20}" for m in metrics))
    for label, rows in scores.items():
        print(f"{label:<40}" + "".join(f"{np.mean([r[m] for r in rows]):>20.3f}" for m in metrics))


if __name__ == "__main__":
    main()
