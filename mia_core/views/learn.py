"""Figures and tables of the Learn and Target pages: error bars, the noise schedule, the training log.

Plotly only, built from plain numbers (what :mod:`mia_core.lab.teaching` computed); nothing here
runs a model. The per-timestep error curve of the Learn page is the one of every page,
:func:`mia_core.views.results.error_curve_figure`; attack names and explanations come from
:mod:`mia_core.views.attack_info`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly.graph_objects as go

from mia_core.schedule import NoiseSchedule
from mia_core.views.attack_info import all_attack_info
from mia_core.views.images import png_data_uri
from mia_core.views.style import (
    MEMBER_COLOR,
    MEMBER_LABEL,
    NONMEMBER_COLOR,
    NONMEMBER_LABEL,
    format_numbers,
    log_axis,
)

__all__ = [
    "error_bars_figure",
    "abar_figure",
    "sigma_figure",
    "process_text",
    "forward_animation_figure",
    "attack_summary",
    "train_log_summary",
    "loss_curve_figure",
    "caption_curves_figure",
]

#: The Learn page's formulas and labels for each kind of target (``Target.kind``): a DDPM's forward
#: process mixes image and noise with abar_t; a VE-SDE adds noise of standard deviation sigma(t) to the
#: data in [0, 1] and its model returns a score (``mia_core.lab.teaching`` computes both).
PROCESS_TEXT: dict[str, dict[str, str]] = {
    "ddpm": {
        "forward": r"x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\varepsilon,\qquad "
        r"\varepsilon \sim \mathcal{N}(0, I)",
        "denoise": r"\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}}",
        "noise_caption": "ε: the noise (fixed seed)",
        "pred_caption": "ε_θ(x_t, t): predicted noise",
        "noise_error": "noise error mean (ε_θ − ε)²",
        "noise_error_help": "The training loss of a DDPM on this image at this t (mean over pixels).",
        "x0_error_help": "= (1 − ᾱ_t)/ᾱ_t × the noise error: the same information, on the image scale.",
        "curve_label": "reconstruction error mean (x̂₀ − x₀)²",
        "curve": "x0",
        "denoise_caption": "The UNet sees only x_t and t, guesses the noise ε_θ, and subtracting it gives a one-step "
        "guess of the clean image x̂₀. Small t: easy, x̂₀ ≈ x₀. Large t: the model must invent the image, so x̂₀ "
        "drifts to a typical training image. The loss attack scores an image by exactly this noise error "
        "(lower = member).",
    },
    "ve-sde": {
        "forward": r"x_t = x_0 + \sigma(t)\,z,\qquad z \sim \mathcal{N}(0, I),\quad "
        r"\sigma(t) = \sigma_{\min}\,(\sigma_{\max}/\sigma_{\min})^{t}",
        "denoise": r"\hat x_0 = x_t + \sigma^2\, s_\theta(x_t, \sigma),\qquad \hat z = -\sigma\, s_\theta(x_t, \sigma)",
        "noise_caption": "z: the noise (fixed seed)",
        "pred_caption": "ẑ = −σ s_θ(x_t, σ): predicted noise",
        "noise_error": "DSM error mean (σ s_θ + z)²",
        "noise_error_help": "Denoising score matching at σ(t): the training loss of a VE-SDE model on this image "
        "(mean over pixels), and what the loss attack measures.",
        "x0_error_help": "= 4σ² × the DSM error (images in [-1, 1]): the same information, on the image scale.",
        "curve_label": "DSM error mean (σ s_θ + z)²",
        "curve": "eps",
        "denoise_caption": "The UNet sees x_t and the noise level σ and returns the score s_θ, the direction in which "
        "the data are denser; −σ s_θ is its guess of the noise, and one step along the score (Tweedie's formula) "
        "gives x̂₀. Small σ: easy. Large σ: the model must invent the image. The loss attack on a VE-SDE model "
        "scores an image by this denoising-score-matching error (lower = member), as Hu & Pang do.",
    },
}


def process_text(kind: str) -> dict[str, str]:
    """The Learn page's formulas and labels for a target of ``kind`` ("ddpm" or "ve-sde")."""
    if kind not in PROCESS_TEXT:
        raise ValueError(f"no Learn-page text for a target of kind {kind!r}; known: {', '.join(PROCESS_TEXT)}")
    return PROCESS_TEXT[kind]


#: line styles of the three prompts (the image's own caption is the solid, strongest line).
CAPTION_CURVE_STYLE = {
    "own caption": dict(color="#5D3A9B", dash="solid", width=3),
    "empty prompt": dict(color="#666666", dash="dash", width=2),
    "wrong caption": dict(color="#D55E00", dash="dot", width=2),
}


