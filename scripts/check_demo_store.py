"""Recompute the shipped demo results and compare them with assets/demo_store, score for score.

The demo store holds the default run (embedded target, default split, seed 0). After a change
that should not change any number (a refactor, a new loader), this reruns those attacks into a
fresh store and checks that every stored key is found again and every score is equal:

    python scripts/check_demo_store.py                      # the five threshold attacks
    python scripts/check_demo_store.py --attacks loss,pia   # a subset

Exit status 0 when every score matches to --rtol (default 0: bit-identical), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np

from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
from mia_core.lab.runs import ResultStore
from mia_core.paths import DEMO_STORE_DIR


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="loss,secmi,pia,pian,sima")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0: identical)")
    args = parser.parse_args()
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    exp = load_experiment("default", "default", device="cpu")
    attacks = make_attacks(names)
    shipped = stored_results(
        exp, attacks, seed=0, store=ResultStore(tempfile.mkdtemp(), extra_readonly=[DEMO_STORE_DIR])
    )
    missing = [a.name for a in attacks if a.name not in shipped]
    if missing:
        print(f"not in the demo store under today's keys: {', '.join(missing)}")
        return 1
    fresh = exp.attack(attacks, seed=0, store=ResultStore(tempfile.mkdtemp()))
    ok = True
    for name in names:
        a, b = shipped[name], fresh[name]
        same_ids = tuple(a.ids) == tuple(b.ids)
        diff = float(np.max(np.abs(a.scores - b.scores) / np.maximum(np.abs(a.scores), 1e-30))) if same_ids else np.inf
        good = same_ids and diff <= args.rtol
        ok &= good
        print(
            f"{name:6s} {len(a.ids)} images, largest relative score difference {diff:.3g}: {'ok' if good else 'DIFFERENT'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
