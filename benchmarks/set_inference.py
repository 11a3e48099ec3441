"""Calibration of "Was my collection used?" (set-level inference) on the default target.

Uses the demo store's precomputed scores of the default target on the default split (nothing is
recomputed). For each suspect-set size n (held-out set of n non-members): 200 random non-member
suspect sets (the null: the share with p < 0.05 should be about 0.05) and 200 random member suspect
sets (the power). Features: one attack (PIA), and CDI's logistic-regression combination of all five
default attacks. One-sided Welch t-test.

    python benchmarks/set_inference.py [--draws 200]

Writes benchmarks/results/set_inference.json (numbers) and set_inference_power.svg (power per size).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mia_core.attacks import DEFAULT_ATTACKS
from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
from mia_core.lab.runs import ResultStore
from mia_core.lab.set_inference import calibrate, score_matrix
from mia_core.paths import DEMO_STORE_DIR

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (4, 6, 10, 20, 50, 100)
COLORS = ("#d62728", "#1f77b4")


def svg_plot(curves: dict[str, tuple[list[int], list[float]]], alpha: float) -> str:
    """A small dependency-free SVG line chart: power (y, 0..1) against set size (x, log scale)."""
    w, h, left, bottom, top, right = 560, 360, 60, 50, 30, 170
    xs = [x for xv, _ in curves.values() for x in xv]
    lx0, lx1 = np.log10(min(xs)), np.log10(max(xs))

    def px(x):
        return left + (np.log10(x) - lx0) / (lx1 - lx0) * (w - left - right)

    def py(y):
        return h - bottom - y * (h - bottom - top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
        f'font-size="12"><rect width="100%" height="100%" fill="white"/>'
    ]
    for y in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<line x1="{left}" x2="{w - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>'
            f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:g}</text>'
        )
    for x in sorted(set(xs)):
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{x}</text>')
    parts.append(
        f'<line x1="{left}" x2="{w - right}" y1="{py(alpha):.1f}" y2="{py(alpha):.1f}" stroke="#888" '
        f'stroke-dasharray="4 3"/><text x="{w - right + 4}" y="{py(alpha) + 4:.1f}">α = {alpha:g}</text>'
    )
    for k, (name, (xv, yv)) in enumerate(curves.items()):
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xv, yv))
        c = COLORS[k % len(COLORS)]
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>' for x, y in zip(xv, yv)]
        parts.append(f'<text x="{w - right + 4}" y="{top + 16 * k + 10}" fill="{c}">{name}</text>')
    parts.append(
        f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">suspect-set size '
        f"(= held-out size), log scale</text>"
    )
    parts.append(
        f'<text x="16" y="{(top + h - bottom) / 2}" transform="rotate(-90 16 {(top + h - bottom) / 2})" '
        f'text-anchor="middle">power (share of member sets with p &lt; {alpha:g})</text>'
    )
    parts.append(f'<text x="{left}" y="18">Was my collection used? Power on the default target</text></svg>')
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=200, help="random suspect sets per size and kind")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    exp = load_experiment("default", "default")
    store = ResultStore(extra_readonly=[DEMO_STORE_DIR])
    results = stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=store)
    report = {
        "target": "default",
        "data": "default",
        "alpha": args.alpha,
        "draws_per_size": args.draws,
        "sizes": list(SIZES),
        "settings": {},
    }
    curves = {}
    for label, feats in (("PIA", ["pia"]), ("CDI: all five attacks", list(DEFAULT_ATTACKS))):
        c = calibrate(
            score_matrix(results, exp.ids, feats),
            exp.is_member,
            sizes=SIZES,
            n_draws=args.draws,
            alpha=args.alpha,
            features=tuple(feats),
        )
        all_null = np.concatenate([c["null_p_values"][str(n)] for n in SIZES])
        c["null_share_below_alpha_all_sizes"] = float(np.mean(all_null < args.alpha))
        c["null_draws_all_sizes"] = int(all_null.size)
        report["settings"][label] = c
        curves[label] = (c["sizes"], c["power"])
        print(
            f"{label}: null share p<{args.alpha:g} per size {c['null_share_below_alpha']} "
            f"(all {all_null.size} draws: {c['null_share_below_alpha_all_sizes']:.3f}); power {c['power']}"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "set_inference.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "set_inference_power.svg").write_text(svg_plot(curves, args.alpha))
    print(f"wrote {RESULTS / 'set_inference.json'} and {RESULTS / 'set_inference_power.svg'}")


if __name__ == "__main__":
    main()
