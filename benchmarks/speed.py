"""Attack speed against the speed of the UNet, and against the attacks written as the papers run them.

One run measures, on one device:

1. the bound: raw UNet images/s (``Target.eps`` on random inputs) for each precision and batch
   size the code supports, eager and (with ``--compile``) under ``torch.compile``;
2. each attack (``loss``, ``pia``, ``secmi``; scores only, the published cost) through
   ``Attack.run`` at the bound's best batch size and precision: images/s and
   efficiency = (its UNet evaluations per second) / (the bound of the same mode);
3. the baseline: the same three attacks written the way the papers' code runs them (float32
   without TF32, batch 64, one timestep per forward pass, ``model(x, t)`` called directly), on
   the same images and noise; the per-sample scores of both are compared (AUC difference and
   Spearman rank correlation), and asserted with ``--check``.

It writes ``speed.json`` and ``speed.md`` (a markdown table) to ``--out``.

    python benchmarks/speed.py --model ddpm-cifar10 --images 4096 --compile --check --out OUT   # GPU
    python benchmarks/speed.py --model default --images 512 --out OUT                            # CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_core.attacks import get_attack
from mia_core.metrics import auc
from mia_core.noise import per_image_noise
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target, load_target

ATTACKS = ("loss", "pia", "secmi")


# -- targets ------------------------------------------------------------------------------------


def ddpm_cifar10_unet(seed: int = 0) -> Any:
    """The architecture of google/ddpm-cifar10-32 (35.7 M parameters), random weights."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2,
        downsample_padding=0,
        flip_sin_to_cos=False,
        freq_shift=1,
        norm_eps=1e-6,
        norm_num_groups=32,
        attention_head_dim=None,
    )


def make_target(model: str, device: torch.device, precision: str, compile: bool) -> Target:
    if model == "ddpm-cifar10":
        return Target(
            ddpm_cifar10_unet(),
            NoiseSchedule.linear(),
            source="ddpm-cifar10 (random)",
            device=device,
            precision=precision,
            compile=compile,
        )
    return load_target(model, device=str(device), precision=precision, compile=compile)


