"""HTML export: one figure, or a whole slide deck, as a self-contained page that works offline.

plotly.js is embedded (once per page), never fetched from a CDN. Slide bodies are written in a
small Markdown subset (paragraphs, ``- `` bullets, ``**bold**``, ``*italic*``), converted here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

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


#: The slide canvas: every slide is laid out at this size and scaled to the window, so it fits a
#: 1280x720 or 1920x1080 screen (or an iframe of any size) the same way.
SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720

_DECK_CSS = f"""
html,body{{margin:0;height:100%;overflow:hidden;background:#fff;color:#222;
  font-family:'Source Sans Pro',Helvetica,Arial,sans-serif}}
#stage{{position:absolute;left:0;top:0;width:{SLIDE_WIDTH}px;height:{SLIDE_HEIGHT}px;transform-origin:0 0}}
section.slide{{position:absolute;inset:0;box-sizing:border-box;padding:22px 40px 14px;display:flex;
  flex-direction:column;overflow:hidden;background:#fff;z-index:0;will-change:transform;pointer-events:none}}
section.slide.current{{z-index:1;pointer-events:auto}}
section.slide h1{{font-size:36px;line-height:1.15;margin:0 90px 6px 0}}
section.slide .num{{position:absolute;right:40px;top:28px;font-size:22px;color:#666}}
section.slide p.takeaway{{font-size:22px;line-height:1.3;margin:0 0 6px}}
section.slide .fig{{flex:1 1 auto;min-height:0;position:relative}}
section.slide .fig > div{{height:100%;width:100%}}
section.slide .body li,section.slide .body p{{font-size:22px;line-height:1.38;margin:0 0 6px}}
section.slide .caption p,section.slide .caption li{{font-size:15px;line-height:1.3;margin:2px 0;color:#555}}
"""

# Every slide is drawn once, on a compositor layer of its own (will-change), stacked under the current
# one: a step only changes which layer is on top, so no chart is laid out or painted on a key press.
# Stepping on the client: no server round trip per key. Keys: right / PageDown / space / down = next,
# left / PageUp / up = back, Home / End. The keys of the page around an iframe are heard too (same origin).
# ``document.body.dataset.stepMs`` is the last key-to-paint time (key event to the second animation frame);
# ``steps`` counts the steps timed (two steps can take the same time to the 0.1 ms, so a watcher counts).
_DECK_JS = """
(function(){
  const slides=[...document.querySelectorAll('section.slide')], stage=document.getElementById('stage');
  let cur=-1;
  function fit(){const s=Math.min(innerWidth/%(w)d, innerHeight/%(h)d);
    stage.style.transform='scale('+s+')'; stage.style.left=Math.max(0,(innerWidth-%(w)d*s)/2)+'px';}
  function show(i,t0,hear){i=Math.max(0,Math.min(slides.length-1,i)); if(i===cur) return;
    if(cur>=0) slides[cur].classList.remove('current'); slides[i].classList.add('current'); cur=i;
    document.body.dataset.slide=String(i+1);
    try{history.replaceState(null,'','#'+(i+1));}catch(e){}
    try{ if(window.parent!==window){ const u=new URL(window.parent.location.href);
      u.searchParams.set('slide',String(i+1)); window.parent.history.replaceState(window.parent.history.state,'',u);} }
    catch(e){}
    if(t0!==undefined) requestAnimationFrame(()=>requestAnimationFrame(()=>{
      const d=document.body.dataset; d.stepMs=(performance.now()-t0).toFixed(1); d.steps=String((+d.steps||0)+1);}));}
  function onKey(e){const k=e.key; let to=null;
    if(['ArrowRight','PageDown',' ','ArrowDown'].includes(k)) to=cur+1;
    else if(['ArrowLeft','PageUp','ArrowUp'].includes(k)) to=cur-1;
    else if(k==='Home') to=0; else if(k==='End') to=slides.length-1;
    if(to===null) return; e.preventDefault();
    show(to, e.view===window ? e.timeStamp : performance.now());}
  document.addEventListener('keydown',onKey);
  try{ if(window.parent!==window) window.parent.document.addEventListener('keydown',onKey); }catch(e){}
  addEventListener('resize',fit); fit();
  const h=parseInt((location.hash||'').slice(1)); show(Number.isFinite(h)?h-1:%(start)d-1);
  window.focus();
})();
"""


def deck_html(slides: Sequence[Any], *, start: int = 1) -> str:
    """Slides (``title``, ``takeaway``, ``body``, ``figure()``) as one self-contained HTML deck.

    Every slide is a 1280x720 canvas scaled to the window; one shows at a time, stepped with the
    arrow keys (and PageDown / PageUp, as clickers send) entirely in the browser, so the file works
    offline and the Presenter page shows the same deck (in an iframe). plotly.js is embedded once.
    ``start`` is the 1-based slide shown first (``#N`` in the file's URL wins).
    """
    import plotly.graph_objects as go

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>Membership inference — slides</title>",
        f"<style>{_DECK_CSS}</style></head><body><div id='stage'>",
    ]
    first = True
    n = len(slides)
    for i, slide in enumerate(slides, start=1):
        parts.append(
            f"<section class='slide' data-slide='{i}'><h1>{escape(slide.title)}</h1>"
            f"<div class='num'>{i} / {n}</div><p class='takeaway'>{escape(slide.takeaway)}</p>"
        )
        fig = slide.figure()
        if fig is not None:
            fig = go.Figure(fig)
            fig.update_layout(height=None, width=None, autosize=True)
            parts.append(
                "<div class='fig'>"
                + fig.to_html(
                    full_html=False,
                    include_plotlyjs=True if first else False,
                    default_width="100%",
                    default_height="100%",
                    config={"responsive": True, "displaylogo": False},
                )
                + "</div>"
            )
            first = False
            if slide.body:
                parts.append(f"<div class='caption'>{markdown_to_html(slide.body)}</div>")
        elif slide.body:
            parts.append(f"<div class='body'>{markdown_to_html(slide.body)}</div>")
        parts.append("</section>")
    start = min(max(1, int(start)), max(n, 1))
    parts.append(
        "</div><script>" + _DECK_JS % {"w": SLIDE_WIDTH, "h": SLIDE_HEIGHT, "start": start} + "</script></body></html>"
    )
    return "".join(parts)
