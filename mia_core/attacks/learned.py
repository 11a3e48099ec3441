"""Shared parts of the learned attacks (SecMI-NN, quantile regression).

* :func:`partition_ids`: which ids an attack may train on and which it scores. Each class is ranked
  by ``sha256(f"{seed}:{id}")`` and the first ``round(fraction * n)`` of the ranking train, so the
  partition is deterministic, independent of the input order, and the two parts are disjoint.
* :func:`secmi_intermediates`: one SecMI-stat pass (11 UNet calls / image at t_sec=100, k=10) that
  also keeps x~ (the inverted point) and x'' (its round trip), on the CPU.
* :func:`build_net`: the small networks: a CIFAR-style ResNet-18 (3x3 stem, no max-pool, global
  average pool, so any resolution >= 8 works) and a four-layer CNN for small images.
* :func:`fit`: a seeded minibatch training loop that reports progress per optimizer step.
* :class:`PhaseProgress`: one progress bar over "statistic, then training".
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..target import Target
from .base import ProgressFn, as_float_tensor
from .secmi import SecMIStat

ARCHS = ("auto", "resnet18", "small")
#: the smallest side at which "auto" picks ResNet-18 (its published input is 32x32).
RESNET_MIN_RESOLUTION = 32


# -- partitions ------------------------------------------------------------------------------------


def hash_rank(ids: Sequence[str], seed: int) -> list[str]:
    """The ids ordered by sha256(f"{seed}:{id}"): a seeded shuffle that ignores the input order."""
    return sorted((str(i) for i in ids), key=lambda i: hashlib.sha256(f"{int(seed)}:{i}".encode()).hexdigest())


def fraction_count(fraction: float, n: int) -> int:
    """round(fraction * n), halves rounded up (Python's round() would round 0.5 to even)."""
    return int(math.floor(fraction * n + 0.5))


def partition_ids(
    ids: Sequence[str],
    is_member: np.ndarray,
    seed: int,
    *,
    member_fraction: float,
    nonmember_fraction: float,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(train_ids, eval_ids): round(fraction * n) of each class train, the rest is scored.

    Both parts keep the input order; which ids fall in which part depends only on the set of
    (id, label) pairs and the seed.
    """
    ids = tuple(str(i) for i in ids)
    labels = np.asarray(is_member, dtype=bool)
    if labels.shape != (len(ids),):
        raise ValueError(f"is_member must have one entry per id: {labels.shape} labels for {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise ValueError("ids must be unique to partition them")
    chosen: set[str] = set()
    for cls, fraction in ((True, member_fraction), (False, nonmember_fraction)):
        members_of_class = [i for i, m in zip(ids, labels) if m == cls]
        chosen.update(hash_rank(members_of_class, seed)[: fraction_count(fraction, len(members_of_class))])
    train = tuple(i for i in ids if i in chosen)
    evaluation = tuple(i for i in ids if i not in chosen)
    return train, evaluation


def describe_parts(n_eval: tuple[int, int], n_train: tuple[int, int], eval_words: str, train_words: str) -> str:
    """e.g. 'held-out 80 %: 718 members, 719 non-members; trained on 20 % (180 members + 180 non-members)'."""
    return (
        f"{eval_words}: {n_eval[0]} members, {n_eval[1]} non-members; "
        f"trained on {train_words} ({n_train[0]} members + {n_train[1]} non-members)"
    )


def index_of(ids: Sequence[str], wanted: Sequence[str]) -> np.ndarray:
    """Positions of ``wanted`` in ``ids``: (len(wanted),) int64."""
    where = {i: k for k, i in enumerate(ids)}
    return np.asarray([where[i] for i in wanted], dtype=np.int64)


# -- the statistic ---------------------------------------------------------------------------------


def secmi_intermediates(
    target: Target,
    x0: np.ndarray | torch.Tensor,
    ids: Sequence[str],
    *,
    t_sec: int,
    k: int,
    seed: int,
    batch_size: int | None = None,
    progress: ProgressFn | None = None,
    captions: Sequence[str] | None = None,
    conditioning: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SecMI-stat without its trace: t-error (N,), x~ and x'' (N, C, H, W) float32 on the CPU.

    SecMI is deterministic (no noise, so ``seed`` does not change it): when SecMI-NN and QR run one
    after the other on the same images, the second reuses the first's pass (the last result is
    kept, keyed by the target, the SecMI grid, the conditioning and a digest of the images and ids).
    On a text-to-image target ``conditioning`` and ``captions`` condition the pass (see ``Attack.run``).
    """
    x0 = as_float_tensor(x0)
    ids = tuple(str(i) for i in ids)
    key = _intermediates_key(target, x0, ids, t_sec, k, conditioning, captions)
    if _LAST_INTERMEDIATES and _LAST_INTERMEDIATES[0] == key:
        if progress is not None:
            progress(len(ids), len(ids))
        return _LAST_INTERMEDIATES[1]
    stat = SecMIStat(SecMIStat.Params(t_sec=t_sec, k=k, trace=False), conditioning=conditioning)
    res = stat.run(
        target,
        x0,
        ids=ids,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        keep=("x_tilde", "x_recon"),
        captions=captions,
    )
    out = (-res.scores, res.extras["x_tilde"], res.extras["x_recon"])
    _LAST_INTERMEDIATES[:] = [key, out]
    return out


#: [key, (t_error, x_tilde, x_recon)] of the last SecMI pass (one entry: the maps are large).
_LAST_INTERMEDIATES: list = []


def _intermediates_key(
    target: Target,
    x0: torch.Tensor,
    ids: tuple[str, ...],
    t_sec: int,
    k: int,
    conditioning: Any = None,
    captions: Sequence[str] | None = None,
) -> tuple:
    return (
        target.fingerprint,
        str(target.device),
        target.precision,
        t_sec,
        k,
        ids,
        hashlib.sha256(x0.detach().cpu().contiguous().numpy().tobytes()).hexdigest(),
        repr(conditioning),
        None if captions is None else tuple(str(c) for c in captions),
    )


def remember_intermediates(
    target: Target,
    x0: np.ndarray | torch.Tensor,
    ids: Sequence[str],
    *,
    t_sec: int,
    k: int,
    result: tuple[np.ndarray, np.ndarray, np.ndarray],
    captions: Sequence[str] | None = None,
    conditioning: Any = None,
) -> None:
    """Hand :func:`secmi_intermediates` a pass computed elsewhere (a sharded run's merged SecMI-stat
    batches): ``result`` = (t-error (N,), x~, x'' (N, C, H, W)), in ``ids`` order, for these images
    (conditioned as ``captions`` / ``conditioning`` on a text-to-image target)."""
    x0 = as_float_tensor(x0)
    ids = tuple(str(i) for i in ids)
    _LAST_INTERMEDIATES[:] = [_intermediates_key(target, x0, ids, t_sec, k, conditioning, captions), result]


# -- networks --------------------------------------------------------------------------------------


def resolve_arch(arch: str, resolution: int) -> str:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if arch == "auto":
        return "resnet18" if resolution >= RESNET_MIN_RESOLUTION else "small"
    return arch


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) shortcut, as in He et al. 2016."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18 (SecMI's ``mia_evals/resnet.py``): 3x3 stem, no max-pool, stages of
    64/128/256/512 channels with strides 1/2/2/2, then a *global* average pool (SecMI's fixed 4x4
    pool needs 32x32 inputs) and one linear output. (B, C, H, W) -> (B,)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)]
            c_in = c_out
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(512, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)).mean(dim=(2, 3))).squeeze(1)