def error_bars_figure(member_error: float, nonmember_error: float, *, title: str) -> go.Figure:
    """Two bars (member, non-member) for one error value each (mean squared error, no unit)."""
    fig = go.Figure(
        go.Bar(
            x=[MEMBER_LABEL, NONMEMBER_LABEL],
            y=[member_error, nonmember_error],
            marker_color=[MEMBER_COLOR, NONMEMBER_COLOR],
            text=format_numbers([member_error, nonmember_error]),
            textposition="outside",
            hovertemplate="%{x}: %{y:.4g}<extra></extra>",
        )
    )
    top = max(member_error, nonmember_error, 1e-12)
    fig.update_layout(
        title=title,
        height=280,
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=False,
        yaxis=dict(title="mean squared error", range=[0, top * 1.25]),
    )
    return fig


def abar_figure(schedule: NoiseSchedule, t: int) -> go.Figure:
    """sqrt(abar_t) (signal weight) and sqrt(1 - abar_t) (noise weight) over all t, a marker at t."""
    abar = schedule.alphas_cumprod.numpy()
    ts = np.arange(abar.size)
    step = max(1, abar.size // 250)  # ~250 points are plenty for a smooth line
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=ts[::step], y=np.sqrt(abar[::step]), name="signal weight sqrt(abar_t)", line=dict(color="#333333"))
    )
    fig.add_trace(
        go.Scatter(
            x=ts[::step],
            y=np.sqrt(1 - abar[::step]),
            name="noise weight sqrt(1 - abar_t)",
            line=dict(color="#999999", dash="dash"),
        )
    )
    fig.add_vline(x=int(t), line=dict(color="gray", dash="dot"))
    fig.update_layout(
        height=240,
        margin=dict(l=10, r=10, t=10, b=10),
        legend=dict(orientation="h", y=1.15),
        xaxis=dict(title="timestep t"),
        yaxis=dict(title="weight", range=[0, 1.02]),
    )
    return fig


