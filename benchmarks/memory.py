"""Peak memory of a large run's score path: lazy images -> per-batch scores in the store -> merged -> metrics.

For each N (default 10k, 100k, 1M) synthetic uint8 images (default 8x8x1, the embedded default's size;
``--image 32x32x3`` for CIFAR's) are written to an uncompressed ``.npz``; a fresh process then runs the score
path of ``mia attack`` on them with a cheap stand-in statistic instead of the UNet (``pixel-energy``: minus
the mean squared pixel value; a million UNet passes is not what this measures):

1. the images are memory-mapped (``load_npz``) and converted to [-1, 1] one batch at a time;
2. ``--path sharded`` (default): every batch's scores are written to its own file in a result store
   (``mia_core.lab.shards``), merged on the main process and stored under the run's key
   (``ResultStore.put``); ``--path direct``: ``mia attack`` without ``--processes`` and the app's runs,
   ``Experiment.attack`` -> ``run_attacks`` -> ``Attack.run`` on ``Experiment.x0``, stored whole at the end;
3. ``evaluate``: AUC, ASR, TPR@FPR with 200 bootstrap resamples (chunked: ``metrics._bootstrap_samples``).

It reports the process's peak RSS (``ru_maxrss``) and the same after the imports alone, the difference
per image, and the time. Run::

    python benchmarks/memory.py --sizes 10000,100000,1000000 --out benchmarks/results/memory_cpu
    python benchmarks/memory.py --path direct --sizes 10000,100000,1000000 --out benchmarks/results/memory_cpu_direct
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def parse_image(text: str) -> tuple[int, int, int]:
    """Parse ``8x8x1`` into (8, 8, 1): square images, 1 or 3 channels."""
    h, w, c = (int(v) for v in text.lower().split("x"))
    if h != w or c not in (1, 3) or h < 1:
        raise ValueError(f"--image must be RxRxC with C = 1 or 3, got {text!r}")
    return h, w, c


def write_images(path: Path, n: int, seed: int = 0, image: tuple[int, int, int] = (8, 8, 1)) -> None:
    """n uint8 images of shape ``image``, uncompressed (memory-mappable), written a few MiB at a time."""
    import zipfile

    rng = np.random.default_rng(seed)
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, *image)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            # 100k images (8x8x1: as before, the same images) or 16 MiB at a time: this process's peak RSS is the
            # child's starting point (Linux carries ru_maxrss over fork and exec)
            step = min(100_000, max(1, 2**24 // int(np.prod(image))))
            for start in range(0, n, step):
                f.write(rng.integers(0, 256, (min(step, n - start), *image), dtype=np.uint8).tobytes())


def child(npz: str, store: str, n_bootstrap: int, path: str = "sharded") -> dict:
    """Runs in a fresh process: the score path on the images in ``npz``; returns the measurements."""
    import torch

    from mia_core.attacks.base import Attack
    from mia_core.data import Conversion, ImageSet, Split
    from mia_core.data.sources import npz_memmap
    from mia_core.lab.experiment import Experiment
    from mia_core.lab.runs import ResultStore
    from mia_core.lab.shards import run_sharded
    from mia_core.metrics import evaluate

    class PixelEnergy(Attack):
        """Stand-in statistic: score = -mean(x^2) per image (no UNet)."""

        name = "pixel-energy"
        Params = type("Params", (), {})
        noise_draws = 0

        def __init__(self) -> None:
            self.params = self.Params()
            self.conditioning = None  # not a text-to-image run

        def params_dict(self) -> dict:
            return {}

        def compute(self, target, x0, noise):
            return {"score": -x0.flatten(1).square().mean(1)}

        def unet_calls(self, trace: bool = True) -> int:
            return 0

    base = peak_rss_mib()
    t0 = time.perf_counter()
    images = npz_memmap(npz, "images")
    n, side, _, channels = images.shape

    class FakeTarget:
        latent, kind = False, "ddpm"
        channels, resolution = int(images.shape[3]), int(side)
        model_shape = (channels, resolution, resolution)
        device = torch.device("cpu")
        fingerprint = "synthetic"

    ids = tuple(f"img-{k:07d}" for k in range(n))
    image_set = ImageSet(images, ids, npz)
    is_member = np.arange(n) < n // 2
    split = Split(ids[: n // 2], ids[n // 2 :], None, image_set.fingerprint, npz)
    exp = Experiment(FakeTarget(), split, image_set, Conversion(False, "none"), is_member)
    if path == "sharded":
        result = run_sharded(exp, [PixelEnergy()], seed=0, store=ResultStore(store), batch_size=4096)["pixel-energy"]
    else:
        result = exp.attack([PixelEnergy()], seed=0, store=ResultStore(store), batch_size=4096)["pixel-energy"]
    t_scored = time.perf_counter() - t0
    metrics = evaluate(result.scores, is_member, n_bootstrap=n_bootstrap, seed=0)
    return {
        "path": path,
        "image": f"{side}x{side}x{channels}",
        "n_images": n,
        "rss_after_imports_mib": round(base, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "seconds_scores_and_store": round(t_scored, 2),
        "seconds_total": round(time.perf_counter() - t0, 2),
        "auc": metrics.auc,
        "auc_ci": metrics.auc_ci.to_list() if metrics.auc_ci else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--path", choices=("sharded", "direct"), default="sharded", help="score path (see above)")
    parser.add_argument("--image", default="8x8x1", help="image shape RxRxC (default: the embedded default's)")
    parser.add_argument("--out", default=None, help="folder for memory.json and memory.md")
    parser.add_argument("--child", nargs=2, metavar=("NPZ", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.bootstrap, args.path)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "images.npz"
            write_images(npz, n, image=parse_image(args.image))
            cmd = [sys.executable, __file__, "--bootstrap", str(args.bootstrap), "--path", args.path]
            cmd += ["--child", str(npz), f"{tmp}/store"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
        row["delta_mib"] = round(row["peak_rss_mib"] - row["rss_after_imports_mib"], 1)
        row["bytes_per_image"] = round(row["delta_mib"] * 2**20 / n, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        f"{args.path} path, {args.image} images",
        "",
        "| images | RSS after imports (MiB) | peak RSS (MiB) | peak - imports (MiB) | bytes / image | seconds |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_images']:,} | {r['rss_after_imports_mib']} | {r['peak_rss_mib']} | {r['delta_mib']} "
            f"| {r['bytes_per_image']} | {r['seconds_total']} |"
        )
    for a, b in zip(rows, rows[1:]):  # what each further image costs: the slope between two sizes
        slope = (b["peak_rss_mib"] - a["peak_rss_mib"]) * 2**20 / (b["n_images"] - a["n_images"])
        lines.append(
            f"\n{a['n_images']:,} -> {b['n_images']:,} images: {slope:.0f} bytes of peak RSS per further image"
        )
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "memory.json").write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows}, indent=1))
        (out / "memory.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
