"""Noise stability of a verdict: rescore one image with several noise seeds.

Attacks that draw noise (the loss attack's (t, eps) draws) give a slightly different score for
each seed; deterministic ones (PIA, SecMI's DDIM round trip) give the same. A verdict whose score
crosses the threshold for some seeds and not others is unstable and should say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Stability", "rescore_seeds", "stability"]


@dataclass(frozen=True)
class Stability:
    """Scores of one image over seeds against a threshold.

    scores : (K,) one score per seed; flagged_share : fraction of seeds with ``score >= threshold``;
    stable : every seed gives the same verdict (all flagged or none).
    """

    seeds: tuple[int, ...]
    scores: np.ndarray
    threshold: float
    flagged_share: float
    stable: bool

    def sentence(self) -> str:
        k = len(self.seeds)
        spread = f"scores {self.scores.min():.4g} to {self.scores.max():.4g} over {k} noise seeds"
        if self.stable:
            side = "above" if self.flagged_share == 1.0 else "below"
            return f"Stable: {spread}, all {side} the threshold {self.threshold:.4g}."
        return (
            f"Unstable: {spread}; {self.flagged_share:.0%} of the seeds flag it (threshold {self.threshold:.4g}). "
            f"The verdict depends on the noise draw."
        )


def rescore_seeds(target: Any, x0: np.ndarray, image_id: str, attack: Any, seeds: Sequence[int]) -> np.ndarray:
    """Score one image (x0: (C, H, W) or (1, C, H, W), float in [-1, 1]) once per seed: shape (K,)."""
    x = np.asarray(x0, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"x0 must be one image (C, H, W) or (1, C, H, W); got shape {x.shape}")
    if not seeds:
        raise ValueError("give at least one seed")
    return np.array([float(attack.run(target, x, ids=[image_id], seed=int(s)).scores[0]) for s in seeds])


def stability(scores: Sequence[float], threshold: float, seeds: Sequence[int]) -> Stability:
    """Summarise per-seed scores against a threshold (``score >= threshold`` flags member)."""
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or arr.size != len(seeds):
        raise ValueError(f"need one score per seed; got {arr.size} scores for {len(seeds)} seeds")
    flagged = arr >= float(threshold)
    share = float(flagged.mean())
    return Stability(tuple(int(s) for s in seeds), arr, float(threshold), share, share in (0.0, 1.0))