class SmallCNN(nn.Module):
    """Four 3x3 conv + batch-norm + ReLU layers (width, width, 2 width stride 2, 2 width), a global
    average pool and one linear output: for images too small for ResNet-18. (B, C, H, W) -> (B,)."""

    def __init__(self, in_channels: int, width: int = 32) -> None:
        super().__init__()
        chans = [(in_channels, width, 1), (width, width, 1), (width, 2 * width, 2), (2 * width, 2 * width, 1)]
        self.features = nn.Sequential(
            *[
                layer
                for c_in, c_out, stride in chans
                for layer in (nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())
            ]
        )
        self.head = nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def build_net(arch: str, in_channels: int, resolution: int, seed: int) -> nn.Module:
    """A freshly initialised network, its weights fixed by ``seed`` (the global RNG is untouched)."""
    arch = resolve_arch(arch, resolution)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet18(in_channels) if arch == "resnet18" else SmallCNN(in_channels)


# -- training --------------------------------------------------------------------------------------


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Minibatches per epoch; a last batch of one sample joins the one before (batch norm needs 2)."""
    full, rest = divmod(n, batch_size)
    return max(1, full + (1 if rest > 1 or full == 0 else 0))


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[], None] | None = None,
) -> list[float]:
    """Minibatch training, a fresh shuffle (from ``generator``) each epoch; returns the mean loss
    per epoch. ``inputs`` (n, ...) and ``targets`` (n,) already sit on the model's device."""
    n = inputs.shape[0]
    n_batches = batches_per_epoch(n, batch_size)
    curve = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(inputs.device)
        bounds = [min(n, b * batch_size) for b in range(n_batches)] + [n]
        total = 0.0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            rows = order[lo:hi]
            loss = loss_fn(model(inputs[rows]), targets[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * (hi - lo)
            if on_step is not None:
                on_step()
        curve.append(total / n)
    model.eval()
    return curve


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """The model's output on (n, ...) inputs in eval mode: (n,) float64 numpy."""
    model.eval()
    outs = [model(inputs[i : i + batch_size]).float().cpu() for i in range(0, inputs.shape[0], batch_size)]
    return torch.cat(outs).double().numpy()


class PhaseProgress:
    """One ``progress(done, total)`` over two phases: N images of statistic, then S training steps."""

    def __init__(self, progress: ProgressFn | None, n_images: int, n_steps: int) -> None:
        self.progress, self.n_images, self.total = progress, n_images, n_images + n_steps
        self.steps = 0

    def images(self, done: int, _total: int) -> None:
        if self.progress is not None:
            self.progress(done, self.total)

    def step(self) -> None:
        self.steps += 1
        if self.progress is not None:
            self.progress(self.n_images + self.steps, self.total)
