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
from mia_core.views.style import MEMBER_COLOR, MEMBER_LABEL, NONMEMBER_COLOR, NONMEMBER_LABEL, log_axis

__all__ = [
    "error_bars_figure",
    "abar_figure",
    "attack_summary",
    "train_log_summary",
    "loss_curve_figure",
    "caption_curves_figure",
]

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
            text=[f"{member_error:.4f}", f"{nonmember_error:.4f}"],
            textposition="outside",
            hovertemplate="%{x}: %{y:.5f}<extra></extra>",
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
        yaxis_title="loss: mean (eps - eps_theta)^2",
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
        label = f"{name}: \"{said}\"" if said is not None else name
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
