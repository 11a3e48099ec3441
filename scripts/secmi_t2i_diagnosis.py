"""Why SecMI scores below chance on the shipped text-to-image target (issue 15): measurements.

Independent of ``mia_core.attacks.secmi``: loads the folder with diffusers' own
``StableDiffusionPipeline.from_pretrained`` (float32, CPU; ``--float64`` casts the VAE, text encoder and
UNet to float64) and recomputes, per image with caption c (``--prompts``: own caption, the empty prompt,
or the next digit's caption), the formulas of attacks-next.md section 1.1:

    z_0          = vae.scaling_factor * mean of q(z | x)                           (N, 4, 8, 8)
    D(z; a -> b) = sqrt(abar_b) x0_hat(z, a) + sqrt(1 - abar_b) e,  e = unet(z, a, c)
    x~_{t+k}     = D(x~_t; t -> t + k), x~_0 = z_0                                 (DDIM inversion)
    t-error_t    = sum (D(x~_{t+k}; t + k -> t) - x~_t)^2
                 = c_t^2 sum (e(x~_{t+k}, t + k) - e(x~_t, t))^2,
    c_t          = sqrt(abar_t / abar_{t+k}) sqrt(1 - abar_{t+k}) - sqrt(1 - abar_t)

and splits the eps change into its part from moving x (dx = e(x~_{t+k}, t) - e(x~_t, t)) and from moving t
(dt = e(x~_{t+k}, t + k) - e(x~_{t+k}, t)). Printed per t: AUC of -t-error (the SecMI score at that
compared point; the default t_sec = 100, k = 10 compares at 90), AUC of -|dx|^2 and -|dt|^2 (below 0.5:
members' eps changes MORE), the rms of e and the mean t-error of members / non-members.
``--save`` also writes the (N, T) t-errors to compare them with ``mia attack``'s traces.npz.

Usage: python scripts/secmi_t2i_diagnosis.py assets/t2i_target [--k 10] [--tmax 100] [--limit 100]
       [--prompts own|empty|wrong] [--float64] [--save OUT.npy]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--tmax", type=int, default=100, help="invert up to this t (compared points 0 .. tmax - k)")
    ap.add_argument("--limit", type=int, default=100, help="members and non-members each")
    ap.add_argument("--prompts", choices=("own", "empty", "wrong"), default="own")
    ap.add_argument("--float64", action="store_true")
    ap.add_argument("--save", default=None)
    args = ap.parse_args()

    from diffusers import StableDiffusionPipeline

    from mia_core.metrics import auc

    folder = Path(args.folder)
    dtype = torch.float64 if args.float64 else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None)
    if args.float64:
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.to(dtype)
    data = np.load(folder / "data.npz")
    split = json.loads((folder / "split.json").read_text())
    row = {str(k): i for i, k in enumerate(data["ids"])}
    n = args.limit
    rows = [row[i] for i in split["member_ids"][:n]] + [row[i] for i in split["nonmember_ids"][:n]]
    labels = np.r_[np.ones(n), np.zeros(n)]
    x = torch.tensor(data["images"][rows]).permute(0, 3, 1, 2).to(dtype) / 127.5 - 1
    captions = [str(c) for c in data["captions"][rows]]
    if args.prompts == "empty":
        captions = [""] * len(captions)
    elif args.prompts == "wrong":
        captions = [f"a handwritten {DIGITS[(DIGITS.index(c.split()[-1]) + 1) % 10]}" for c in captions]
    abar = torch.as_tensor(pipe.scheduler.alphas_cumprod, dtype=torch.float64).to(dtype)
    k = args.k
    with torch.no_grad():
        z0 = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
        length = pipe.tokenizer.model_max_length
        tokens = pipe.tokenizer(
            captions, padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        ).input_ids
        cond = pipe.text_encoder(tokens)[0]

        def eps(z: torch.Tensor, t: int) -> torch.Tensor:
            return pipe.unet(z, torch.full((z.shape[0],), t), encoder_hidden_states=cond).sample

        def move(z: torch.Tensor, a: int, b: int, e: torch.Tensor) -> torch.Tensor:
            x0_hat = (z - (1 - abar[a]).sqrt() * e) / abar[a].sqrt()
            return abar[b].sqrt() * x0_hat + (1 - abar[b]).sqrt() * e

        points, e_at = {0: z0}, {}
        for a in range(0, args.tmax, k):
            e_at[a] = eps(points[a], a)
            points[a + k] = move(points[a], a, a + k, e_at[a])
        print(f"prompts: {args.prompts}; k = {k}; {n} members, {n} non-members; {dtype}")
        print("   t  AUC(-t-error)  AUC(-|dx|^2)  AUC(-|dt|^2)  rms e mem / non   t-error mem / non")
        errors = []
        for t in range(0, args.tmax, k):
            e_high = eps(points[t + k], t + k)
            err = (move(points[t + k], t + k, t, e_high) - points[t]).square().flatten(1).sum(1)
            dx = (eps(points[t + k], t) - e_at[t]).square().flatten(1).sum(1)
            dt = (e_high - eps(points[t + k], t)).square().flatten(1).sum(1)
            rms = e_at[t].flatten(1).square().mean(1).sqrt()
            errors.append(err)
            print(
                f"{t:4d}  {auc(-err.numpy(), labels):13.3f}  {auc(-dx.numpy(), labels):12.3f}  "
                f"{auc(-dt.numpy(), labels):12.3f}  {rms[:n].mean():.3f} / {rms[n:].mean():.3f}   "
                f"{err[:n].mean():.2e} / {err[n:].mean():.2e}"
            )
    if args.save:
        np.save(args.save, torch.stack(errors, 1).double().numpy())


if __name__ == "__main__":
    main()
