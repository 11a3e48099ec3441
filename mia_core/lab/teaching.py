"""The teaching views: forward noising, one-step denoising, member vs non-member reconstruction.

Everything the Learn page shows is computed here (no Streamlit), on tiny batches, with fixed
seeded noise so a view does not flicker when it reruns.

Notation (as in :mod:`mia_core.schedule`, 0-based timesteps):

    x0        an image in [-1, 1], (N, C, H, W)
    eps       Gaussian noise, (C, H, W) shared by every image, or (N, C, H, W)
    x_t       sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                          (DDPM eq. 4)
    eps_pred  eps_theta(x_t, t), the UNet's guess of the noise
    x0_hat    (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t)                 (DDIM eq. 9)

Errors are *means* over pixels (per image), so their size does not depend on the resolution:

    eps error  mean (eps_pred - eps)^2          (the DDPM training loss, averaged not summed)
    x0 error   mean (x0_hat - x0)^2 = (1 - abar_t) / abar_t * eps error

At one t the two rank images identically; the x0 error is the "reconstruction" a person can see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from mia_core.schedule import NoiseSchedule, predict_x0, q_sample
from mia_core.views.style import MEMBER_COLOR, MEMBER_LABEL, NONMEMBER_COLOR, NONMEMBER_LABEL
from mia_core.target import DEFAULT_TARGET_DIR, Target

if TYPE_CHECKING:  # pragma: no cover
    from mia_core.lab.experiment import Experiment

#: Displayed width of an upscaled image, in pixels (an 8x8 digit becomes 20x20 blocks).
DISPLAY_SIZE = 160
#: The cheap per-t sweep of the Learn page (10 timesteps, 0-based).
LEARN_SWEEP: tuple[int, ...] = (10, 50, 100, 200, 300, 400, 500, 600, 700, 850)
#: UNet inputs per forward pass when sweeping (kept modest for CPUs).
_MAX_BATCH_PIXELS = 2**16


# -- noise and the forward process ----------------------------------------------------------


def fixed_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard Gaussian noise of ``shape`` (CPU, float32) from ``torch.Generator().manual_seed(seed)``.

    The same (shape, seed) always gives the same tensor, whatever else ran before.
    """
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(int(s) for s in shape), generator=gen, dtype=torch.float32)


def signal_noise_weights(schedule: NoiseSchedule, t: int) -> tuple[float, float, float]:
    """``(abar_t, sqrt(abar_t), sqrt(1 - abar_t))``: how much image and how much noise x_t holds."""
    schedule.check_timesteps(int(t))
    abar = float(schedule.alphas_cumprod[int(t)])
    return abar, abar**0.5, (1.0 - abar) ** 0.5


