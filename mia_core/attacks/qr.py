"""Quantile regression, a bag of weak attackers (Tang, Wu, Aydore, Kearns, Roth, ICML 2024).

Notation (code -> paper; 0-based timesteps):

    t_error        l~(x): SecMI's t-error of x (sum of squares at t_sec - k; see ``secmi.py``)
    y              log l~(x): the regression target (the t-error is positive and spans orders of
                   magnitude; a quantile commutes with a monotone map, so exp(q of log) = q of l~)
    alpha          the quantile level = the target false-positive rate
    q_b(x)         regressor b's prediction of the alpha-quantile of y over *non-members* that look
                   like x: a per-image threshold
    rho_alpha(u)   the pinball loss max(alpha u, (alpha - 1) u), u = y - q; its minimiser over q is
                   the alpha-quantile of y
    member_votes   (1/B) sum_b [y(x) < q_b(x)]: regressor b flags x when its t-error is lower than
                   a non-member like it would have with probability 1 - alpha
    score          (1/B) sum_b (q_b(x) - y(x)): the mean margin, higher = member (gives the ROC)

Steps:
1. one SecMI pass gives l~ for every image (11 UNet calls at t_sec=100, k=10);
2. ``public_fraction`` of the non-members are *public* (a hash of the ids picks them): the attacker
   may use them, knowing only that they are non-members. They train the regressors and are never
   scored. Members are never used for training: their labels are not needed;
3. B regressors, each a small CNN on the image x0 itself (not on the t-error map), trained with
   the pinball loss on a bootstrap resample (with replacement, same size) of the public set;
   targets are standardised with the public mean and std; each regressor's output bias starts at
   its resample's alpha-quantile, so it starts from the global threshold and learns how the
   threshold moves with the image;
4. the evaluation set (all members + the non-public non-members) is scored: majority vote
   (member iff more than half of the B regressors flag it) at the chosen alpha, and the mean
   margin as a continuous score. The vote's exact TPR and FPR on the evaluation set are in
   ``info["vote_operating_point"]``; each image's own threshold exp(median_b q_b(x)), in t-error
   units, is ``extras["threshold"]``.

Choices not fixed by the paper (no official code was found; the unofficial reimplementation scores
at chance and is not followed): the regressor (the four-layer CNN of ``learned.SmallCNN`` by default:
B networks are trained, each must stay cheap, and the paper's point is that they are much smaller
than the target), B = 9 (odd, so the majority vote never ties), AdamW lr 1e-3, weight decay 1e-4,
30 epochs, batch 64; no early stopping.

Measured on the embedded default (``benchmarks/design_choices.py``: 449 held-out non-members + 898
members, 3 seeds of the partition, one CPU thread, ~1.3 s per regressor): one regressor's margin AUC
0.904-0.924; bags of 9 / 15 give 0.928-0.936 / 0.930-0.936, so 9 buys what bagging gives. The vote's
FPR at alpha = 1 % came out 2.4-3.8 % in our runs (``info["vote_operating_point"]``): 450 public
non-members put only ~4 samples below a 1 % quantile, so each regressor's threshold is noisy and
too high; that miscalibration is shown as measured (``info["vote_operating_point"]``), not tuned away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..target import Target
from .base import AttackResult, LearnedAttack, LearnedInputs
from .learned import (
    ARCHS,
    PhaseProgress,
    batches_per_epoch,
    build_net,
    fit,
    partition_ids,
    predict,
    resolve_arch,
    secmi_intermediates,
)
from .secmi import validate_secmi_grid


def pinball_loss(q: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean of rho_alpha(y - q) = max(alpha (y - q), (alpha - 1)(y - q)) over a batch: (n,), (n,) -> ()."""
    u = y - q
    return torch.maximum(alpha * u, (alpha - 1) * u).mean()


