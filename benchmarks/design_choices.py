"""The measurements behind three defaults that the papers do not fix, on the embedded default.

* SecMI-NN ``min_steps``: the published 15 epochs are 45 optimiser steps on the 360 training images
  of the embedded split; AUC over partition seeds for min_steps 0 (the published schedule), 200, 600.
* Quantile regression ``n_models`` (B): AUC of the mean margin over partition seeds for B = 1, 9, 15.
* ELBO ``n_timesteps``: the exact sum over all 999 KL terms against the default 100 geometric strata,
  on a subset (the exact sum costs 1,000 UNet calls per image).

    python benchmarks/design_choices.py [--seeds 3] [--elbo-images 50]

Prints one Markdown table per choice. One torch thread (scores repeat exactly for a fixed thread
count). Minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mia_core.attacks import get_attack
from mia_core.lab.experiment import load_experiment
from mia_core.metrics import auc


def _auc_of(exp, result) -> float:
    return auc(result.scores, exp.labels_for(result.ids))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="partition seeds per setting")
    parser.add_argument("--elbo-images", type=int, default=50, help="members and non-members for the ELBO check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    exp = load_experiment("default", "default")
    seeds = range(args.seeds)

    print("| secmi_nn min_steps | optimiser steps | AUC per seed | mean |\n|---|---|---|---|")
    for min_steps in (0, 200, 600):
        attack = get_attack("secmi_nn", {"min_steps": min_steps})
        aucs = [_auc_of(exp, attack.fit_score(exp.target, exp.x0, exp.ids, exp.is_member, seed=s)) for s in seeds]
        steps = attack.plan_steps(len(attack.partition(exp.ids, exp.is_member, 0)[0]))[1]
        print(f"| {min_steps} | {steps} | {', '.join(f'{a:.3f}' for a in aucs)} | {np.mean(aucs):.3f} |")

    print("\n| qr n_models (B) | AUC per seed | mean | seconds per fit |\n|---|---|---|---|")
    for n_models in (1, 9, 15):
        attack = get_attack("qr", {"n_models": n_models})
        aucs, start = [], time.perf_counter()
        for s in seeds:
            aucs.append(_auc_of(exp, attack.fit_score(exp.target, exp.x0, exp.ids, exp.is_member, seed=s)))
        per_fit = (time.perf_counter() - start) / len(seeds)
        print(f"| {n_models} | {', '.join(f'{a:.3f}' for a in aucs)} | {np.mean(aucs):.3f} | {per_fit:.1f} |")

    sub = load_experiment("default", "default", limit=args.elbo_images)
    print(
        f"\n| elbo n_timesteps | UNet calls / image | AUC ({args.elbo_images} + {args.elbo_images} images) |"
        "\n|---|---|---|"
    )
    for n in (999, 100):
        attack = get_attack("elbo", {"n_timesteps": n})
        res = attack.run(sub.target, sub.x0, ids=sub.ids, seed=0)
        print(f"| {n} | {attack.unet_calls(trace=False)} | {auc(res.scores, sub.is_member):.3f} |")


if __name__ == "__main__":
    main()
