"""HTML export: one figure, or a whole slide deck, as a self-contained page that works offline.

plotly.js is embedded (once per page), never fetched from a CDN. Slide bodies are written in a
small Markdown subset (paragraphs, ``- `` bullets, ``**bold**``, ``*italic*``), converted here.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

__all__ = ["figure_html", "deck_html", "markdown_to_html", "escape"]


def figure_html(fig: Any) -> str:
    """A standalone HTML file of the figure that works offline (plotly.js embedded)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as HTML entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown_to_html(md: str) -> str:
    """Enough Markdown for the slide bodies: paragraphs, '- ' bullets, **bold**, *italic* (text escaped)."""

    def inline(s: str) -> str:
        s = escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"\*(.+?)\*", r"<i>\1</i>", s)

    out, in_list = [], False
    for line in md.splitlines():
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)


def deck_html(slides: Sequence[Any]) -> str:
    """Slides (``title``, ``takeaway``, ``body``, ``figure()``) as one HTML page, plotly.js embedded once."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Membership inference — slides</title>",
             "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1300px;margin:auto;padding:24px}"
             "section{min-height:90vh;border-bottom:1px solid #ddd;padding:24px 0}h1{font-size:40px}"
             "p.takeaway{font-size:26px}li{font-size:22px}</style></head><body>"]
    first = True
    for i, slide in enumerate(slides, start=1):
        parts.append(f"<section><h1>{i}. {escape(slide.title)}</h1><p class='takeaway'>{escape(slide.takeaway)}</p>")
        fig = slide.figure()
        if fig is not None:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False))
            first = False
        if slide.body:
            parts.append(markdown_to_html(slide.body))
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)
