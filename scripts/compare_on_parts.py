"""Every attack's metrics on each learned attack's scored part, from a ``mia attack --out`` folder.

A learned attack (secmi_nn, qr) is scored only on its held-out part; to compare it fairly with a
threshold attack, the threshold attack is evaluated on the same images. This reads ``scores.csv``
(one score column per attack, empty where an attack did not score an image, and a
``<attack>_part`` column for learned attacks) and prints a Markdown table.

    python scripts/compare_on_parts.py runs/default_all
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mia_core.metrics import evaluate, format_metric


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="output folder of `mia attack` (holds scores.csv)")
    args = parser.parse_args()
    frame = pd.read_csv(Path(args.folder) / "scores.csv")
    learned = [c[: -len("_part")] for c in frame.columns if c.endswith("_part")]
    attacks = [c for c in frame.columns if c not in ("id", "is_member") and not c.endswith("_part")]
    print("| scored on | attack | AUC [95 % CI] | TPR@1%FPR | members | non-members |")
    print("|---|---|---|---|---|---|")
    parts = [("all images", np.ones(len(frame), dtype=bool))]
    parts += [(f"{name}'s scored part", (frame[f"{name}_part"] == "eval").to_numpy()) for name in learned]
    for label, rows in parts:
        for attack in attacks:
            scores = frame.loc[rows, attack].to_numpy(dtype=float)
            if np.isnan(scores).any():  # a learned attack outside its own part
                continue
            m = evaluate(scores, frame.loc[rows, "is_member"].to_numpy(dtype=bool), n_bootstrap=200, seed=0)
            print(
                f"| {label} | {attack} | {m.auc:.3f} [{m.auc_ci.low:.3f}, {m.auc_ci.high:.3f}] | "
                f"{format_metric(m.tpr_at_1pct_fpr, 0.01)} | {m.n_members} | {m.n_nonmembers} |"
            )


if __name__ == "__main__":
    main()
