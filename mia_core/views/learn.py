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
    "forward_animation_figure",
    "attack_summary",
    "train_log_summary",
    "loss_curve_figure",
]


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
