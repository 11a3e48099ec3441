"""Colours and labels shared by every chart, so "member" looks the same on every page."""

from __future__ import annotations

# Okabe-Ito colour-blind-safe pair: members orange, non-members blue.
MEMBER_COLOR = "#E69F00"
NONMEMBER_COLOR = "#0072B2"
MEMBER_LABEL = "member"
NONMEMBER_LABEL = "non-member"

#: One colour per attack, the same in every chart.
ATTACK_COLORS = {
    "loss": "#009E73",
    "secmi": "#D55E00",
    "pia": "#CC79A7",
    "pian": "#56B4E9",
    "sima": "#000000",
    # the attacks added later: distinct from the five above and from the member/non-member pair
    "secmi_nn": "#8C2D04",
    "qr": "#7F3C8D",
    "likelihood": "#11A579",
    "elbo": "#666666",
    # black-box and white-box attacks
    "rediffuse": "#3969AC",
    "gan_leaks": "#B8860B",
    "mc_set": "#80BA5A",
    "gsa1": "#E73F74",
    "gsa2": "#008695",
}
FALLBACK_COLORS = ("#999999", "#F0E442", "#7F3C8D", "#11A579")


def attack_color(name: str) -> str:
    if name in ATTACK_COLORS:
        return ATTACK_COLORS[name]
    return FALLBACK_COLORS[sum(map(ord, name)) % len(FALLBACK_COLORS)]


def rgba(hex_color: str, alpha: float) -> str:
    """``"#E69F00", 0.2`` -> ``"rgba(230,159,0,0.2)"`` (translucent bands and fills)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# ---------------------------------------------------------------------------------------------- talk sizes

#: Presenter slides are read from the back of a room: fonts of 20 px and up, lines of at least 4 px.
TALK_FONT_SIZE = 20
TALK_TITLE_FONT_SIZE = 24
TALK_LINE_WIDTH = 4
TALK_HEIGHT = 520
TALK_FONT_FAMILY = "Source Sans Pro, Helvetica, Arial, sans-serif"


def talk_style(fig, *, height: int = TALK_HEIGHT, legend: dict | None = None):
    """Restyle a page figure for a projector, in place, and return it: the same data, bigger.

    Fonts (text, axis titles, ticks, legend, hover, annotations) become at least
    ``TALK_FONT_SIZE`` (axis titles ``TALK_TITLE_FONT_SIZE``); every drawn line of a trace is at
    least ``TALK_LINE_WIDTH`` px wide (invisible band edges, width 0, stay invisible) and guide lines
    (layout shapes) at least 3 px; markers grow by half. ``legend`` updates the legend's position.
    No trace is added, removed or given other values, so a slide shows exactly what the page shows.
    """
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=dict(size=TALK_FONT_SIZE, family=TALK_FONT_FAMILY, color="#222"),
        margin=dict(l=90, r=30, t=40, b=80),
        legend=dict(font=dict(size=TALK_FONT_SIZE), bgcolor="rgba(255,255,255,0.85)", **(legend or {})),
        hoverlabel=dict(font_size=TALK_FONT_SIZE),
    )
    fig.update_xaxes(title_font=dict(size=TALK_TITLE_FONT_SIZE), tickfont=dict(size=TALK_FONT_SIZE), linewidth=2,
                     linecolor="#444", gridcolor="#e5e5e5")
    fig.update_yaxes(title_font=dict(size=TALK_TITLE_FONT_SIZE), tickfont=dict(size=TALK_FONT_SIZE), linewidth=2,
                     linecolor="#444", gridcolor="#e5e5e5")
    for trace in fig.data:
        if trace.type != "scatter":
            continue
        mode = trace.mode or "lines"
        if "lines" in mode and trace.line.width != 0:
            trace.line.width = max(float(trace.line.width or 0), TALK_LINE_WIDTH)
        if "markers" in mode and trace.marker.size is not None and not isinstance(trace.marker.size, (tuple, list)):
            trace.marker.size = 1.5 * float(trace.marker.size)
    for shape in fig.layout.shapes:
        if shape.line is not None and shape.line.width:
            shape.line.width = max(float(shape.line.width), 3.0)
    for note in fig.layout.annotations:
        note.font.size = max(float(note.font.size or 0), TALK_FONT_SIZE)
    return fig
