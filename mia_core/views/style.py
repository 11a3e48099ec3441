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
