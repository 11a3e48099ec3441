"""Figures of the Target page: how close the target's samples come to its training images.

Built from :class:`mia_core.sampling.Memorisation` (computed by the engine); nothing here runs a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR

if TYPE_CHECKING:  # annotations only: importing the sampler would pull in torch
    from mia_core.sampling import Memorisation

__all__ = ["card_rows", "memorisation_figure"]


def card_rows(card: dict[str, Any]) -> list[tuple[str, str]]:
    """The model card (``Target.card()``, plain values) as (property, value) rows of text.

    A DDPM shows abar at a few t; a score-based VE-SDE target (its card has ``sigma_at_t``) shows
    sigma at a few steps and says what kind of model it is; keys a card lacks are left out.
    """
    rows = [
        ("source", card["source"]),
        ("fingerprint", card["fingerprint"]),
        ("parameters", f"{card['parameters']:,}"),
        ("resolution", f"{card['resolution']}×{card['resolution']}"),
        ("channels", str(card["channels"])),
        ("block_out_channels", ", ".join(map(str, card["block_out_channels"]))),
        ("schedule", card["schedule"]),
        ("device", card["device"]),
        ("precision", card["precision"]),
        ("notes", "; ".join(card["notes"]) or "none"),
    ]
    if "kind" in card:
        rows.append(("kind", card["kind"]))
    if "parameterisation" in card:
        rows.append(("parameterisation", card["parameterisation"]))
    if "abar_at_t" in card:
        rows.append(
            (
                "abar at t",
                ", ".join(f"t={t}: {v:.4g}" for t, v in card["abar_at_t"].items())
                + (" (zero terminal SNR)" if card.get("zero_terminal_snr") else ""),
            )
        )
    if "sigma_at_t" in card:
        rows.append(("sigma at step", ", ".join(f"step {t}: {v:.4g}" for t, v in card["sigma_at_t"].items())))
    if "space" in card:
        rows.append(("space", str(card["space"])))
    if "converted" in card:
        rows.append(("converted", "; ".join(card["converted"])))
    if "variance_type" in card:
        rows.append(("variance_type", str(card["variance_type"])))
    if "scheduler_config" in card:
        rows.append(("scheduler config", str(card["scheduler_config"])))
    for name, what in (card.get("components") or {}).items():  # a text-to-image pipeline's parts
        rows.append((f"component: {name}", str(what)))
    if "conditioning" in card:
        rows.append(("conditioning", str(card["conditioning"])))
    not_applicable = card.get("not_applicable") or {}
    from mia_core.views.attack_info import by_reason

    grouped = by_reason(not_applicable)  # attacks that share a reason are named together, the reason once
    rows.append(("not applicable", "; ".join(f"{', '.join(n)}: {r}" for n, r in grouped) or "every attack applies"))
    return rows


def memorisation_figure(mem: Memorisation) -> go.Figure:
    """Per sample: distance to its nearest member and nearest non-member; dashed line: held-out median."""
    x = np.arange(len(mem.member_distance))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=mem.member_distance,
            mode="markers",
            name="nearest member",
            marker=dict(color=MEMBER_COLOR, size=11, symbol="circle"),
            customdata=np.asarray(mem.member_id),
            hovertemplate="sample %{x}<br>member %{customdata}<br>L2 %{y:.1f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=mem.nonmember_distance,
            mode="markers",
            name="nearest non-member",
            marker=dict(color=NONMEMBER_COLOR, size=11, symbol="diamond"),
            customdata=np.asarray(mem.nonmember_id),
            hovertemplate="sample %{x}<br>non-member %{customdata}<br>L2 %{y:.1f}<extra></extra>",
        )
    )
    fig.add_hline(
        y=mem.heldout_median,
        line=dict(color="gray", dash="dash"),
        annotation_text="held-out images: median distance to nearest member",
        annotation_position="top left",
    )
    fig.update_layout(
        height=300,
        margin=dict(l=10, r=10, t=30, b=10),
        legend=dict(orientation="h", y=1.15),
        xaxis=dict(title="sample", tickmode="linear", dtick=1),
        yaxis=dict(title="L2 distance (pixel units)", rangemode="tozero"),
    )
    return fig