def sigma_figure(steps: np.ndarray, sigma: np.ndarray, t: int) -> go.Figure:
    """A VE-SDE's noise level sigma(t_i) (data in [0, 1]) against its integer steps i (log y), a marker at ``t``.

    ``steps`` and ``sigma`` are plain arrays (``mia_core.lab.teaching.ve_sigma_table``)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    fig = go.Figure(go.Scatter(x=np.asarray(steps), y=sigma, name="noise level sigma(t)", line=dict(color="#333333")))
    fig.add_vline(x=int(t), line=dict(color="gray", dash="dot"))
    fig.update_layout(
        height=240,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis=dict(title="step i (t_i from eps to 1)"),
        yaxis=dict(title="sigma (data in [0, 1])", **log_axis(sigma)),
    )
    return fig


def forward_animation_figure(frames, timesteps, abars, *, frame_ms: int = 120) -> go.Figure:
    """The forward process as a client-side animation: a play button and a t slider over precomputed frames.

    Parameters
    ----------
    frames : sequence of uint8 (H, W) or (H, W, C) images, one per timestep, already enlarged for display.
    timesteps : sequence of int, the t of each frame (0-based).
    abars : sequence of float, abar_t of each frame (shown in the slider label).
    frame_ms : milliseconds per frame when playing.

    Every frame is a PNG data URI in a ``go.Image`` trace and a ``go.Frame``; the play / pause buttons
    and the slider step them in the browser (plotly.animate), with no server round trip per frame.
    """
    frames, timesteps, abars = list(frames), [int(t) for t in timesteps], [float(a) for a in abars]
    if not frames or not (len(frames) == len(timesteps) == len(abars)):
        raise ValueError(
            f"forward_animation_figure needs as many frames, timesteps and abars (>= 1): got "
            f"{len(frames)}, {len(timesteps)}, {len(abars)}"
        )
    h, w = np.asarray(frames[0]).shape[:2]
    uris = [png_data_uri(np.asarray(f)) for f in frames]
    names = [f"t={t}" for t in timesteps]
    labels = format_numbers(abars, 4)

    def title(k: int) -> str:
        return f"x_t at t = {timesteps[k]} (abar_t = {labels[k]})"

    play = {"frame": {"duration": int(frame_ms), "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    fig = go.Figure(
        data=[go.Image(source=uris[0], hoverinfo="skip")],
        frames=[
            go.Frame(data=[go.Image(source=u)], name=n, layout={"title": {"text": title(k)}})
            for k, (u, n) in enumerate(zip(uris, names))
        ],
    )
    fig.update_layout(
        title={"text": title(0), "x": 0.5, "xanchor": "center", "font": {"size": 14}},
        width=max(360, w + 40),
        height=h + 200,
        margin=dict(l=20, r=20, t=40, b=20),
        xaxis=dict(visible=False, range=[0, w], constrain="domain"),
        yaxis=dict(visible=False, range=[h, 0], scaleanchor="x"),
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.0,
                "y": -0.02,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 10},
                "buttons": [
                    {"label": "▶ Play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ Pause", "method": "animate", "args": [[None], pause]},
                ],
            }
        ],
        sliders=[
            {
                "active": 0,
                "x": 0.0,
                "y": -0.12,
                "len": 1.0,
                "currentvalue": {"prefix": "", "visible": False},
                "steps": [
                    {"label": str(t), "method": "animate", "args": [[n], pause]} for t, n in zip(timesteps, names)
                ],
            }
        ],
        meta={"role": "forward_animation", "timesteps": timesteps},
    )
    return fig


def attack_summary() -> list[dict[str, Any]]:
    """One row per registered attack: short name, what it measures, access, UNet calls per image, score, paper.

    Names, explanations and access levels are those of :mod:`mia_core.views.attack_info`; the cost is
    the attack's own ``unet_calls`` with its default parameters (nothing is run).
    """
    from mia_core.attacks import REGISTRY, access_label

    rows = []
    for info in all_attack_info():
        cls = REGISTRY[info.name]
        rows.append(
            {
                "attack": info.short,
                "what it measures": info.explanation,
                "access": info.access_text + (f"; needs {', '.join(info.needs)}" if info.needs else ""),
                "threat model": access_label(info.name),
                "UNet calls / image": int(cls().unet_calls(trace=False)),
                "score (higher = member)": cls.score_label,
                "paper": info.paper,
                "name": info.name,
            }
        )
    return rows


def train_recipe(log: Mapping[str, Any]) -> dict[str, Any]:
    """The denoiser's training recipe of a log (steps, batch_size, lr, schedule, augment, ...): ``config``, or
    ``config["unet"]`` for a text-to-image log, whose config also holds the VAE's and text encoder's."""
    cfg = log.get("config", {}) or {}
    if isinstance(cfg.get("unet"), Mapping):
        return dict(cfg["unet"])
    return dict(cfg)


def train_log_summary(log: Mapping[str, Any]) -> dict[str, Any]:
    """The facts worth showing from a training log: command, steps, members, seconds, device, weights.
    A text-to-image log (``kind`` "t2i") keeps the UNet's recipe under ``config["unet"]`` (:func:`train_recipe`)."""
    cfg = train_recipe(log)
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
    fig = go.Figure(
        go.Scatter(
            x=arr[:, 0],
            y=arr[:, 1],
            mode="lines",
            line=dict(color="#333333"),
            name="training loss",
            hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=260,
        margin=dict(l=10, r=10, t=10, b=10),
        xaxis_title="training step",
        yaxis_title=(
            "loss: mean (sigma s_theta + z)^2 (DSM)" if log.get("kind") == "ve" else "loss: mean (eps - eps_theta)^2"
        ),
    )
    positive = arr[:, 1][np.isfinite(arr[:, 1]) & (arr[:, 1] > 0)]
    if positive.size:
        fig.update_yaxes(**log_axis(positive))
    return fig


def caption_curves_figure(
    timesteps, curves: Mapping[str, Any], *, prompts: Mapping[str, str] | None = None, title: str = ""
) -> go.Figure:
    """One image's error curves on a text-to-image target, one line per prompt (``lab.teaching.caption_error_curves``:
    "own caption", "empty prompt", "wrong caption"). ``timesteps`` (K,); ``curves[name]``: (K,) mean squared
    errors of the latent noise prediction (no unit), drawn on a log axis; ``prompts[name]``: the prompt text for the
    legend."""
    fig = go.Figure()
    values = []
    for name, errors in curves.items():
        y = np.asarray(errors, dtype=float).reshape(-1)
        values.append(y)
        said = (prompts or {}).get(name)
        label = f'{name}: "{said}"' if said is not None else name
        fig.add_trace(
            go.Scatter(
                x=list(np.asarray(timesteps).tolist()),
                y=y,
                mode="lines+markers",
                name=label,
                line=CAPTION_CURVE_STYLE.get(name, {}),
                hovertemplate=f"{label}<br>t=%{{x}}: %{{y:.5f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title or "The same image, three prompts: its own caption helps a training image most",
        height=340,
        margin=dict(l=10, r=10, t=50, b=10),
        xaxis=dict(title="timestep t"),
        legend=dict(orientation="h", y=-0.25),
    )
    fig.update_yaxes(title="noise-prediction error", **log_axis(np.concatenate(values) if values else None))
    return fig
