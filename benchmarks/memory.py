"""Peak memory of a large run's score path: lazy images -> per-batch scores in the store -> merged -> metrics.

For each N (default 10k, 100k, 1M) synthetic 8x8x1 uint8 images (the embedded default's size) are written
to an uncompressed ``.npz``; a fresh process then runs the sharded path of ``mia attack`` on them with a
cheap stand-in statistic instead of the UNet (``pixel-energy``: minus the mean squared pixel value; a
million UNet passes is not what this measures):

1. the images are memory-mapped (``load_npz``) and converted to [-1, 1] one batch at a time;
2. every batch's scores are written to its own file in a result store (``mia_core.lab.shards``),
   merged on the main process and stored under the run's key (``ResultStore.put``);
3. ``evaluate``: AUC, ASR, TPR@FPR with 200 bootstrap resamples (chunked: ``metrics._bootstrap_samples``).

It reports the process's peak RSS (``ru_maxrss``) and the same after the imports alone, the difference
per image, and the time. Run::

    python benchmarks/memory.py --sizes 10000,100000,1000000 --out benchmarks/results/memory_cpu
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


def write_images(path: Path, n: int, seed: int = 0) -> None:
    """n uint8 8x8x1 images, uncompressed (memory-mappable), written 100k at a time; ids "img-0000000" .."""
    import zipfile

    rng = np.random.default_rng(seed)
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, 8, 8, 1)}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("images.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, n, 100_000):
                f.write(rng.integers(0, 256, (min(100_000, n - start), 8, 8, 1), dtype=np.uint8).tobytes())


def child(npz: str, store: str, n_bootstrap: int) -> dict:
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

    class FakeTarget:
        channels, resolution, latent, kind = 1, 8, False, "ddpm"
        device = torch.device("cpu")
        fingerprint = "synthetic"
        model_shape = (1, 8, 8)

    base = peak_rss_mib()
    t0 = time.perf_counter()
    images = npz_memmap(npz, "images")
    n = images.shape[0]
    ids = tuple(f"img-{k:07d}" for k in range(n))
    image_set = ImageSet(images, ids, npz)
    is_member = np.arange(n) < n // 2
    split = Split(ids[: n // 2], ids[n // 2 :], None, image_set.fingerprint, npz)
    exp = Experiment(FakeTarget(), split, image_set, Conversion(False, "none"), is_member)
    result = run_sharded(exp, [PixelEnergy()], seed=0, store=ResultStore(store), batch_size=4096)["pixel-energy"]
    t_scored = time.perf_counter() - t0
    metrics = evaluate(result.scores, is_member, n_bootstrap=n_bootstrap, seed=0)
    return {
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
    parser.add_argument("--out", default=None, help="folder for memory.json and memory.md")
    parser.add_argument("--child", nargs=2, metavar=("NPZ", "STORE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.bootstrap)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "images.npz"
            write_images(npz, n)
            cmd = [sys.executable, __file__, "--bootstrap", str(args.bootstrap), "--child", str(npz), f"{tmp}/store"]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
        row["delta_mib"] = round(row["peak_rss_mib"] - row["rss_after_imports_mib"], 1)
        row["bytes_per_image"] = round(row["delta_mib"] * 2**20 / n, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
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