def noised(x0: torch.Tensor, t: int, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (``q_sample``).

    Parameters
    ----------
    x0 : (N, C, H, W) or (C, H, W) float tensor in [-1, 1].
    t : int, 0-based timestep.
    noise : tensor broadcastable to ``x0`` ((C, H, W) shares one noise image across the batch).

    Returns
    -------
    Tensor of ``x0``'s shape, float32.
    """
    x0 = torch.as_tensor(x0, dtype=torch.float32)
    noise = torch.as_tensor(noise, dtype=torch.float32).to(x0.device)
    return q_sample(schedule, x0, int(t), noise.expand_as(x0))


def noise_shape(target: Target, image_shape: Sequence[int]) -> tuple[int, ...]:
    """The noise shape for images of ``image_shape`` ((C, H, W) or (N, C, H, W)): the latent's for a
    latent target (the diffusion runs there), else the images' own."""
    shape = tuple(int(v) for v in image_shape)
    return shape[:-3] + tuple(target.model_shape) if target.latent else shape


def one_step_denoise(
    target: Target, x0: torch.Tensor, t: int, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise ``x0`` to step ``t`` and let the model undo it in one step.

    Parameters
    ----------
    target : Target
    x0 : (N, C, H, W) float tensor in [-1, 1] at the target's resolution and channels
        ((C, H, W) is accepted and gives (C, H, W) outputs).
    t : int, 0-based timestep.
    noise : tensor broadcastable to ``x0``, or to its latent for a latent target (:func:`noise_shape`).
        A latent target works on ``target.encode(x0)`` and returns x_t and x0_hat decoded to images,
        eps_pred as a latent.

    Returns
    -------
    x_t : the noised image, x0's shape, float32 on the CPU.
    eps_pred : eps_theta(x_t, t), same shape.
    x0_hat : the one-step reconstruction (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t), same shape.
    """
    x0 = torch.as_tensor(x0, dtype=torch.float32).cpu()
    single = x0.ndim == 3
    if single:
        x0 = x0.unsqueeze(0)
    if target.latent:  # noise and denoise the latent; show the decoded images (eps_pred stays a latent)
        z0 = target.encode(x0).cpu()
        noise = torch.as_tensor(noise, dtype=torch.float32).cpu().expand_as(z0)
        z_t = noised(z0, t, noise, target.schedule)
        eps_pred = target.eps(z_t, int(t)).cpu()
        z0_hat = predict_x0(target.schedule, z_t, int(t), eps_pred)
        x_t, x0_hat = target.decode(z_t).cpu(), target.decode(z0_hat).cpu()
    else:
        noise = torch.as_tensor(noise, dtype=torch.float32).cpu().expand_as(x0)
        x_t = noised(x0, t, noise, target.schedule)
        eps_pred = target.eps(x_t, int(t)).cpu()
        x0_hat = predict_x0(target.schedule, x_t, int(t), eps_pred)
    if single:
        return x_t[0], eps_pred[0], x0_hat[0]
    return x_t, eps_pred, x0_hat


@dataclass(frozen=True)
class ErrorCurve:
    """Per-image, per-timestep reconstruction errors (means over pixels, averaged over noise draws).

    Attributes
    ----------
    timesteps : (K,) int64
    x0_error : (N, K) float64, mean (x0_hat - x0)^2
    eps_error : (N, K) float64, mean (eps_pred - eps)^2
    draws : int, noise draws averaged
    """

    timesteps: np.ndarray
    x0_error: np.ndarray
    eps_error: np.ndarray
    draws: int


def reconstruction_error_curve(
    target: Target,
    x0: torch.Tensor | np.ndarray,
    timesteps: Sequence[int] = LEARN_SWEEP,
    seed: int = 0,
    *,
    draws: int = 1,
) -> ErrorCurve:
    """Errors of the one-step reconstruction at each timestep, for each image.

    Draw ``d`` uses the noise ``fixed_noise((C, H, W), seed + d)`` for every image and every t,
    so images are compared on exactly the same noise (draw 0 is the Learn page's noise).
    All N * K * draws UNet inputs go through the model in a few stacked forward passes.

    Parameters
    ----------
    x0 : (N, C, H, W) float in [-1, 1].
    timesteps : K 0-based timesteps.
    draws : noise draws averaged per (image, t), >= 1.
    """
    x0 = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0, dtype=torch.float32).cpu()
    if x0.ndim != 4:
        raise ValueError(f"x0 must be (N, C, H, W), got shape {tuple(x0.shape)}")
    if target.latent:  # errors of the latent (what the UNet denoises), not of decoded images
        x0 = target.encode(x0).cpu()
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("need at least one timestep")
    target.schedule.check_timesteps(torch.as_tensor(ts))
    if int(draws) < 1:
        raise ValueError(f"draws must be >= 1, got {draws!r}")
    n, k = x0.shape[0], len(ts)
    noises = torch.stack([fixed_noise(x0.shape[1:], seed + d) for d in range(int(draws))])  # (D, C, H, W)
    # Stack (draw, t, image) in that order: row = (d * K + j) * N + i.
    x0_all = x0.repeat(draws * k, 1, 1, 1)
    t_all = torch.as_tensor(ts, dtype=torch.long).repeat_interleave(n).repeat(draws)
    eps_all = noises.repeat_interleave(k * n, dim=0)
    x_t = q_sample(target.schedule, x0_all, t_all, eps_all)
    per_call = max(1, _MAX_BATCH_PIXELS // int(np.prod(x0.shape[1:])))
    eps_pred = torch.cat([target.eps(x_t[i:i + per_call], t_all[i:i + per_call]).cpu()
                          for i in range(0, x_t.shape[0], per_call)])
    x0_hat = predict_x0(target.schedule, x_t, t_all, eps_pred)
    eps_err = (eps_pred - eps_all).double().pow(2).flatten(1).mean(1).view(draws, k, n).mean(0)
    x0_err = (x0_hat - x0_all).double().pow(2).flatten(1).mean(1).view(draws, k, n).mean(0)
    return ErrorCurve(np.asarray(ts, dtype=np.int64), x0_err.T.numpy(), eps_err.T.numpy(), int(draws))


# -- images for display -------------------------------------------------------------------


def to_display(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A model-space image (C, H, W) in [-1, 1] -> uint8 (H, W, C), or (H, W) for one channel.

    Values outside [-1, 1] (a very noisy x_t, a raw noise image) are clipped. The inverse of
    ``ImageSet.to_unit_range`` (x / 127.5 - 1) up to rounding.
    """
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"to_display expects one image (C, H, W), got shape {arr.shape}")
    out = np.clip(np.rint((arr.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    out = out.transpose(1, 2, 0)
    return out[:, :, 0] if out.shape[2] == 1 else out


def noise_to_display(eps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Show a noise image (roughly N(0, 1)) with +-3 sigma mapped to black..white."""
    arr = eps.detach().cpu().numpy() if isinstance(eps, torch.Tensor) else np.asarray(eps)
    if arr.ndim == 3 and arr.shape[0] not in (1, 3):  # a latent's noise: its first channel
        arr = arr[:1]
    return to_display(arr / 3.0)


def upscale_nearest(img: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour resize of (H, W) or (H, W, C) so the longer side is ``size`` pixels.

    Each output pixel copies one input pixel (no blur); an integer factor repeats each pixel
    exactly ``size // H`` times in both directions.
    """
    img = np.asarray(img)
    if img.ndim not in (2, 3):
        raise ValueError(f"upscale_nearest expects (H, W) or (H, W, C), got shape {img.shape}")
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    h, w = img.shape[:2]
    scale = int(size) / max(h, w)
    out_h, out_w = max(1, round(h * scale)), max(1, round(w * scale))
    rows = (np.arange(out_h) * h) // out_h
    cols = (np.arange(out_w) * w) // out_w
    return img[rows[:, None], cols[None, :]]


def display_image(x: torch.Tensor | np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """``upscale_nearest(to_display(x), size)``."""
    return upscale_nearest(to_display(x), size)


# -- the experiment's images --------------------------------------------------------------


def images_x0(exp: "Experiment", indices: Sequence[int]) -> torch.Tensor:
    """The experiment's images at ``indices`` as (len, C, H, W) float32 in [-1, 1] (only those converted)."""
    idx = np.asarray(list(indices), dtype=np.int64)
    pixels = exp.images.images[idx].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def index_of(exp: "Experiment", image_id: str) -> int:
    """Position of ``image_id`` in ``exp.ids``; ValueError naming the id when absent."""
    try:
        return exp.ids.index(image_id)
    except ValueError:
        raise ValueError(f"image {image_id!r} is not in this experiment's split") from None


def member_vs_nonmember(
    exp: "Experiment", member_id: str | None = None, nonmember_id: str | None = None
) -> tuple[int, int]:
    """Indices (into ``exp.ids``) of a member and a non-member to compare.

    Defaults: the first member and the first non-member of the split. Given ids are checked to
    be in the split and on the right side of it (ValueError otherwise).
    """
    members = np.flatnonzero(exp.is_member)
    nonmembers = np.flatnonzero(~exp.is_member)
    if not len(members) or not len(nonmembers):
        raise ValueError("the split needs at least one member and one non-member")
    m = int(members[0]) if member_id is None else index_of(exp, member_id)
    nm = int(nonmembers[0]) if nonmember_id is None else index_of(exp, nonmember_id)
    if not exp.is_member[m]:
        raise ValueError(f"{exp.ids[m]!r} is a non-member, not a member")
    if exp.is_member[nm]:
        raise ValueError(f"{exp.ids[nm]!r} is a member, not a non-member")
    return m, nm


def random_index(exp: "Experiment", member: bool, rng: np.random.Generator) -> int:
    """A uniformly drawn member (``member=True``) or non-member index."""
    pool = np.flatnonzero(exp.is_member == bool(member))
    return int(rng.choice(pool))


def population_indices(exp: "Experiment", n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` member and ``n`` non-member indices drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(exp.is_member)
    nonmembers = np.flatnonzero(~exp.is_member)
    pick_m = rng.choice(members, size=min(n, len(members)), replace=False)
    pick_n = rng.choice(nonmembers, size=min(n, len(nonmembers)), replace=False)
    return np.sort(pick_m), np.sort(pick_n)


# -- figures ------------------------------------------------------------------------------


def error_bars_figure(member_error: float, nonmember_error: float, *, title: str) -> go.Figure:
    """Two bars (member, non-member) for one error value each."""
    fig = go.Figure(go.Bar(
        x=[MEMBER_LABEL, NONMEMBER_LABEL], y=[member_error, nonmember_error],
        marker_color=[MEMBER_COLOR, NONMEMBER_COLOR],
        text=[f"{member_error:.4f}", f"{nonmember_error:.4f}"], textposition="outside",
        hovertemplate="%{x}: %{y:.5f}<extra></extra>",
    ))
    top = max(member_error, nonmember_error, 1e-12)
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), showlegend=False,
                      yaxis=dict(title="mean squared error", range=[0, top * 1.25]))
    return fig


def error_curve_figure(
    timesteps: np.ndarray,
    member_curve: np.ndarray,
    nonmember_curve: np.ndarray,
    *,
    t_marker: int | None = None,
    ylabel: str = "mean squared error",
    member_band: tuple[np.ndarray, np.ndarray] | None = None,
    nonmember_band: tuple[np.ndarray, np.ndarray] | None = None,
    names: tuple[str, str] = (MEMBER_LABEL, NONMEMBER_LABEL),
) -> go.Figure:
    """Error against t for a member and a non-member (log-y), with optional (low, high) bands and a line at t."""
    fig = go.Figure()
    for curve, band, color, name in ((member_curve, member_band, MEMBER_COLOR, names[0]),
                                     (nonmember_curve, nonmember_band, NONMEMBER_COLOR, names[1])):
        if band is not None:
            lo, hi = band
            fig.add_trace(go.Scatter(
                x=np.concatenate([timesteps, timesteps[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                fill="toself", fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip",
                showlegend=False, name=f"{name} IQR",
            ))
        fig.add_trace(go.Scatter(x=timesteps, y=curve, mode="lines+markers", name=name,
                                 line=dict(color=color, width=2.5),
                                 hovertemplate=f"{name}<br>t=%{{x}}<br>error=%{{y:.5f}}<extra></extra>"))
    if t_marker is not None:
        fig.add_vline(x=int(t_marker), line=dict(color="gray", dash="dot"), annotation_text=f"t = {int(t_marker)}",
                      annotation_position="top left")
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12),
                      xaxis=dict(title="timestep t"), yaxis=dict(title=ylabel, type="log", dtick=1))
    return fig


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def abar_figure(schedule: NoiseSchedule, t: int) -> go.Figure:
    """sqrt(abar_t) (signal weight) and sqrt(1 - abar_t) (noise weight) over all t, a marker at t."""
    abar = schedule.alphas_cumprod.numpy()
    ts = np.arange(abar.size)
    step = max(1, abar.size // 250)  # ~250 points are plenty for a smooth line
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ts[::step], y=np.sqrt(abar[::step]), name="signal weight sqrt(abar_t)",
                             line=dict(color="#333333")))
    fig.add_trace(go.Scatter(x=ts[::step], y=np.sqrt(1 - abar[::step]), name="noise weight sqrt(1 - abar_t)",
                             line=dict(color="#999999", dash="dash")))
    fig.add_vline(x=int(t), line=dict(color="gray", dash="dot"))
    fig.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=1.15),
                      xaxis=dict(title="timestep t"), yaxis=dict(title="weight", range=[0, 1.02]))
    return fig


# -- the attacks in one table ---------------------------------------------------------------

_MEASURES = {
    "loss": "the denoising error sum (eps - eps_theta(x_t, t))^2 at one t (the training loss): "
            "members are denoised better",
    "secmi": "the t-error: invert the image with deterministic DDIM steps to t_sec - k, step up and back down once, "
             "and measure how far it lands from where it started",
    "pia": "noise the image with the model's own noise guess eps_theta(x0, 0) and check the model predicts that "
           "same noise back at t: members get consistent predictions",
    "pian": "PIA with eps_theta(x0, 0) rescaled to the size of Gaussian noise",
    "sima": "the size of the predicted noise eps_theta(x0, t) on the clean image: a memorised image sits at a "
            "peak of the learned density, so the model sees little noise in it",
}


def attack_summary(registry: Mapping[str, type] | None = None) -> list[dict[str, Any]]:
    """One row per registered attack: name, title, what it measures, UNet calls per image, paper, score."""
    if registry is None:
        from mia_core.attacks import REGISTRY as registry  # noqa: N811
    rows = []
    for name, cls in registry.items():
        attack = cls()
        rows.append({
            "attack": cls.title or name,
            "what it measures": _MEASURES.get(name, cls.score_label),
            "UNet calls / image": int(attack.unet_calls(trace=False)),
            "score (higher = member)": cls.score_label,
            "paper": cls.paper,
            "name": name,
        })
    return rows


# -- the default target's training log -------------------------------------------------------


def read_train_log(folder: str | Path = DEFAULT_TARGET_DIR) -> dict[str, Any] | None:
    """``train_log.json`` of a target folder, or None when there is none (or it is unreadable)."""
    path = Path(folder) / "train_log.json"
    try:
        log = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return log if isinstance(log, dict) else None


def train_log_summary(log: Mapping[str, Any]) -> dict[str, Any]:
    """The facts worth showing from a training log: command, steps, members, seconds, device, weights."""
    cfg = log.get("config", {}) or {}
    return {
        "command": log.get("command", ""),
        "steps": cfg.get("steps"),
        "members": log.get("n_members"),
        "seconds": log.get("seconds"),
        "device": log.get("device"),
        "weights": log.get("weights"),
        "batch size": cfg.get("batch_size"),
        "learning rate": cfg.get("lr"),
        "EMA decay": cfg.get("ema_decay"),
    }


def loss_curve_figure(log: Mapping[str, Any]) -> go.Figure | None:
    """Training loss against step (log-y) from ``log["loss_curve"]`` ([[step, loss], ...]); None if absent."""
    curve = log.get("loss_curve") or []
    try:
        arr = np.asarray(curve, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        return None
    fig = go.Figure(go.Scatter(x=arr[:, 0], y=arr[:, 1], mode="lines", line=dict(color="#333333"),
                               name="training loss", hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=10, b=10),
                      xaxis=dict(title="training step"),
                      yaxis=dict(title="loss: mean (eps - eps_theta)^2", type="log"))
    return fig