def bag_decision(q_bag: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine B regressors on N images.

    q_bag : (B, N) predicted thresholds, y : (N,) statistic (same units; lower = member).
    Returns (score, member_votes, is_flagged): score (N,) = mean_b (q_b - y), higher = member;
    member_votes (N,) = fraction of b with y < q_b; is_flagged (N,) bool = strict majority
    (member_votes > 1/2: a tie, possible with an even B, counts as non-member).
    """
    q_bag = np.asarray(q_bag, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if q_bag.ndim != 2 or q_bag.shape[1] != y.shape[0]:
        raise ValueError(f"q_bag must be (B, N) with N = len(y) = {y.shape[0]}, got {q_bag.shape}")
    votes = (y[None, :] < q_bag).mean(axis=0)
    return (q_bag - y[None, :]).mean(axis=0), votes, votes > 0.5


def _seed_of(*parts: int) -> int:
    """A 63-bit seed mixed from integers (the run seed, the regressor index, a purpose tag)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class QRParams:
    """t_sec, k: the t-error's timestep and DDIM interval; public_fraction: share of the non-members the
    attacker holds as known non-members (trained on, never scored); alpha: the quantile level = the
    target FPR; n_models: B, regressors in the bag; epochs, batch_size, lr, weight_decay: AdamW
    training of each regressor; arch: "small" (four-layer CNN), "resnet18", or "auto" (ResNet-18 at
    >= 32 px)."""

    t_sec: int = 100
    k: int = 10
    public_fraction: float = 0.5
    alpha: float = 0.01
    n_models: int = 9
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    arch: str = "small"

    def __post_init__(self) -> None:
        validate_secmi_grid(self.t_sec, self.k)
        if not (isinstance(self.public_fraction, (int, float)) and 0 < self.public_fraction < 1):
            raise ValueError(f"public_fraction must be in (0, 1), got {self.public_fraction!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 0.5):
            raise ValueError(f"alpha (the target FPR) must be in (0, 0.5), got {self.alpha!r}")
        for name in ("n_models", "epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if not (
            isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay) and self.weight_decay >= 0
        ):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")


class QuantileRegression(LearnedAttack):
    name = "qr"
    title = "Quantile regression (bag of weak attackers)"
    paper = "Tang et al., ICML 2024"
    score_label = "mean margin log q(x) - log t-error"
    trace_label = ""
    needs = ("public data known to be non-members",)
    training_data = (
        "public: 50 % of the non-members, known to be non-members (no member labels); "
        "scores all members and the other non-members"
    )
    Params = QRParams
    target_kinds = ("ddpm", "t2i")
    needs_full_precision = True  # the statistic is SecMI's (float32 UNet calls)

    def unet_calls(self, trace: bool = True) -> int:
        return self.params.t_sec // self.params.k + 1

    def partition(
        self, ids: Sequence[str], is_member: np.ndarray, seed: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(public non-members, evaluation ids = all members + the other non-members)."""
        return partition_ids(ids, is_member, seed, member_fraction=0.0, nonmember_fraction=self.params.public_fraction)

    def plan_steps(self, n_public: int) -> int:
        return self.params.n_models * self.params.epochs * batches_per_epoch(n_public, self.params.batch_size)

    def fit_and_score(self, target: Target, data: LearnedInputs) -> AttackResult:
        """Fit the bag on the public non-members, score all members and the held-out non-members.

        ``data.labels`` are only used to pick the public non-members and to report the vote's TPR / FPR.
        Returns an AttackResult over the evaluation ids (score = mean margin, higher = member) with
        extras "threshold" (t-error units), "member_votes", "t_error" and info (operating point).
        """
        p = self.params
        x0, ids, labels, seed = data.x0, data.ids, data.labels, data.seed
        public_ids, public_rows, eval_rows = data.train_ids, data.train_rows, data.eval_rows
        eval_members = labels[eval_rows]
        n_eval = (int(eval_members.sum()), int((~eval_members).sum()))
        if len(public_ids) < 2 or min(n_eval) < 1:
            raise ValueError(
                f"qr needs >= 2 public non-members and members and non-members to score; public_fraction="
                f"{p.public_fraction} of {int((~labels).sum())} non-members gives {len(public_ids)} public "
                f"and {n_eval[1]} held-out non-members, with {n_eval[0]} members"
            )
        phases = PhaseProgress(data.progress, len(ids), self.plan_steps(len(public_ids)))

        # 1. The statistic for every image: y = log t-error.
        t_error, _, _ = secmi_intermediates(
            target,
            x0,
            ids,
            t_sec=p.t_sec,
            k=p.k,
            seed=seed,
            batch_size=data.batch_size,
            progress=phases.images,
            captions=data.captions,
            conditioning=self.conditioning,
        )
        log_t = np.log(np.maximum(t_error, np.finfo(np.float64).tiny))

        # 2. Standardise the targets with the public set's moments (public data only).
        y_public = log_t[public_rows]
        mean, std = float(y_public.mean()), float(y_public.std()) or 1.0
        device = target.device
        x_public = x0[torch.from_numpy(public_rows)].to(device)
        y_std = torch.from_numpy(((y_public - mean) / std).astype(np.float32)).to(device)
        x_eval = x0[torch.from_numpy(eval_rows)].to(device)

        # 3. B regressors on bootstrap resamples of the public set, pinball loss at alpha.
        arch = resolve_arch(p.arch, target.resolution)
        q_bag, curves = [], []
        for b in range(p.n_models):
            resample = torch.from_numpy(
                np.random.default_rng(_seed_of(seed, b, 0)).integers(0, len(public_ids), len(public_ids))
            )
            net = build_net(arch, target.channels, target.resolution, _seed_of(seed, b, 1)).to(device)
            with torch.no_grad():  # start from the resample's global alpha-quantile
                net.head.bias.fill_(float(torch.quantile(y_std[resample.to(device)].float().cpu(), p.alpha)))
            optimizer = torch.optim.AdamW(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
            with torch.enable_grad():
                curves.append(
                    fit(
                        net,
                        x_public[resample.to(device)],
                        y_std[resample.to(device)],
                        lambda q, y: pinball_loss(q, y, p.alpha),
                        optimizer,
                        epochs=p.epochs,
                        batch_size=p.batch_size,
                        generator=torch.Generator().manual_seed(_seed_of(seed, b, 2)),
                        on_step=phases.step,
                    )
                )
            q_bag.append(predict(net, x_eval) * std + mean)  # back to log t-error units

        # 4. Combine: mean margin (continuous score), votes, the majority decision at alpha.
        q_bag_arr = np.stack(q_bag)
        score, votes, flagged = bag_decision(q_bag_arr, log_t[eval_rows])
        tp, fp = int(flagged[eval_members].sum()), int(flagged[~eval_members].sum())
        return self.learned_result(
            data,
            score,
            evaluated_on=(
                f"all {n_eval[0]} members and the {n_eval[1]} held-out non-members; trained on "
                f"{len(public_ids)} public non-members ({round(100 * p.public_fraction)} %, "
                "no member labels)"
            ),
            extras={
                "threshold": np.exp(np.median(q_bag_arr, axis=0)),
                "member_votes": votes,
                "t_error": t_error[eval_rows],
            },
            info={
                "arch": arch,
                "n_public": len(public_ids),
                "n_eval_members": n_eval[0],
                "n_eval_nonmembers": n_eval[1],
                "target": "log t-error, standardised with the public set's mean and std",
                "public_log_t_mean": mean,
                "public_log_t_std": std,
                "vote_operating_point": {
                    "rule": f"member iff more than half of the {p.n_models} regressors flag it",
                    "target_fpr": p.alpha,
                    "tpr": tp / n_eval[0],
                    "fpr": fp / n_eval[1],
                    "true_positives": tp,
                    "n_members": n_eval[0],
                    "false_positives": fp,
                    "n_nonmembers": n_eval[1],
                },
                "train_loss_per_epoch": [[round(v, 6) for v in c] for c in curves],
            },
        )
