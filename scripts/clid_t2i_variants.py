"""CLiD variants on the shipped text-to-image target (issue 15): which reduced prompts, which term, which t.

Uses the lab's own pieces, as ``CLiDFeatures`` does (``load_target``, the run's per-image noise with seed 0,
``q_sample``, ``target.eps`` inside ``target.conditioned``; checked against ``CLiDFeatures`` on 3 images):
for every image of the split (100 members, 100 non-members) and each timestep triple, l(prompt) = mean over
the 3 t and the latent elements of (eps_theta(z_t, t, prompt) - eps)^2 for the prompts

    own     the image's caption, "a handwritten seven"
    len30   "a <|endoftext|> seven"                  (CLiD's default c*_1: longest word clipped first)
    len50   "a <|endoftext|> <|endoftext|>"           (default c*_2)
    len70   "<|endoftext|> <|endoftext|> <|endoftext|>" (default c*_3)
    digit   "a handwritten <|endoftext|>"             (the informative word clipped first)
    empty   ""                                       (c*_K)

D_i = l(reduced_i) - l(own). Printed: the loss attack's own scores (``mia attack`` scores.csv, t = 200),
-L alone, each D alone on the full split (AUC, TPR@1%FPR), and CLiD_th (alpha picked on the 20 % calibration
part, RobustScaler fitted there, as ``CLiD.fit_and_score``) on the held-out 80/80, where TPR is at
FPR <= 1/80 (no false positive: 1 % of 80 non-members is under one image; ``mia attack`` prints n/a there).

Usage: python scripts/clid_t2i_variants.py assets/t2i_target LOSS_SCORES.csv [--timesteps 440,450,460 ...]
  LOSS_SCORES.csv: scores.csv of ``mia attack --target assets/t2i_target --data assets/t2i_target/split.json
  --attacks loss --out DIR``
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from mia_core.attacks.clid import CLIPPED_WORD, CLiDFeatures, clid_scores, clip_words
from mia_core.attacks.learned import partition_ids
from mia_core.metrics import auc, tpr_at_fpr
from mia_core.noise import per_image_noise
from mia_core.schedule import q_sample
from mia_core.target import load_target


def losses(target, z0, ids, prompts, timesteps, batch=50):
    """{prompt set: (N,) l(prompt)} with the same noise for every prompt (common random numbers)."""
    m, n = len(timesteps), len(ids)
    noise = per_image_noise(ids, 0, m, target.model_shape)
    out = {k: np.zeros(n) for k in prompts}
    for s in range(0, n, batch):
        b = slice(s, min(n, s + batch))
        nb = b.stop - b.start
        z = torch.cat([q_sample(target.schedule, z0[b], t, noise[b, j]) for j, t in enumerate(timesteps)])
        t_all = torch.as_tensor(timesteps).repeat_interleave(nb)
        eps = torch.cat([noise[b, j] for j in range(m)])
        for k, pr in prompts.items():
            with target.conditioned(pr[b]):
                err = (target.eps(z, t_all) - eps).square().flatten(1).mean(1)
            out[k][b] = err.view(m, nb).mean(0).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("loss_scores")
    ap.add_argument("--timesteps", nargs="+", default=["440,450,460", "314,320,327", "190,200,210"])
    args = ap.parse_args()
    folder = Path(args.folder)
    torch.set_num_threads(1)
    target = load_target(str(folder), device="cpu")
    data = np.load(folder / "data.npz")
    split = json.loads((folder / "split.json").read_text())
    row = {str(k): i for i, k in enumerate(data["ids"])}
    ids = split["member_ids"] + split["nonmember_ids"]
    labels = np.r_[np.ones(len(split["member_ids"])), np.zeros(len(split["nonmember_ids"]))].astype(int)
    x = torch.tensor(data["images"][[row[i] for i in ids]]).permute(0, 3, 1, 2).float() / 127.5 - 1
    caps = [str(data["captions"][row[i]]) for i in ids]
    z0 = target.encode(x)
    prompts = {
        "own": caps,
        "len30": [clip_words(c, 0.3) for c in caps],
        "len50": [clip_words(c, 0.5) for c in caps],
        "len70": [clip_words(c, 0.7) for c in caps],
        "digit": [" ".join([*c.split()[:-1], CLIPPED_WORD]) for c in caps],
        "empty": [""] * len(caps),
    }
    cal_ids, _ = partition_ids(ids, labels.astype(bool), 0, member_fraction=0.2, nonmember_fraction=0.2)
    cal = np.isin(ids, cal_ids)
    ev, full = ~cal, np.ones(len(ids), bool)

    def fmt(s, rows):
        budget = 0.01 if rows.all() else 1 / (~labels.astype(bool) & rows).sum()
        name = "1%" if rows.all() else "1/80"
        return f"AUC {auc(s[rows], labels[rows]):.3f} TPR@{name}FPR {tpr_at_fpr(s[rows], labels[rows], budget):.2f}"

    loss_csv = {r["id"]: float(r["loss"]) for r in csv.DictReader(open(args.loss_scores))}
    loss_attack = np.array([loss_csv[i] for i in ids])
    print(f"{'loss attack (its default t = 200)':52s} full {fmt(loss_attack, full)} | held-out {fmt(loss_attack, ev)}")
    variants = {
        "default D: len30, len50, len70, empty": ["len30", "len50", "len70", "empty"],
        "digit-first D: digit, len50, len70, empty": ["digit", "len50", "len70", "empty"],
        "D_empty alone": ["empty"],
        "D(len30) alone": ["len30"],
        "D(digit) alone": ["digit"],
        "D(len50) alone": ["len50"],
        "D(len70) alone": ["len70"],
    }
    for spec in args.timesteps:
        ts = tuple(int(t) for t in spec.split(","))
        ls = losses(target, z0, ids, prompts, ts)
        own = ls["own"]
        if ts == (440, 450, 460):  # the same numbers as the attack's own feature code
            f = (
                CLiDFeatures(conditioning="caption")
                .run(target, x[:3].numpy(), ids=ids[:3], captions=caps[:3], keep=("features",))
                .extras["features"]
            )
            mine = np.stack([own[:3]] + [ls[k][:3] - own[:3] for k in ("len30", "len50", "len70", "empty")], 1)
            assert np.allclose(f, mine, rtol=1e-4, atol=1e-7), (f, mine)
        print(f"\n== t = {ts}")
        print(f"{'  -L alone':52s} full {fmt(-own, full)} | held-out {fmt(-own, ev)}")
        for name, keys in variants.items():
            d = np.mean([ls[k] - own for k in keys], 0)
            grid = [round(0.1 * k, 1) for k in range(11)]
            aucs = [auc(clid_scores(own[cal], d[cal], a, own[cal], d[cal]), labels[cal]) for a in grid]
            alpha = grid[int(np.argmax(aucs))]
            s = np.full(len(ids), np.nan)
            s[ev] = clid_scores(own[ev], d[ev], alpha, own[cal], d[cal])
            print(f"  {name:50s} D alone full {fmt(d, full)} | CLiD_th alpha {alpha}: held-out {fmt(s, ev)}")


if __name__ == "__main__":
    main()
