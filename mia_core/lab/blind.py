"""Blind baseline: can the images alone, without the model, tell members from non-members?

Das, Zhang & Tramèr (2024) showed that on biased splits (members and non-members from different
distributions) a classifier that never queries the target beats published attacks; an attack's
AUC then measures the shift, not memorisation. This module fits such a classifier on the
*calibration* part of a split (:func:`mia_core.calibration.calibration_partition`) and scores the
disjoint *test* part:

    features   each image block-averaged to ``size x size`` per channel (pixels / 255), plus the
               image's mean and standard deviation (brightness, contrast)
    classifier StandardScaler + LogisticRegression(max_iter=2000), scikit-learn, fitted on the
               calibration part only (no transductive scaling)
    score      P(member) on the test part; metrics by :func:`mia_core.metrics.evaluate`
    bias flag  the 95 % bootstrap interval of the test AUC lies wholly above 0.5

It never loads or queries a target model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mia_core.calibration import Partition, calibration_partition
from mia_core.data.images import release_pages
from mia_core.metrics import AttackMetrics, as_labels, evaluate, format_metric

__all__ = ["BlindBaseline", "blind_features", "blind_baseline", "BLIND_NAME"]

#: Display name of the reference curve and table row.
BLIND_NAME = "blind baseline (images only, no model)"


@dataclass(frozen=True, eq=False)
class BlindBaseline:
    """The blind classifier's scores and metrics on the test part of a split.

    Attributes
    ----------
    scores : np.ndarray, shape (N_test,)
        P(member) from the image-only classifier; higher = member.
    is_member : np.ndarray of bool, shape (N_test,)
    test_rows : np.ndarray of int, shape (N_test,)
        Rows of the test part in the input order.
    metrics : AttackMetrics
        AUC, TPR@1 % FPR etc. on the test part, with 95 % bootstrap intervals.
    partition : Partition
        The calibration / test cut (sizes, seed).
    """

    scores: np.ndarray
    is_member: np.ndarray
    test_rows: np.ndarray
    metrics: AttackMetrics
    partition: Partition

    @property
    def biased(self) -> bool:
        """True when the AUC interval lies wholly above 0.5: the images alone separate the classes."""
        ci = self.metrics.auc_ci
        return ci is not None and ci.low > 0.5

    def warning(self) -> str | None:
        """A one-paragraph warning when :attr:`biased`, else None."""
        if not self.biased:
            return None
        m = self.metrics
        return (
            f"The split looks biased: a classifier that never queries the model tells members from non-members "
            f"from the images alone (blind baseline AUC {m.auc:.3f}, 95% CI [{m.auc_ci.low:.3f}, "
            f"{m.auc_ci.high:.3f}], TPR@1%FPR {format_metric(m.tpr_at_1pct_fpr, 0.01)} on the test part). "
            f"Attack numbers on this split overstate memorisation; an attack means something only where it beats "
            f"this baseline."
        )

    def to_json_dict(self) -> dict:
        """Plain values for JSON: the metrics, the partition, ``biased``."""
        return {
            "classifier": "logistic regression on downsampled pixels + brightness/contrast",
            **self.metrics.to_json_dict(),
            "partition": self.partition.to_json_dict(),
            "biased": self.biased,
        }


#: images converted to float64 at once by :func:`blind_features` (peak memory: this many rows, 8 bytes per pixel)
FEATURE_CHUNK = 4096


def blind_features(images, size: int = 8) -> np.ndarray:
    """Model-free features of uint8 images.

    Parameters
    ----------
    images : np.ndarray or LazyImages, shape (N, H, W, C), uint8 (or any numeric in 0..255)
        Read ``FEATURE_CHUNK`` rows at a time: memory holds one chunk as float64, never all N (a memory-mapped
        ``.npz`` or an image folder stays on disk).
    size : int
        Side of the block-averaged thumbnail; ``H`` and ``W`` are cropped to a multiple of
        ``ceil(H / size)``-style blocks when they do not divide (the bottom/right remainder is dropped).

    Returns
    -------
    np.ndarray, shape (N, size * size * C + 2), float64
        Block means in [0, 1], then the per-image mean and standard deviation in [0, 1].
    """
    if not hasattr(images, "shape") or not hasattr(images, "__getitem__"):
        images = np.asarray(images)
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got {shape}")
    n, h, w, c = shape
    if size < 1 or size > min(h, w):
        raise ValueError(f"size must be in 1..{min(h, w)} for {h}x{w} images; got {size}")
    out = np.empty((n, size * size * c + 2), dtype=np.float64)
    for start in range(0, n, FEATURE_CHUNK):
        stop = min(n, start + FEATURE_CHUNK)
        batch = images[start:stop]
        out[start:stop] = _features(np.asarray(batch, dtype=np.float64), size)
        if isinstance(batch, np.ndarray):
            release_pages(batch)  # a memory-mapped file's pages: read, let go
    return out


def _features(arr: np.ndarray, size: int) -> np.ndarray:
    """:func:`blind_features` of float64 (k, H, W, C) pixels in 0..255 (each row on its own)."""
    n, h, w, c = arr.shape
    arr = arr / 255.0
    bh, bw = h // size, w // size
    blocks = arr[:, : bh * size, : bw * size, :].reshape(n, size, bh, size, bw, c).mean(axis=(2, 4))
    flat = arr.reshape(n, -1)
    return np.concatenate(
        [blocks.reshape(n, -1), flat.mean(axis=1, keepdims=True), flat.std(axis=1, keepdims=True)], axis=1
    )


def blind_baseline(
    images,
    is_member,
    *,
    partition: Partition | None = None,
    fraction: float = 0.5,
    seed: int = 0,
    n_bootstrap: int = 200,
    size: int = 8,
) -> BlindBaseline:
    """Fit the image-only classifier on the calibration part, evaluate it on the test part.

    Parameters
    ----------
    images : np.ndarray or LazyImages, shape (N, H, W, C), uint8
        The split's images (any resolution), in the order of ``is_member``; read in chunks
        (:func:`blind_features`).
    is_member : array_like, shape (N,)
        0/1 labels.
    partition : Partition, optional
        Calibration / test cut; built with ``fraction`` and ``seed`` when omitted.
    n_bootstrap, seed
        For the metrics' 95 % intervals (:func:`mia_core.metrics.evaluate`).
    size : int
        Thumbnail side for :func:`blind_features`.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = as_labels(is_member)
    if len(images) != labels.size:
        raise ValueError(f"images and is_member must have the same length; got {len(images)} and {labels.size}")
    part = partition if partition is not None else calibration_partition(labels, fraction=fraction, seed=seed)
    if not np.array_equal(part.is_member, labels):
        raise ValueError("the partition was built on other labels than is_member")
    features = blind_features(images, size)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[part.calibration], labels[part.calibration])
    test_rows = np.flatnonzero(part.test)
    scores = model.predict_proba(features[test_rows])[:, 1]
    metrics = evaluate(scores, labels[test_rows], n_bootstrap=n_bootstrap, seed=seed)
    return BlindBaseline(
        scores=scores, is_member=labels[test_rows], test_rows=test_rows, metrics=metrics, partition=part
    )
