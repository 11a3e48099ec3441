"""The same attacks on the same images with 1 and with N processes (``mia attack --processes``): images/s, ratio.

Each configuration is one fresh ``mia attack`` command with a fresh result store, so nothing is read back:

* ``--processes 1``: the sharded path in this one process (torch uses every core);
* ``--processes N``: ``accelerate launch`` with N CPU processes (gloo), the cores shared out between them
  (or N GPUs, when the machine has them).

Reported per configuration: the scoring wall time (from the shard manifests: split, score, wait for every
process, merge; summed over the attacks), images/s on it (images x attacks / seconds), the whole command's
wall time (imports, model loading and the launcher included), the largest process's peak RSS, and the
machine's load average before and after (the machine may be shared: the load says how far to trust the
ratio). The scores of every configuration are checked to be identical.

    python benchmarks/processes.py --limit 128 --attacks loss,pia,sima --processes 2 --out benchmarks/results/processes_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def run_once(args: argparse.Namespace, processes: int, tmp: Path, threads: int | None = None) -> dict:
    out = tmp / f"p{processes}t{threads}"
    cmd = [sys.executable, "-m", "mia_core.cli", "attack", "--target", args.target, "--data", args.data]
    cmd += ["--limit", str(args.limit), "--attacks", args.attacks, "--out", str(out), "--bootstrap", "0"]
    cmd += ["--processes", str(processes)] + (["--no-trace"] if args.no_trace else [])
    if args.device:
        cmd += ["--device", args.device]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    scoring = 0.0
    for manifest in (out / "store" / "shards").glob("*/manifest.json"):
        scoring += json.loads(manifest.read_text())["attempts"][-1]["wall_seconds"]
    scores = pd.read_csv(out / "scores.csv")
    n_images, n_attacks = len(scores), len(args.attacks.split(","))
    return {
        "processes": processes,
        "threads_per_process": threads or max(1, (os.cpu_count() or 1) // processes),
        "images": n_images,
        "attacks": args.attacks,
        "scoring_seconds": round(scoring, 2),
        "images_per_second": round(n_images * n_attacks / scoring, 2),
        "command_seconds": round(wall, 2),
        # every process this configuration started has been waited for: the largest one's peak
        "largest_process_peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "_scores": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="default")
    parser.add_argument("--data", default="default")
    parser.add_argument("--limit", type=int, default=128, help="members and non-members each")
    parser.add_argument("--attacks", default="loss,pia,sima")
    parser.add_argument("--processes", type=int, default=2, help="compared with 1")
    parser.add_argument("--trace", dest="no_trace", action="store_false", help="also the per-timestep traces")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="folder for processes.json and processes.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # RUSAGE_CHILDREN is a maximum over every child so far: each configuration in its own process
        # 1 process on every core, 1 process on one core, N processes sharing the cores
        for n, threads in ((1, None), (1, 1), (args.processes, None)):
            if len(rows) == 0:
                rows.append(run_once(args, n, Path(tmp)))
            else:
                code = (
                    f"import sys, json, argparse; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    "import processes as b; a = argparse.Namespace(**json.loads(sys.argv[1])); "
                    f"r = b.run_once(a, {n}, b.Path(sys.argv[2]), {threads!r}); "
                    "r.pop('_scores').to_csv(sys.argv[3], index=False, float_format='%.9g'); print(json.dumps(r))"
                )
                csv = Path(tmp) / f"scores{n}-{threads}.csv"
                res = subprocess.run(
                    [sys.executable, "-c", code, json.dumps(vars(args)), tmp, str(csv)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(res.stdout.strip().splitlines()[-1])
                row["_scores"] = pd.read_csv(csv)
                rows.append(row)
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "_scores"}), flush=True)
        first = rows[0]["_scores"]
        first.to_csv(Path(tmp) / "scores1.csv", index=False, float_format="%.9g")
        first = pd.read_csv(Path(tmp) / "scores1.csv")  # both through the same 9-digit text
        for r in rows:
            s = r.pop("_scores")
            r["scores_identical_to_1_process"] = bool(
                all(np.array_equal(first[c].to_numpy(), s[c].to_numpy()) for c in first.columns if c != "id")
                and list(first["id"]) == list(s["id"])
            )
    ratio = rows[-1]["images_per_second"] / rows[0]["images_per_second"]
    ratio_1t = rows[-1]["images_per_second"] / rows[1]["images_per_second"]
    lines = [
        f"`{' '.join(['python', 'benchmarks/processes.py', *sys.argv[1:]])}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores",
        "",
        "| processes | threads each | images x attacks | scoring s | images/s | command s | largest process peak RSS (MiB) "
        "| load before -> after (1 min) | scores = 1 process |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['processes']} | {r['threads_per_process']} | {r['images']} x {len(r['attacks'].split(','))} | {r['scoring_seconds']} "
            f"| {r['images_per_second']} | {r['command_seconds']} | {r['largest_process_peak_rss_mib']} "
            f"| {r['load_before'][0]} -> {r['load_after'][0]} | {r['scores_identical_to_1_process']} |"
        )
    lines += [
        "",
        f"ratio ({args.processes} processes / 1 process on every core): {ratio:.2f}x images/s; "
        f"({args.processes} processes / 1 process on one core): {ratio_1t:.2f}x",
    ]
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "processes.json").write_text(
            json.dumps({"command": sys.argv, "rows": rows, "ratio": ratio, "ratio_to_one_thread": ratio_1t}, indent=1)
        )
        (out / "processes.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
