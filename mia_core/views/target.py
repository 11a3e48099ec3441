"""Figures of the Target page: how close the target's samples come to its training images.

Built from :class:`mia_core.sampling.Memorisation` (computed by the engine); nothing here runs a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR

if TYPE_CHECKING:  # annotations only: importing the sampler would pull in torch
    from mia_core.sampling import Memorisation

__all__ = ["memorisation_figure"]


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
