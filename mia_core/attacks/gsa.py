"""GSA1 and GSA2: gradient-norm features and a classifier trained on shadow models
(Pang et al., "White-box Membership Inference Attacks against Diffusion Models", PoPETs 2025;
``py85252876/GSA``, ``DDPM/gen_l2_gradients_DDPM.py`` and ``test_attack_accuracy.py``).

White box: the attacker has the target's weights and backpropagates through them. It also has
shadow models: models trained with the target's recipe on data it knows the membership of.

Notation (0-based timesteps, images in [-1, 1]):

    t_k       the K timesteps 99, 199, ..., 999 (``sampling_frequency=10`` in the code)
    eps_k     fresh N(0, I) noise per (image, k), seeded per image (mia_core.noise)
    x_k       sqrt(abar_{t_k}) x0 + sqrt(1 - abar_{t_k}) eps_k
    L_k       mean_{C,H,W} (eps_theta(x_k, t_k) - eps_k)^2
    theta_j   the j-th parameter *tensor* of the UNet (weights and biases separately; 182 on the
              embedded default, 450 on the GSA DDPM)
    GSA1      feature_j = || d/d theta_j  (1/K) sum_k L_k ||_2       (one backward per image)
    GSA2      feature_j = (1/K) sum_k || d/d theta_j  L_k ||_2       (one backward per (image, t))
    score     P(member | features) from a classifier fitted on shadow-model features (higher = member)

The per-image gradients are computed for a batch of images at once with ``torch.func`` (``vmap``
of ``grad`` through a functional call of the UNet): exact per-sample gradients, no loop.

Shadow protocol (as the code: every shadow is trained on half of its own pool and its rows are
labelled by that membership; 70 % of the pooled rows train the classifier in the code, all of them
here). The shadows are passed in (:class:`Shadow`); ``mia_core.lab.shadow`` trains and caches them
with ``mia train``'s recipe on images disjoint from the target's members. The images the shadows
used are this attack's ``train_ids``; the target is scored on the other images only.

Classifier: scikit-learn's ``HistGradientBoostingClassifier(max_iter=200)``: boosted trees like the
paper's ``XGBClassifier(n_estimators=200)`` (XGBoost is not a dependency; this is scikit-learn's
histogram gradient boosting, the same family), seeded, early stopping off.

Deliberate differences from the official code:
* no standardisation: the code standardises the target's rows with the target's own statistics
  (transductive, ``test_attack_accuracy.py:56-65``); trees do not need scaling, so nothing is fitted
  on the scored images.
* members are not truncated to the non-member count; counts are reported as they are.
* the classifier is fitted on every shadow row (the code keeps 30 % aside for its own check).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..noise import per_image_noise
from ..schedule import q_sample
from ..target import Target
from .base import AttackResult, LearnedAttack, LearnedInputs, ProgressFn, validate_timestep
from .learned import hash_rank, index_of

#: images per vmap'ed gradient batch on a CPU / a GPU
_CPU_GRAD_BATCH = 16
_GPU_GRAD_BATCH = 256


@dataclass(frozen=True)
class Shadow:
    """A shadow model and the images it was (member_ids) and was not (nonmember_ids) trained on."""

    target: Target
    member_ids: tuple[str, ...]
    nonmember_ids: tuple[str, ...]
    description: str = ""


def gradient_features(
    target: Target,
    x0: torch.Tensor,
    ids: Sequence[str],
    *,
    timesteps: Sequence[int],
    per_timestep: bool,
    seed: int,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """GSA features: (N, P) float64, one L2 gradient norm per parameter tensor of ``target.unet``.

    x0 : (N, C, H, W) in [-1, 1]; ids seed each image's noise (K draws, one per timestep).
    per_timestep : False = GSA1 (gradient of the mean loss over the K timesteps), True = GSA2 (mean
        over the K timesteps of the gradient norm of each timestep's loss).
    """
    from torch.func import functional_call, grad, vmap

    unet = target.unet
    names = [n for n, _ in unet.named_parameters()]
    params = {n: p.detach() for n, p in unet.named_parameters()}
    device = target.device
    k = len(timesteps)
    t_all = torch.as_tensor(list(timesteps), dtype=torch.long, device=device)
    target.schedule.check_timesteps(t_all.cpu())

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        pred = functional_call(unet, p, (x, t)).sample
        return (pred.float() - eps).square().mean()

    def norms(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        g = grad(loss)(p, x, t, eps)
        return torch.stack([g[n].float().norm() for n in names])

    if per_timestep:  # GSA2: one gradient per (image, t): vmap over both, then average the norms over t

        def features(p, x, t, eps):  # x, eps (K, C, H, W); t (K,)
            return vmap(norms, in_dims=(None, 0, 0, 0))(p, x[:, None], t[:, None], eps[:, None]).mean(0)
    else:  # GSA1: the gradient of the mean loss over the K noised copies
        features = norms

    n = x0.shape[0]
    bs = batch_size or (_GPU_GRAD_BATCH if device.type == "cuda" else _CPU_GRAD_BATCH)
    if per_timestep:
        bs = max(1, bs // 4)
    out = np.empty((n, len(names)), dtype=np.float64)
    batched = vmap(features, in_dims=(None, 0, None, 0))
    for start in range(0, n, bs):
        stop = min(n, start + bs)
        xb = x0[start:stop].to(device)
        eps = per_image_noise(ids[start:stop], seed, k, tuple(x0.shape[1:]), device)  # (b, K, C, H, W)
        x_t = q_sample(
            target.schedule, xb.repeat_interleave(k, 0), t_all.repeat(stop - start), eps.reshape(-1, *x0.shape[1:])
        ).view_as(eps)
        with warnings.catch_warnings(), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            # torch has no batching rule for CPU flash-attention's backward: it loops (correct, slower)
            warnings.filterwarnings("ignore", message="There is a performance drop")
            out[start:stop] = batched(params, x_t, t_all, eps).cpu().double().numpy()
        if progress is not None:
            progress(stop, n)
    return out


@dataclass(frozen=True)
class GSAParams:
    """timesteps: the K noise levels (99, 199, ..., 999 as the code); n_shadows: shadow models; shadow_fraction:
    share of the non-members the shadows may use (the target is scored on the rest); shadow_steps: training
    steps per shadow (kept small on a CPU); shadow_batch_size: images per shadow training step; max_iter:
    boosting rounds of the classifier (200, as the code's XGBoost)."""

    timesteps: tuple[int, ...] = tuple(range(99, 1000, 100))
    n_shadows: int = 2
    shadow_fraction: float = 0.5
    shadow_steps: int = 400
    shadow_batch_size: int = 64
    max_iter: int = 200

    def __post_init__(self) -> None:
        if not self.timesteps:
            raise ValueError("GSA needs at least one timestep")
        for t in self.timesteps:
            validate_timestep("GSA timestep", t)
        for name in ("n_shadows", "shadow_steps", "shadow_batch_size", "max_iter"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.shadow_fraction, (int, float)) and 0 < self.shadow_fraction < 1):
            raise ValueError(f"shadow_fraction must be in (0, 1), got {self.shadow_fraction!r}")


class GSA1(LearnedAttack):
    name = "gsa1"
    title = "GSA1 (gradient norms, one backward)"
    paper = "Pang et al., PoPETs 2025"
    score_label = "P(member) of boosted trees on per-tensor gradient norms"
    trace_label = ""
    access = "white"
    needs = ("shadow models",)
    uses_shadow_models = True
    training_data = (
        "shadow models trained on part of the non-members (the shadow pool); scores the members "
        "and the other non-members"
    )
    Params = GSAParams
    per_timestep = False

    def unet_calls(self, trace: bool = True) -> int:
        return len(self.params.timesteps)  # forward passes; plus 1 (GSA1) or K (GSA2) backward passes

    def applies_to(self, target: Target) -> str | None:
        reason = super().applies_to(target)
        if reason:
            return reason
        if getattr(target, "prediction_type", "epsilon") != "epsilon":
            return (
                f"the features are gradients of the epsilon-prediction loss; this model predicts "
                f"{target.prediction_type!r} (its own training loss is not implemented here)"
            )
        if getattr(target, "latent", False):
            return "latent target: the gradients would need the loss on encoded images, not implemented"
        return None

    def setup_unet_calls(self) -> int:
        """Training the shadows once (cached afterwards): one forward and backward per image of each step."""
        return self.params.n_shadows * self.params.shadow_steps * self.params.shadow_batch_size

    def partition(
        self, ids: Sequence[str], is_member: np.ndarray, seed: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(shadow pool, evaluation ids): round(shadow_fraction * n) of the non-members, ranked by a seeded
        hash; no member is ever in the pool."""
        ids = tuple(str(i) for i in ids)
        labels = np.asarray(is_member, dtype=bool)
        if labels.shape != (len(ids),):
            raise ValueError(f"is_member must have one entry per id: {labels.shape} labels for {len(ids)} ids")
        nonmembers = [i for i, m in zip(ids, labels) if not m]
        pool = set(hash_rank(nonmembers, seed)[: int(np.floor(self.params.shadow_fraction * len(nonmembers) + 0.5))])
        return tuple(i for i in ids if i in pool), tuple(i for i in ids if i not in pool)

    def shadow_splits(self, pool_ids: Sequence[str], seed: int) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Each shadow's (members, non-members): a seeded half of the pool and the other half."""
        out = []
        for s in range(self.params.n_shadows):
            ranked = hash_rank(pool_ids, seed * 1000 + s + 1)
            half = len(ranked) // 2
            members = set(ranked[:half])
            out.append((tuple(i for i in pool_ids if i in members), tuple(i for i in pool_ids if i not in members)))
        return out

    def features(
        self,
        target: Target,
        x0: torch.Tensor,
        ids: Sequence[str],
        *,
        seed: int,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        return gradient_features(
            target,
            x0,
            ids,
            timesteps=self.params.timesteps,
            per_timestep=self.per_timestep,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
        )

    def fit_and_score(self, target: Target, data: LearnedInputs, shadows: Sequence[Shadow] = ()) -> AttackResult:
        """Fit the classifier on the shadows' features of their pool images, score the target's evaluation part.

        ``data`` as :meth:`LearnedAttack.fit_score` prepares it (the training part is the shadow pool: the
        labels are used only to choose it among the non-members and to report counts). ``shadows``: from
        ``mia_core.lab.shadow.shadow_targets`` (their images must all be in the pool).
        """
        from sklearn.ensemble import HistGradientBoostingClassifier

        if not shadows:
            raise ValueError(f"{self.name} needs shadow models (mia_core.lab.shadow.shadow_targets); none were given")
        x0, ids, labels, seed = data.x0, data.ids, data.labels, data.seed
        batch_size, progress = data.batch_size, data.progress
        pool_ids, eval_ids = data.train_ids, data.eval_ids
        pool = set(pool_ids)
        for sh in shadows:
            outside = [i for i in sh.member_ids + sh.nonmember_ids if i not in pool]
            if outside:
                raise ValueError(
                    f"shadow images must come from the shadow pool; {len(outside)} do not, e.g. {outside[0]!r}"
                )
            if sh.target.fingerprint == target.fingerprint:
                raise ValueError("a shadow model is the target itself")
        n_rows = sum(len(sh.member_ids) + len(sh.nonmember_ids) for sh in shadows) + len(eval_ids)
        done = 0

        def step(d: int, _total: int) -> None:
            if progress is not None:
                progress(done + d, n_rows)

        # 1. Shadow rows: each shadow's features on its own members (label 1) and non-members (label 0).
        rows, row_labels = [], []
        for sh in shadows:
            sh_ids = sh.member_ids + sh.nonmember_ids
            rows.append(
                self.features(
                    sh.target,
                    x0[torch.from_numpy(index_of(ids, sh_ids))],
                    sh_ids,
                    seed=seed,
                    batch_size=batch_size,
                    progress=step,
                )
            )
            row_labels.append(np.r_[np.ones(len(sh.member_ids)), np.zeros(len(sh.nonmember_ids))])
            done += len(sh_ids)
        features_train, y_train = np.concatenate(rows), np.concatenate(row_labels).astype(int)
        clf = HistGradientBoostingClassifier(max_iter=self.params.max_iter, early_stopping=False, random_state=seed)
        clf.fit(features_train, y_train)

        # 2. The target's features on the evaluation part; score = P(member).
        eval_rows = data.eval_rows
        features_eval = self.features(
            target, x0[torch.from_numpy(eval_rows)], eval_ids, seed=seed, batch_size=batch_size, progress=step
        )
        scores = clf.predict_proba(features_eval)[:, 1].astype(np.float64)
        n_eval = (int(labels[eval_rows].sum()), int((~labels[eval_rows]).sum()))
        n_pool = len(pool_ids)
        return self.learned_result(
            data,
            scores,
            evaluated_on=(
                f"every member and the non-members outside the shadow pool: {n_eval[0]} members, "
                f"{n_eval[1]} non-members; {len(shadows)} shadow model(s) trained on a pool of {n_pool} "
                "non-members"
            ),
            extras={},
            info={
                "classifier": f"HistGradientBoostingClassifier(max_iter={self.params.max_iter})",
                "n_features": int(features_train.shape[1]),
                "n_shadow_rows": int(len(y_train)),
                "train_accuracy": float((clf.predict(features_train) == y_train).mean()),
                "shadows": [
                    sh.description or f"{len(sh.member_ids)} members + {len(sh.nonmember_ids)} non-members"
                    for sh in shadows
                ],
                "n_eval_members": n_eval[0],
                "n_eval_nonmembers": n_eval[1],
            },
        )


class GSA2(GSA1):
    name = "gsa2"
    title = "GSA2 (gradient norms, one backward per t)"
    per_timestep = True
