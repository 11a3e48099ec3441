"""Was my collection used? Set-level membership inference (dataset inference, CDI-style).

One image's score is noisy; a collection's scores are not. The owner holds a *suspect* set (the
images they fear were trained on) and a *held-out* set from the same source that was certainly
not. Each image gets attack features (one score per chosen attack, higher = member); the test
asks whether the suspect scores are larger than the held-out ones:

    one attack     the scores themselves
    several        CDI (Dubiński et al., CVPR 2025, reference §7): a seeded ``control_fraction`` of
                   each set fits StandardScaler + LogisticRegression (suspect = 1, held-out = 0),
                   the rest is scored with P(suspect); only the rest enters the test
    test           one-sided Welch t-test (``welch``, scipy ``ttest_ind(equal_var=False,
                   alternative="greater")``) or Mann-Whitney U (``mannwhitney``, ``alternative="greater"``)
                   H0: suspect and held-out scores come from the same distribution (the collection
                   was not used); H1: suspect scores are larger
    verdict        "used" when p < alpha

Validity rests on the held-out set being drawn from the same source as the suspect set: if they
differ in distribution the test detects the shift, not training (see the blind baseline,
:mod:`mia_core.lab.blind`).
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Real

import numpy as np

__all__ = ["SetTestResult", "METHODS", "set_test", "draw_demo_sets", "score_matrix", "calibrate", "collection_scores"]

#: Available tests: name -> description.
METHODS = {"welch": "one-sided Welch t-test", "mannwhitney": "one-sided Mann-Whitney U test"}


@dataclass(frozen=True)
class SetTestResult:
    """Outcome of the set-level test.

    Attributes
    ----------
    p_value : float
        One-sided p-value of H0 "same distribution" against H1 "suspect scores larger".
    statistic : float
        Welch's t or the Mann-Whitney U of the suspect set.
    alpha : float
        Significance level of the verdict.
    used : bool
        ``p_value < alpha``: the collection looks used for training.
    n_suspect, n_heldout : int
        Images that entered the test (after the CDI control part was set aside).
    n_control : int
        Images (both sets together) spent on fitting the CDI combiner; 0 with one attack.
    method : str
        Key of :data:`METHODS`.
    features : tuple of str
        The attack names whose scores were used.
    mean_suspect, mean_heldout : float
        Mean test score of each set (scores of the single attack, or CDI's P(suspect)).
    """

    p_value: float
    statistic: float
    alpha: float
    used: bool
    n_suspect: int
    n_heldout: int
    n_control: int
    method: str
    features: tuple[str, ...]
    mean_suspect: float
    mean_heldout: float

    def verdict(self) -> str:
        """One sentence for people."""
        n = self.n_suspect + self.n_heldout + self.n_control
        if self.used:
            return (
                f"Likely used for training: p = {self.p_value:.3g} < {self.alpha:g} "
                f"({METHODS[self.method]} on {self.n_suspect} suspect vs {self.n_heldout} held-out images; "
                f"{n} images in all)."
            )
        return (
            f"No evidence of training use at the {self.alpha:g} level: p = {self.p_value:.3g} "
            f"({METHODS[self.method]} on {self.n_suspect} suspect vs {self.n_heldout} held-out images; "
            f"{n} images in all). This does not prove the collection was not used."
        )

    def to_json_dict(self) -> dict:
        return {
            "p_value": float(self.p_value),
            "statistic": float(self.statistic),
            "alpha": float(self.alpha),
            "used": bool(self.used),
            "n_suspect": int(self.n_suspect),
            "n_heldout": int(self.n_heldout),
            "n_control": int(self.n_control),
            "method": self.method,
            "features": list(self.features),
            "mean_suspect": float(self.mean_suspect),
            "mean_heldout": float(self.mean_heldout),
            "verdict": self.verdict(),
        }


def _as_features(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (n_images,) or (n_images, n_attacks); got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; found NaN or inf")
    return arr


def set_test(
    suspect,
    heldout,
    *,
    alpha: float = 0.05,
    method: str = "welch",
    features: tuple[str, ...] | list[str] = (),
    control_fraction: float = 0.5,
    seed: int = 0,
) -> SetTestResult:
    """Test whether the suspect set's attack scores exceed the held-out set's.

    Parameters
    ----------
    suspect : array_like, shape (n_s,) or (n_s, k)
        Attack scores of the suspect images (higher = member), one column per attack.
    heldout : array_like, shape (n_h,) or (n_h, k)
        Same for held-out images from the same source, known not to be in the training set.
    alpha : float
        Significance level in (0, 1).
    method : str
        ``"welch"`` or ``"mannwhitney"``.
    features : sequence of str
        Names of the k columns (reported only).
    control_fraction : float
        With k > 1: share of each set used to fit the CDI combiner, in (0, 1).
    seed : int
        Seed of the control/test cut (k > 1).
    """
    from scipy import stats

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {method!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in the open interval (0, 1); got {alpha!r}")
    s, h = _as_features(suspect, "suspect scores"), _as_features(heldout, "held-out scores")
    if s.shape[1] != h.shape[1]:
        raise ValueError(
            f"suspect and held-out scores need the same attacks; got {s.shape[1]} and {h.shape[1]} columns"
        )
    k = s.shape[1]
    if features and len(features) != k:
        raise ValueError(f"{len(features)} feature names for {k} score columns")
    n_control = 0
    if k == 1:
        s_test, h_test = s[:, 0], h[:, 0]
    else:
        s_test, h_test, n_control = _cdi_scores(s, h, control_fraction, seed)
    for name, arr in (("suspect", s_test), ("held-out", h_test)):
        if arr.size < 2:
            raise ValueError(
                f"the {name} set needs at least 2 images in the test (after the control part); got {arr.size}"
            )
    if method == "welch":
        res = stats.ttest_ind(s_test, h_test, equal_var=False, alternative="greater")
    else:
        res = stats.mannwhitneyu(s_test, h_test, alternative="greater")
    p = float(res.pvalue)
    if not np.isfinite(p):  # constant scores in both sets: no evidence either way
        p = 1.0
    return SetTestResult(
        p_value=p,
        statistic=float(res.statistic),
        alpha=float(alpha),
        used=p < float(alpha),
        n_suspect=int(s_test.size),
        n_heldout=int(h_test.size),
        n_control=n_control,
        method=method,
        features=tuple(features),
        mean_suspect=float(s_test.mean()),
        mean_heldout=float(h_test.mean()),
    )


def _cdi_scores(s: np.ndarray, h: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Fit the combiner on a control part of each set; return P(suspect) on the rest and the control size."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"control_fraction must be in the open interval (0, 1); got {fraction!r}")
    rng = np.random.default_rng(seed)
    parts = []
    for arr in (s, h):
        order = rng.permutation(len(arr))
        c = min(max(1, round(fraction * len(arr))), len(arr) - 1) if len(arr) > 1 else 0
        parts.append((arr[order[:c]], arr[order[c:]]))
    (s_ctrl, s_rest), (h_ctrl, h_rest) = parts
    if len(s_ctrl) == 0 or len(h_ctrl) == 0:
        raise ValueError("several attacks need at least 2 images per set (a control part to fit the combiner)")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(np.concatenate([s_ctrl, h_ctrl]), np.r_[np.ones(len(s_ctrl)), np.zeros(len(h_ctrl))])
    return model.predict_proba(s_rest)[:, 1], model.predict_proba(h_rest)[:, 1], len(s_ctrl) + len(h_ctrl)


def draw_demo_sets(
    is_member, n_suspect: int, n_heldout: int, *, suspect: str = "members", rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a demo suspect set and a held-out set drawn from a labelled split.

    Parameters
    ----------
    is_member : array_like of bool, shape (N,)
    n_suspect, n_heldout : int
        Set sizes.
    suspect : str
        ``"members"`` (the collection was used) or ``"nonmembers"`` (it was not: the null).
    rng : numpy Generator

    Returns
    -------
    suspect_rows, heldout_rows : np.ndarray of int
        Disjoint row indices; the held-out rows are always non-members.
    """
    labels = np.asarray(is_member, dtype=bool)
    if suspect not in ("members", "nonmembers"):
        raise ValueError(f"suspect must be 'members' or 'nonmembers'; got {suspect!r}")
    members, nonmembers = np.flatnonzero(labels), rng.permutation(np.flatnonzero(~labels))
    if suspect == "members":
        if n_suspect > members.size or n_heldout > nonmembers.size:
            raise ValueError(
                f"asked for {n_suspect} members and {n_heldout} held-out non-members; the split has "
                f"{members.size} and {nonmembers.size}"
            )
        return rng.choice(members, n_suspect, replace=False), nonmembers[:n_heldout]
    if n_suspect + n_heldout > nonmembers.size:
        raise ValueError(f"asked for {n_suspect} + {n_heldout} non-members; the split has {nonmembers.size}")
    return nonmembers[:n_suspect], nonmembers[n_suspect : n_suspect + n_heldout]


def score_matrix(results, ids, attacks) -> np.ndarray:
    """Scores of ``attacks`` for ``ids`` from stored results: shape (len(ids), len(attacks)).

    ``results`` maps attack name -> AttackResult (e.g. :func:`mia_core.lab.experiment.stored_results`);
    raises ValueError naming an attack without a result or an id it did not score.
    """
    columns = []
    for name in attacks:
        if name not in results:
            raise ValueError(f"no stored scores for attack {name!r}; run it first (have: {sorted(results)})")
        row_of = {i: k for k, i in enumerate(results[name].ids)}
        missing = [i for i in ids if i not in row_of]
        if missing:
            raise ValueError(f"attack {name!r} did not score image {missing[0]!r} ({len(missing)} missing)")
        columns.append(np.asarray(results[name].scores, dtype=float)[[row_of[i] for i in ids]])
    return np.stack(columns, axis=1)


def calibrate(
    scores: np.ndarray,
    is_member,
    *,
    sizes=(2, 5, 10, 20, 50, 100),
    n_draws: int = 200,
    alpha: float = 0.05,
    method: str = "welch",
    features: tuple[str, ...] = (),
    seed: int = 0,
) -> dict:
    """False-positive rate and power of :func:`set_test` over random demo sets.

    For each suspect-set size n (held-out set of the same size): ``n_draws`` null draws (suspect =
    random non-members) and ``n_draws`` member draws (suspect = random members).

    Parameters
    ----------
    scores : np.ndarray, shape (N,) or (N, k)
        Attack scores of the whole split.
    is_member : array_like of bool, shape (N,)

    Returns
    -------
    dict
        ``{"sizes": [...], "null_share_below_alpha": [...], "power": [...], "null_p_values": {n: [...]}, ...}``
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(is_member, dtype=bool)
    scores = _as_features(scores, "scores")
    out: dict = {
        "alpha": alpha,
        "method": method,
        "features": list(features),
        "n_draws": n_draws,
        "seed": seed,
        "sizes": [],
        "null_share_below_alpha": [],
        "power": [],
        "null_p_values": {},
    }
    for n in sizes:
        p_null, p_member = [], []
        for kind, bucket in (("nonmembers", p_null), ("members", p_member)):
            for d in range(n_draws):
                s_rows, h_rows = draw_demo_sets(labels, n, n, suspect=kind, rng=rng)
                res = set_test(scores[s_rows], scores[h_rows], alpha=alpha, method=method, seed=seed + d)
                bucket.append(res.p_value)
        out["sizes"].append(int(n))
        out["null_share_below_alpha"].append(float(np.mean(np.asarray(p_null) < alpha)))
        out["power"].append(float(np.mean(np.asarray(p_member) < alpha)))
        out["null_p_values"][str(n)] = [float(p) for p in p_null]
    return out


def collection_scores(
    target, images, attacks, *, seed: int = 0, store=None, batch_size: int | None = None, progress=None
) -> np.ndarray:
    """Attack scores of an uploaded or loaded image set: shape (N, len(attacks)), columns in ``attacks`` order.

    ``images`` is a :class:`mia_core.data.ImageSet` (any resolution; converted to the target's here; its
    captions kept: on a text-to-image target conditioned on each image's own caption they are the prompts,
    "" or none = the empty prompt); the scoring itself is :func:`mia_core.lab.verdict.score_images` (learned
    attacks are refused there: a collection has no membership labels). Results go through ``store``.
    """
    from mia_core.data import ImageSet, convert_images
    from mia_core.lab.verdict import score_images

    pixels, _ = convert_images(images.images, resolution=target.resolution, channels=target.channels)
    converted = ImageSet(pixels, images.ids, images.source, images.captions)
    scores = score_images(target, converted, attacks, seed=seed, store=store, batch_size=batch_size, progress=progress)
    return np.stack([scores[a.name] for a in attacks], axis=1)
