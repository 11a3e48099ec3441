"""Attack speed on text-to-image targets: images/s of loss, PIA, SecMI and CLiD.

Two targets:

1. ``tiny``: the shipped tiny text-to-image pipeline (``assets/t2i_target``: 32x32 MNIST digits, 8x8x4
   latents, a CLIP text encoder of width 64) on its own split's images and captions;
2. ``sd15`` (``--sd15``, GPU only): a UNet2DConditionModel of Stable Diffusion 1.5's size (860 M
   parameters, 64x64x4 latents, cross-attention width 768) with random weights, built from its
   config (nothing is downloaded), with SD's AutoencoderKL (512x512 images) and a text encoder of
   CLIP ViT-L/14's size (random weights; the tiny target's tokenizer, whose vocabulary covers the
   captions), on random images. On a CPU it is skipped with a message: one image would take minutes.

Every attack runs with the published parameters, scores only (no timestep sweep, no SecMI trace),
conditioned on each image's own caption (guidance off), through ``Attack.run`` (CLiD through
``fit_score`` with arbitrary halves as labels: only its speed is measured here, and its features,
the UNet work, are computed for every image). Images/s counts everything a run does for an image:
the VAE encoding, the text embeddings (once per distinct caption), the UNet calls. Each measurement
follows a warm-up run on a few images (the first CUDA calls, the embedding cache).

It writes ``t2i_speed.json`` and ``t2i_speed.md`` to ``--out``.

    python benchmarks/t2i_speed.py --device cpu --images 32 --out benchmarks/results/t2i_cpu
    python benchmarks/t2i_speed.py --device cuda --images 512 --sd15 --sd15-images 64 --out OUT   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_core.attacks import Conditioning, get_attack
from mia_core.paths import T2I_SPLIT_PATH, T2I_TARGET_DIR

ATTACKS = ("loss", "pia", "secmi", "clid")
#: scores only: the traces (a sweep of timesteps, SecMI's per-step errors) are off
SCORE_ONLY = {"loss": {"sweep": []}, "pia": {"sweep": []}, "secmi": {"trace": False}, "clid": {}}
#: captions of the SD-sized run's random images (a few distinct ones: the embedding cache's case)
SD_CAPTIONS = ("a handwritten seven", "a handwritten zero", "a handwritten three", "a handwritten nine")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tiny_target(device: torch.device, precision: str) -> Any:
    from mia_core.target import load_target

    return load_target(str(T2I_TARGET_DIR), device=str(device), precision=precision)


def tiny_images(n: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(n, 1, 32, 32) float32 in [-1, 1], ids and captions: the shipped split's images, repeated past its 200."""
    from mia_core.data import resolve_data

    images, _ = resolve_data(str(T2I_SPLIT_PATH))
    x = images.to_unit_range()
    rows = [k % images.n for k in range(n)]
    return x[rows], [f"{images.ids[r]}#{k}" for k, r in enumerate(rows)], [images.captions[r] for r in rows]


def sd15_target(device: torch.device, precision: str) -> Any:
    """Stable Diffusion 1.5's UNet, VAE and CLIP-L-sized text encoder as configs, random weights (no download)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from mia_core.schedule import NoiseSchedule
    from mia_core.target import TextToImageTarget

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=512,
        scaling_factor=0.18215,
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(T2I_TARGET_DIR / "tokenizer"))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=12,
            vocab_size=len(tokenizer),
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    config = {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
    }
    return TextToImageTarget(
        unet,
        NoiseSchedule.from_scheduler_config(config),
        source="SD-1.5-sized (random weights)",
        device=device,
        fingerprint="sd15-sized-random",  # no hash of a billion random weights
        precision=precision,
        scheduler_config=config,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )


def sd15_images(n: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(n, 3, 512, 512) float32 uniform in [-1, 1], ids and captions (:data:`SD_CAPTIONS` in turn)."""
    x = np.random.default_rng(0).uniform(-1, 1, size=(n, 3, 512, 512)).astype(np.float32)
    return x, [str(k) for k in range(n)], [SD_CAPTIONS[k % len(SD_CAPTIONS)] for k in range(n)]


def run_one(name: str, target: Any, x: np.ndarray, ids: list[str], captions: list[str], batch: int | None) -> float:
    """Seconds for one run of attack ``name`` on the images (own captions, scores only)."""
    attack = get_attack(name, SCORE_ONLY[name]).with_conditioning(Conditioning().with_captions(captions))
    sync(target.device)
    start = time.perf_counter()
    if attack.learns:  # CLiD: features of every image, then its calibration on 20 % (arbitrary labels here)
        labels = np.arange(len(ids)) % 2 == 0
        attack.fit_score(target, x, ids, labels, batch_size=batch, captions=captions)
    else:
        attack.run(target, x, ids=ids, batch_size=batch, captions=captions)
    sync(target.device)
    return time.perf_counter() - start


