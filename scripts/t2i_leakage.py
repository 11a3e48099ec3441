"""Measure how much a text-to-image pipeline folder leaks: the loss attack on its split.

A stop-gap until ``mia attack`` handles text-to-image targets: loads the folder with diffusers' own
``StableDiffusionPipeline.from_pretrained`` (float32, CPU) and its ``split.json`` / ``data.npz``, and
computes, per image x with caption c (its own caption from ``data.npz``):

    z_0     = vae.scaling_factor * mean of q(z | x),  x in [-1, 1]                 (1, 4, 8, 8)
    h       = text_encoder(tokenizer(c))[0]                                        (1, L, hidden)
    for t in TIMESTEPS (0-based) and d = 1..DRAWS:
        eps_{t,d} ~ N(0, I), drawn for all images up front from one generator seeded with --seed
        err_{t,d} = mean over C, H, W of (eps_{t,d} - unet(sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps_{t,d}, t, h))^2
    score   = - mean over t and d of err_{t,d}       (higher = more member-like)

The timesteps and draws are fixed before looking at any result (defaults: 50, 100, ..., 400 in steps of 50;
4 draws); AUC and TPR@1%FPR come from :mod:`mia_core.metrics` (members positive). The per-timestep
AUCs are printed for information only: the headline is the pre-declared average.

Usage: python scripts/t2i_leakage.py assets/t2i_target [--timesteps 50,100,...,400] [--draws 4]
       [--seed 0] [--json OUT.json] [--grid SAMPLES.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mia_core.data import Split
from mia_core.metrics import auc, evaluate, format_metric


def load_split_data(folder: Path) -> tuple[Split, dict[str, np.ndarray], dict[str, str]]:
    """The split, id -> uint8 (32, 32, 1) image, id -> caption, checked against each other."""
    from mia_core.data import load_npz

    split = Split.load(folder / "split.json")
    npz_path = folder / split.source
    images = load_npz(npz_path)
    split.check_against(images)
    with np.load(npz_path, allow_pickle=False) as npz:
        captions = [str(c) for c in npz["captions"]]
    if len(captions) != images.n:
        raise ValueError(f"{npz_path}: {len(captions)} captions for {images.n} images")
    return split, dict(zip(images.ids, images.images, strict=True)), dict(zip(images.ids, captions, strict=True))


@torch.no_grad()
def loss_scores(
    pipe, images: np.ndarray, captions: list[str], timesteps: list[int], draws: int, seed: int, batch_size: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Scores (N,) = - mean error, and the per-timestep errors (N, len(timesteps)) averaged over draws.

    images : uint8 (N, 32, 32, 1); captions : N strings.
    """
    n = images.shape[0]
    x = torch.as_tensor(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    z0 = torch.cat([pipe.vae.encode(x[lo : lo + batch_size]).latent_dist.mean for lo in range(0, n, batch_size)])
    z0 = z0 * pipe.vae.config.scaling_factor
    tok = pipe.tokenizer(
        captions, padding="max_length", max_length=pipe.tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    hidden = pipe.text_encoder(tok.input_ids)[0]
    abar_all = pipe.scheduler.alphas_cumprod.to(torch.float64)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, len(timesteps), draws, *z0.shape[1:]), generator=gen)
    errors = np.zeros((n, len(timesteps)), dtype=np.float64)
    for j, t in enumerate(timesteps):
        abar = float(abar_all[t])
        for d in range(draws):
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                eps = noise[lo:hi, j, d]
                z_t = abar**0.5 * z0[lo:hi] + (1.0 - abar) ** 0.5 * eps
                tt = torch.full((hi - lo,), t, dtype=torch.long)
                pred = pipe.unet(z_t, tt, encoder_hidden_states=hidden[lo:hi]).sample
                errors[lo:hi, j] += (pred - eps).square().mean(dim=(1, 2, 3)).double().numpy() / draws
    return -errors.mean(axis=1), errors


@torch.no_grad()
def sample_grid(pipe, path: str | Path, per_prompt: int = 6, steps: int = 50, seed: int = 0) -> None:
    """A PNG grid: one row per caption "a handwritten zero" .. "nine", ``per_prompt`` samples each
    (``steps`` DDPM steps, guidance off, seeded), every image 32x32 shown at 2x."""
    from PIL import Image

    from mia_core.lab.train_t2i import DIGIT_WORDS

    rows = []
    for k, word in enumerate(DIGIT_WORDS):
        out = pipe(
            [f"a handwritten {word}"] * per_prompt,
            num_inference_steps=steps,
            guidance_scale=1.0,
            output_type="np",
            generator=torch.Generator().manual_seed(seed + k),
        ).images  # (per_prompt, 32, 32, 1) in [0, 1]
        rows.append(np.concatenate(list(out[..., 0]), axis=1))
    grid = (np.clip(np.concatenate(rows, axis=0), 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="StableDiffusionPipeline folder with split.json and data.npz")
    parser.add_argument(
        "--timesteps", default="50,100,150,200,250,300,350,400", help="0-based timesteps, comma-separated"
    )
    parser.add_argument("--draws", type=int, default=4, help="noise draws per timestep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise draws")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--grid", default=None, help="also save a PNG of samples, one row per digit caption")
    args = parser.parse_args(argv)
    from diffusers import StableDiffusionPipeline

    folder = Path(args.folder)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    if args.draws < 1:
        raise ValueError(f"--draws must be >= 1, got {args.draws}")
    pipe = StableDiffusionPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    bad = [t for t in timesteps if not 0 <= t < pipe.scheduler.config.num_train_timesteps]
    if bad:
        raise ValueError(f"timesteps {bad} outside 0..{pipe.scheduler.config.num_train_timesteps - 1}")
    split, image_of, caption_of = load_split_data(folder)
    ids, is_member = split.labelled()
    start = time.perf_counter()
    scores, errors = loss_scores(
        pipe, np.stack([image_of[i] for i in ids]), [caption_of[i] for i in ids], timesteps, args.draws, args.seed
    )
    seconds = time.perf_counter() - start
    m = evaluate(scores, is_member, n_bootstrap=args.bootstrap, seed=args.seed)
    per_t = {t: auc(-errors[:, j], is_member) for j, t in enumerate(timesteps)}
    print(
        f"loss attack (own caption; t = {timesteps}, {args.draws} draw(s), seed {args.seed}) on {folder}: "
        f"{m.n_members} members / {m.n_nonmembers} non-members, {seconds:.0f} s"
    )
    ci = m.auc_ci.to_list() if m.auc_ci else None
    print(f"  AUC {m.auc:.3f} (95% CI {ci}), ASR {m.asr:.3f}, TPR@1%FPR {format_metric(m.tpr_at_1pct_fpr, 0.01)}")
    print("  AUC per timestep (information only): " + ", ".join(f"t={t}: {a:.3f}" for t, a in per_t.items()))
    if args.json:
        out = {
            "attack": "loss (mean eps error over timesteps and draws, own caption; score = -error)",
            "timesteps": timesteps,
            "draws": args.draws,
            "seed": args.seed,
            "command": "python scripts/t2i_leakage.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "metrics": m.to_json_dict(),
            "auc_per_timestep": {str(t): a for t, a in per_t.items()},
            "seconds": round(seconds, 1),
        }
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    if args.grid:
        sample_grid(pipe, args.grid, seed=args.seed)
        print(f"samples (rows: zero .. nine) saved to {args.grid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