def load_images(path: str | None, n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(n, C, H, W) float32 in [-1, 1]: the first n rows of an .npz ``images`` array, else uniform noise."""
    c, h, w = shape
    if path:
        with np.load(path, allow_pickle=False) as z:
            imgs = z["images"][:n]
        if imgs.ndim == 3:
            imgs = imgs[..., None]
        if imgs.shape[1:] == (h, w, c) and len(imgs) == n:
            return imgs.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1
        print(f"{path} does not hold {n} images of {h}x{w}x{c}; using random images", file=sys.stderr)
    return np.random.default_rng(seed).uniform(-1, 1, (n, c, h, w)).astype(np.float32)


# -- timing -------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - start


def unet_throughput(target: Target, batch: int, min_seconds: float) -> float:
    """UNet images/s at this batch size (after warm-up, which also triggers compilation)."""
    dev = target.device
    x = torch.randn(batch, target.channels, target.resolution, target.resolution, device=dev)
    t = torch.randint(0, 1000, (batch,), device=dev)
    for _ in range(2):
        target.eps(x, t)
    sync(dev)
    n, start = 0, time.perf_counter()
    while True:
        target.eps(x, t)
        n += batch
        if n >= 4 * batch:
            sync(dev)
            if time.perf_counter() - start >= min_seconds:
                break
    return n / (time.perf_counter() - start)


# -- the baseline: the attacks as the papers' code runs them ---------------------------------------


def paper_style_scores(
    name: str,
    unet: Any,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    device: torch.device,
    batch: int = 64,
) -> np.ndarray:
    """float32, no TF32, batch 64, one timestep per forward; returns scores (higher = member)."""
    abar = schedule.alphas_cumprod.to(device, torch.float32)

    def eps(x: torch.Tensor, t: int) -> torch.Tensor:
        return unet(x, torch.full((x.shape[0],), t, device=device, dtype=torch.long)).sample

    def ddim(x: torch.Tensor, a: int, b: int) -> torch.Tensor:
        e = eps(x, a)
        x0_hat = (x - (1 - abar[a]).sqrt() * e) / abar[a].sqrt()
        return abar[b].sqrt() * x0_hat + (1 - abar[b]).sqrt() * e

    out = []
    with torch.inference_mode():
        for i in range(0, x0.shape[0], batch):
            x = x0[i : i + batch].to(device)
            if name == "loss":  # NaiveAttacker, t = 200, one draw
                n = noise[i : i + batch, 0].to(device)
                xt = abar[200].sqrt() * x + (1 - abar[200]).sqrt() * n
                d = (n - eps(xt, 200)).pow(2).flatten(1).sum(1)
            elif name == "pia":  # PIA, t = 200, l4
                e0 = eps(x, 0)
                xt = abar[200].sqrt() * x + (1 - abar[200]).sqrt() * e0
                d = (e0 - eps(xt, 200)).abs().pow(4).flatten(1).sum(1)
            elif name == "secmi":  # secmia.py: invert 0 -> 90, then 90 -> 100 -> 90
                xt = x
                for a in range(0, 90, 10):
                    xt = ddim(xt, a, a + 10)
                recon = ddim(ddim(xt, 90, 100), 100, 90)
                d = (xt - recon).pow(2).flatten(1).sum(1)
            else:
                raise ValueError(name)
            out.append(-d.float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


# -- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    precisions = ["fp32", "bf16-autocast", "bf16"] if device.type == "cuda" else ["fp32"]
    batches = [int(b) for b in args.batches.split(",")]
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "model": args.model,
        "images": args.images,
        "torch": torch.__version__,
        "bound": [],
        "attacks": [],
        "baseline": [],
        "summary": [],
    }

    # 1. The bound: raw UNet throughput per (mode, precision); compiled only at the largest batch.
    configs = [("eager", p, False) for p in precisions]
    if args.compile:
        configs += [("compiled", p, True) for p in args.compiled_precisions.split(",") if p in precisions]
    targets: dict[tuple[str, str], Target] = {}  # kept: a compiled target is compiled once
    speed: dict[tuple[str, str], tuple[float, int]] = {}  # (mode, precision) -> (best images/s, batch)
    for mode, precision, compile_flag in configs:
        target = targets[(mode, precision)] = make_target(args.model, device, precision, compile_flag)
        for batch in batches if not compile_flag else [max(batches)]:
            try:
                ips = unet_throughput(target, batch, args.seconds)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                continue
            report["bound"].append(
                {"mode": mode, "precision": precision, "batch": batch, "unet_images_per_s": round(ips, 1)}
            )
            print(f"bound  {mode:8s} {precision:13s} batch {batch:5d}: {ips:10.1f} UNet images/s", flush=True)
            if ips > speed.get((mode, precision), (0.0, 0))[0]:
                speed[(mode, precision)] = (ips, batch)
    bound = {mode: max(v[0] for (m, _), v in speed.items() if m == mode) for mode, _, _ in configs}
    report["best"] = {m: round(v, 1) for m, v in bound.items()}

    # 2. Every attack at every setting, at that setting's best batch size.
    probe = next(iter(targets.values()))
    shape = (probe.channels, probe.resolution, probe.resolution)
    x0_np = load_images(args.data, args.images, shape)
    ids = [str(i) for i in range(args.images)]
    labels = np.arange(args.images) < args.images // 2  # arbitrary halves: only score agreement matters
    ours: dict[tuple[str, str, str], np.ndarray] = {}
    for (mode, precision), target in targets.items():
        batch = speed[(mode, precision)][1]
        for name in args.attacks.split(","):
            attack = get_attack(name, {"sweep": []} if name != "secmi" else {"trace": False})
            warm = min(batch, args.images)
            attack.run(target, x0_np[:warm], ids=ids[:warm], batch_size=batch)  # warm-up (and compile)
            result, seconds = timed(lambda: attack.run(target, x0_np, ids=ids, batch_size=batch), device)  # noqa: B023 (called at once, inside the loop)
            calls = attack.unet_calls(trace=False)
            ips = args.images / seconds
            ours[(mode, precision, name)] = result.scores
            report["attacks"].append(
                {
                    "attack": name,
                    "mode": mode,
                    "precision": precision,
                    "batch": batch,
                    "unet_calls": calls,
                    "images_per_s": round(ips, 1),
                    "efficiency": round(ips * calls / bound[mode], 3),  # against the best bound of the mode
                    "efficiency_same_precision": round(ips * calls / speed[(mode, precision)][0], 3),
                }
            )
            print(
                f"attack {mode:8s} {precision:13s} {name:6s} {ips:10.1f} images/s  "
                f"efficiency {report['attacks'][-1]['efficiency']:.3f}",
                flush=True,
            )
    targets.clear()

    # 3. The baseline as the papers run it, and the agreement of every setting's scores with it.
    base_target = make_target(args.model, device, "fp32", False)
    torch.backends.cuda.matmul.allow_tf32 = False  # Target turns TF32 on; the papers' code does not
    torch.backends.cudnn.allow_tf32 = False
    noise = per_image_noise(ids, 0, 1, shape)  # the same noise the loss attack draws for these ids
    x0 = torch.as_tensor(x0_np)
    for name in args.attacks.split(","):
        scores, seconds = timed(
            lambda: paper_style_scores(name, base_target.unet, base_target.schedule, x0, noise, device),  # noqa: B023 (called at once)
            device,
        )
        base_ips = args.images / seconds
        report["baseline"].append({"attack": name, "images_per_s": round(base_ips, 1)})
        print(f"paper-style {name:6s} {base_ips:10.1f} images/s", flush=True)
        for row in report["attacks"]:
            if row["attack"] == name:
                mine = ours[(row["mode"], row["precision"], name)]
                row["speedup"] = round(row["images_per_s"] / base_ips, 2)
                row["auc_diff"] = round(abs(auc(mine, labels) - auc(scores, labels)), 5)
                row["spearman"] = round(spearman(mine, scores), 6)
                row["agrees"] = row["auc_diff"] <= 0.005 and row["spearman"] >= 0.999
    # 4. Per attack and mode: the fastest setting whose scores agree with the baseline.
    for name in args.attacks.split(","):
        for mode in bound:
            ok = [r for r in report["attacks"] if r["attack"] == name and r["mode"] == mode and r["agrees"]]
            if ok:
                report["summary"].append({**max(ok, key=lambda r: r["images_per_s"])})
    report["checks"] = check(report, args.check)
    return report


def check(report: dict[str, Any], strict: bool) -> list[str]:
    """Each attack must have, in every mode, a setting whose scores agree with the baseline
    (AUC within 0.005, Spearman rank correlation >= 0.999)."""
    modes = sorted({r["mode"] for r in report["attacks"]})
    names = sorted({r["attack"] for r in report["attacks"]})
    have = {(r["attack"], r["mode"]) for r in report["summary"]}
    failures = [f"{a} ({m}): no setting agrees with the baseline" for a in names for m in modes if (a, m) not in have]
    if strict and failures:
        raise AssertionError("; ".join(failures))
    return failures


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Device: {report['device']}; model: {report['model']}; {report['images']} images; torch {report['torch']}",
        "",
    ]
    lines += ["| mode | precision | batch | UNet images/s |", "|---|---|---|---|"]
    lines += [
        f"| {b['mode']} | {b['precision']} | {b['batch']} | {b['unet_images_per_s']:,.0f} |" for b in report["bound"]
    ]
    base = {r["attack"]: r["images_per_s"] for r in report["baseline"]}
    lines += [
        "",
        "Fastest setting per attack and mode whose scores agree with the paper-style baseline "
        "(efficiency = UNet evaluations/s over the best bound of the mode):",
        "",
        "| attack | mode | precision | batch | UNet calls | images/s | efficiency | paper-style images/s | speed-up | AUC diff | rank corr. |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["summary"]:
        lines.append(
            f"| {r['attack']} | {r['mode']} | {r['precision']} | {r['batch']} | {r['unet_calls']} | "
            f"{r['images_per_s']:,.0f} | {r['efficiency']:.2f} | {base[r['attack']]:,.0f} | {r['speedup']:.1f}x | "
            f"{r['auc_diff']:.4f} | {r['spearman']:.5f} |"
        )
    lines += [
        "",
        "Every setting measured:",
        "",
        "| attack | mode | precision | images/s | efficiency (mode) | efficiency (same precision) | speed-up | AUC diff | rank corr. | agrees |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["attacks"]:
        lines.append(
            f"| {r['attack']} | {r['mode']} | {r['precision']} | {r['images_per_s']:,.0f} | {r['efficiency']:.2f} | "
            f"{r['efficiency_same_precision']:.2f} | {r['speedup']:.1f}x | {r['auc_diff']:.4f} | {r['spearman']:.5f} | "
            f"{'yes' if r['agrees'] else 'no'} |"
        )
    if report["checks"]:
        lines += ["", "Score agreement failed: " + "; ".join(report["checks"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", default="default", help="'ddpm-cifar10' (random weights, 35.7 M parameters), 'default', or a folder"
    )
    p.add_argument(
        "--data", default=None, help="an .npz with an images array (e.g. ../shared/data/cifar10/cifar10_subset.npz)"
    )
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--batches", default="256,512,1024", help="batch sizes for the bound")
    p.add_argument("--seconds", type=float, default=2.0, help="minimum timing per bound measurement")
    p.add_argument("--compile", action="store_true", help="also measure under torch.compile")
    p.add_argument(
        "--compiled-precisions", default="bf16-autocast,bf16", help="precisions to compile (each takes a minute)"
    )
    p.add_argument("--attacks", default=",".join(ATTACKS), help="which of loss, pia, secmi to measure")
    p.add_argument("--device", default="auto")
    p.add_argument("--check", action="store_true", help="fail unless the scores agree with the baseline")
    p.add_argument("--out", default="benchmarks/out")
    args = p.parse_args(argv)
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.json").write_text(json.dumps(report, indent=1))
    (out / "speed.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