def measure(label: str, target: Any, data: tuple, attacks: list[str], batch: int | None) -> list[dict[str, Any]]:
    x, ids, captions = data
    rows = []
    for name in attacks:
        attack = get_attack(name, SCORE_ONLY[name])
        warm = min(len(ids), 10 if attack.learns else 2)  # CLiD's calibration needs members and non-members
        run_one(name, target, x[:warm], ids[:warm], captions[:warm], batch)
        seconds = run_one(name, target, x, ids, captions, batch)
        ips = len(ids) / seconds
        rows.append(
            {
                "target": label,
                "attack": name,
                "images": len(ids),
                "distinct_captions": len(set(captions)),
                "unet_calls": attack.unet_calls(trace=False),
                "seconds": round(seconds, 3),
                "images_per_s": round(ips, 3),
                "unet_images_per_s": round(ips * attack.unet_calls(trace=False), 2),
            }
        )
        print(
            f"{label:5s} {name:6s} {len(ids):5d} images in {seconds:8.2f} s: {ips:9.2f} images/s "
            f"({attack.unet_calls(trace=False)} UNet calls each)",
            flush=True,
        )
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    attacks = [a.strip() for a in args.attacks.split(",") if a.strip()]
    unknown = sorted(set(attacks) - set(ATTACKS))
    if unknown:
        raise SystemExit(f"--attacks: unknown {unknown}; choose from {', '.join(ATTACKS)}")
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "precision": args.precision,
        "torch": torch.__version__,
        "command": "python benchmarks/t2i_speed.py " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "rows": [],
        "notes": [],
    }
    target = tiny_target(device, args.precision)
    report["tiny"] = {
        "unet_parameters": sum(p.numel() for p in target.unet.parameters()),
        "text_encoder_parameters": target.n_text_parameters,
    }
    report["rows"] += measure("tiny", target, tiny_images(args.images), attacks, args.batch)
    del target
    if hasattr(os, "getloadavg"):  # other work on the machine slows a CPU run: say how busy it was
        load = os.getloadavg()[0]
        report["notes"].append(f"load average (1 min) after the tiny runs: {load:.1f} on {os.cpu_count()} CPUs")
    if args.sd15:
        if device.type != "cuda":
            note = "sd15 skipped: the SD-1.5-sized UNet runs only with --device cuda (minutes per image on a CPU)"
            print(note, flush=True)
            report["notes"].append(note)
        else:
            target = sd15_target(device, args.precision)
            report["sd15"] = {
                "unet_parameters": sum(p.numel() for p in target.unet.parameters()),
                "text_encoder_parameters": target.n_text_parameters,
            }
            report["rows"] += measure("sd15", target, sd15_images(args.sd15_images), attacks, args.batch)
            report["sd15"]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Device: {report['device']}; precision {report['precision']}; torch {report['torch']}",
        "",
        f"Command: `{report['command']}`",
        "",
        "Own-caption conditioning, guidance off, scores only; images/s includes the VAE encoding and the text "
        "embeddings (once per distinct caption). UNet images/s = images/s x UNet calls per image.",
        "",
        "| target | attack | images | distinct captions | UNet calls / image | seconds | images/s | UNet images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['target']} | {r['attack']} | {r['images']} | {r['distinct_captions']} | {r['unet_calls']} | "
            f"{r['seconds']:.2f} | {r['images_per_s']:.2f} | {r['unet_images_per_s']:.1f} |"
        )
    lines += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--precision", default="fp32", help="fp32 (the default; the CPU's), bf16-autocast or bf16")
    p.add_argument("--images", type=int, default=32, help="images of the tiny target's split (repeated past 200)")
    p.add_argument("--attacks", default=",".join(ATTACKS), help=f"a subset of {','.join(ATTACKS)}")
    p.add_argument("--batch", type=int, default=None, help="images per batch (default: the attacks' own)")
    p.add_argument("--sd15", action="store_true", help="also the SD-1.5-sized random UNet (needs --device cuda)")
    p.add_argument("--sd15-images", type=int, default=32, help="random 512x512 images for the SD-sized run")
    p.add_argument("--out", default="benchmarks/out")
    args = p.parse_args(argv)
    args.argv = argv
    if args.images < 10:
        p.error(f"--images must be >= 10 (CLiD calibrates on 20 % of members and non-members), got {args.images}")
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "t2i_speed.json").write_text(json.dumps(report, indent=1))
    (out / "t2i_speed.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
