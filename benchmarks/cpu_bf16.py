"""bf16 autocast on the CPU: speed-up and per-sample agreement with float32, per attack, on the embedded default.

For each attack (scores only, the published cost) the same images are scored twice on the CPU, once with the
target in float32 and once under bf16 autocast (``Target(precision="bf16-autocast")``; SecMI, which always
runs in float32, is forced into bf16 here to measure it). Reported: seconds and images/s of each, the
speed-up, the Spearman rank correlation of the per-sample scores (the bar for using bf16: >= 0.999) and
both AUCs; plus the raw UNet (``Target.eps``) images/s in each precision. Whether this CPU computes bf16
natively (AVX-512 BF16 / AMX) is probed with ``mia_core.target.cpu_supports_bf16``.

    python benchmarks/cpu_bf16.py --limit 64 --out benchmarks/results/cpu_bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from mia_core.attacks import get_attack, scores_only_params
from mia_core.lab.experiment import load_experiment
from mia_core.metrics import auc
from mia_core.target import cpu_supports_bf16, load_target


def unet_rate(target, batch: int, repeats: int = 3) -> float:
    x = torch.randn(batch, *target.model_shape)
    t = torch.full((batch,), 200, dtype=torch.long)
    target.eps(x, t)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        target.eps(x, t)
    return batch * repeats / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=64, help="members and non-members each")
    parser.add_argument("--attacks", default="loss,secmi,pia,pian,sima")
    parser.add_argument("--threshold", type=float, default=0.999, help="Spearman needed to use bf16")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fp32 = load_target("default", device="cpu", precision="fp32")
    bf16 = load_target("default", device="cpu", precision="bf16-autocast")
    exp = load_experiment(fp32, "default", limit=args.limit)
    x0, ids, labels = exp.x0, exp.ids, exp.is_member
    load_before = os.getloadavg()[0]
    rows = []
    bound = {"fp32": unet_rate(fp32, 256), "bf16": unet_rate(bf16, 256)}
    for name in args.attacks.split(","):
        res = {}
        for label, target in (("fp32", fp32), ("bf16", bf16)):
            attack = get_attack(name, scores_only_params(name))
            attack.needs_full_precision = False  # measure bf16 for every attack, SecMI included
            t0 = time.perf_counter()
            out = attack.run(target, x0, ids=ids, seed=0)
            res[label] = (time.perf_counter() - t0, out.scores)
        rho = float(spearmanr(res["fp32"][1], res["bf16"][1]).statistic)
        rows.append(
            {
                "attack": name,
                "images": len(ids),
                "fp32_seconds": round(res["fp32"][0], 3),
                "bf16_seconds": round(res["bf16"][0], 3),
                "speedup": round(res["fp32"][0] / res["bf16"][0], 3),
                "spearman": round(rho, 5),
                "passes": rho >= args.threshold,
                "auc_fp32": round(auc(res["fp32"][1], labels), 4),
                "auc_bf16": round(auc(res["bf16"][1], labels), 4),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_supports_bf16(),
        "load_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "unet_images_per_second": {k: round(v, 1) for k, v in bound.items()},
    }
    lines = [
        f"CPU {info['cpu']} ({info['cores']} cores, torch {info['torch_threads']} threads, capability "
        f"{info['cpu_capability']}, native bf16: {info['native_bf16']}); load {info['load_1min_before_after']}",
        f"raw UNet (batch 256, t=200): fp32 {bound['fp32']:.1f} images/s, bf16 autocast {bound['bf16']:.1f} images/s "
        f"({bound['fp32'] and bound['bf16'] / bound['fp32']:.2f}x)",
        "",
        f"| attack | images | fp32 s | bf16 s | speed-up | Spearman | >= {args.threshold:.3f} | AUC fp32 | AUC bf16 |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['attack']} | {r['images']} | {r['fp32_seconds']} | {r['bf16_seconds']} | {r['speedup']}x "
            f"| {r['spearman']} | {'yes' if r['passes'] else 'no'} | {r['auc_fp32']} | {r['auc_bf16']} |"
        )
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cpu_bf16.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
        (out / "cpu_bf16.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
