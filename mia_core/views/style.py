"""Colours and labels shared by every chart, so "member" looks the same on every page."""

from __future__ import annotations

import math

import numpy as np

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
    # text-to-image
    "clid": "#5D3A9B",
}
FALLBACK_COLORS = ("#999999", "#F0E442", "#7F3C8D", "#11A579")


def attack_color(name: str) -> str:
    if name in ATTACK_COLORS:
        return ATTACK_COLORS[name]
    return FALLBACK_COLORS[sum(map(ord, name)) % len(FALLBACK_COLORS)]


def rgba(hex_color: str, alpha: float) -> str:
    """``"#E69F00", 0.2`` -> ``"rgba(230,159,0,0.2)"`` (translucent bands and fills)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
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
    fig.update_xaxes(
        title_font=dict(size=TALK_TITLE_FONT_SIZE),
        tickfont=dict(size=TALK_FONT_SIZE),
        linewidth=2,
        linecolor="#444",
        gridcolor="#e5e5e5",
    )
    fig.update_yaxes(
        title_font=dict(size=TALK_TITLE_FONT_SIZE),
        tickfont=dict(size=TALK_FONT_SIZE),
        linewidth=2,
        linecolor="#444",
        gridcolor="#e5e5e5",
    )
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


# ---------------------------------------------------------------------------------------------- log axes

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_LOG_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))


def log_tick_label(value: float) -> str:
    """A log-axis tick as its value: ``0.02`` -> ``"0.02"``, ``3e-05`` -> ``"3×10⁻⁵"``, ``1e6`` -> ``"10⁶"``."""
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"a log-axis tick must be a positive finite number, got {value!r}")
    if 1e-3 <= value < 1e5:
        return f"{value:.6g}"
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10.0**exponent, 6)
    power = f"10{str(exponent).translate(_SUPERSCRIPT)}"
    return power if mantissa == 1 else f"{mantissa:g}×{power}"


def log_ticks(lo: float, hi: float, *, max_ticks: int = 8) -> tuple[list[float], list[str]]:
    """Tick values and labels of a log axis over [lo, hi] (both > 0): every label states its value.

    The densest of: every digit, 1-2-5 steps, whole decades, that gives at most ``max_ticks`` ticks
    (many decades are thinned to every k-th), so a range shorter than a decade still gets readable ticks
    (plotly's default then labels the minor ticks with their leading digit only: "5 4 3 2 0.1 9 8").
    """
    lo, hi = float(lo), float(hi)
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"a log axis needs a positive finite range, got [{lo!r}, {hi!r}]")
    lo, hi = min(lo, hi), max(lo, hi)
    if hi / lo < 1.5:  # (nearly) one value: a factor of two around it
        lo, hi = lo / 2, hi * 2
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))

    def within(mantissas: tuple[int, ...]) -> list[float]:
        ticks = (float(f"{m}e{e}") for e in range(e0, e1 + 1) for m in mantissas)  # exact: 9e-3, not 9 * 10**-3
        return [v for v in ticks if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]

    # the densest of every digit / 1-2-5 / decades that fits in max_ticks (and shows at least two)
    for mantissas in reversed(_LOG_MANTISSAS):
        values = within(mantissas)
        if 2 <= len(values) <= max_ticks:
            break
    else:
        values = within((1,))
        if len(values) > max_ticks:  # many decades: every k-th decade
            values = values[:: math.ceil(len(values) / max_ticks)]
        elif len(values) < 2:  # not even two digits inside: the two around the range
            values = within(_LOG_MANTISSAS[-1]) or [10.0**e0, 10.0**e1]
    return values, [log_tick_label(v) for v in values]


def log_axis(values=None, *, lo: float | None = None, hi: float | None = None, fmt=None, max_ticks: int = 8) -> dict:
    """The one way a log axis is drawn: ``fig.update_yaxes(**log_axis(y))`` (or ``update_xaxes``).

    ``values`` (any shape; non-positive and non-finite entries are ignored) give the range unless
    ``lo`` / ``hi`` are given. ``fmt`` (value -> text, e.g. a percent) replaces the tick labels.
    Returns plotly axis properties: ``type="log"`` with explicit ``tickvals`` / ``ticktext``.
    """
    if lo is None or hi is None:
        arr = np.asarray(values if values is not None else [], dtype=float).reshape(-1)
        arr = arr[np.isfinite(arr) & (arr > 0)]
        if arr.size == 0:
            raise ValueError("log_axis needs at least one positive finite value (or lo and hi)")
        lo = float(arr.min()) if lo is None else lo
        hi = float(arr.max()) if hi is None else hi
    tickvals, ticktext = log_ticks(lo, hi, max_ticks=max_ticks)
    if fmt is not None:
        ticktext = [fmt(v) for v in tickvals]
    return dict(type="log", tickvals=tickvals, ticktext=ticktext)


# ---------------------------------------------------------------------------------------------- numbers in text


def format_number(value: float, digits: int = 3) -> str:
    """A number as text with ``digits`` significant digits: ``0.000123456 -> "0.000123"``, ``1234.5 -> "1.23e+03"``.

    Plain decimals between 1e-4 and 1e4 (no trailing zeros dropped below ``digits``: ``0.5 -> "0.500"``),
    scientific notation outside; ``nan`` / ``inf`` as Python writes them. The one way a page quotes a
    measured value in a sentence, so "0.0001" never stands beside "1.53x lower".
    """
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    v = float(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if 1e-4 <= abs(v) < 1e4:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
        text = f"{v:.{decimals}f}"
        # rounding can carry into one more digit (0.99996 -> "1.0000"): drop the extra decimal
        if decimals and len(text.lstrip("-").replace(".", "").lstrip("0")) > digits:
            text = f"{v:.{decimals - 1}f}"
        return text
    return f"{v:.{digits - 1}e}"


def format_numbers(values, digits: int = 3, max_digits: int = 6) -> list[str]:
    """Several numbers quoted side by side, with enough significant digits that different values read differently.

    Starts at ``digits`` and adds digits (up to ``max_digits``) while two different values would print
    the same; returns one string per value (:func:`format_number`).
    """
    vals = [float(v) for v in values]
    for d in range(digits, max(digits, max_digits) + 1):
        texts = [format_number(v, d) for v in vals]
        clash = any(texts[i] == texts[j] and vals[i] != vals[j] for i in range(len(vals)) for j in range(i))
        if not clash:
            return texts
    return texts
