"""Take the README screenshots: start the app, visit every page, save 1400x900 PNGs.

Usage::

    python scripts/screenshots.py                      # -> docs/screenshots/<page>.png
    python scripts/screenshots.py --out /tmp/shots     # elsewhere
    python scripts/screenshots.py --only present,attack

Needs Chromium (``apt-get install -y chromium``; or set ``MIA_CHROMIUM``) and the ``playwright``
Python package. The app runs with a temporary result store, so the pages that show results read
the precomputed demo results in ``assets/demo_store`` and nothing is written into the repository.
Pages that show a Streamlit exception are listed at the end (exit status 1).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))  # the app server and Chromium set-up the e2e tests use
from e2e_helpers import CHROMIUM, CHROMIUM_ARGS, AppDidNotStart, start_app, stop_app  # noqa: E402
from e2e_helpers import wait_for_app as wait_for_script  # noqa: E402

VIEWPORT = {"width": 1400, "height": 900}
SHOTS = (
    "home",
    "learn",
    "target",
    "data",
    "train",
    "attack",
    "compare",
    "compare_histogram",
    "sample",
    "my-image",
    "factors",
    "factors_n_members",
    "factors_augment",
    "factors_dp_epsilon",
    "factors_dp225",
    "present",
    "present_defence",
)


def wait_for_app(page, timeout: float = 120_000) -> None:
    wait_for_script(page, timeout)
    try:
        page.wait_for_function(
            "() => document.querySelectorAll('[data-testid=\"stSkeleton\"]').length === 0", timeout=timeout
        )
    except Exception:  # a skeleton that stays is visible in the screenshot anyway
        pass
    page.wait_for_timeout(1500)  # plotly draws after the script has finished


def member_example() -> tuple[str, bytes]:
    """The first member of the default split and its 8x8 image as PNG bytes (exactly what was trained on)."""
    from PIL import Image

    from mia_core.data import load_digits

    split = json.loads((REPO / "assets" / "default_target" / "split.json").read_text())
    member_id = split["member_ids"][0]
    digits = load_digits()
    img = digits.images[list(digits.ids).index(member_id)][..., 0]
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return member_id, buf.getvalue()


def exception_text(page) -> str | None:
    boxes = page.locator('[data-testid="stException"]')
    return boxes.first.inner_text()[:300] if boxes.count() else None


def click_tab(page, pattern: str) -> bool:
    tab = page.get_by_role("tab", name=re.compile(pattern, re.I))
    if tab.count() == 0:
        return False
    tab.first.click()
    page.wait_for_timeout(1200)
    return True


def take(base: str, out: Path, only: set[str] | None) -> dict[str, str]:
    from playwright.sync_api import sync_playwright

    problems: dict[str, str] = {}
    member_id, member_png = member_example()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(120_000)

        def chart_in_view(page) -> None:
            """Scroll the first chart to the top of the window (both panels of a study's figure)."""
            chart = page.get_by_test_id("stPlotlyChart").first
            chart.wait_for(state="visible")
            chart.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)

        def shot(name: str, path: str, prepare=None) -> None:
            if only and name not in only:
                return
            page.goto(base + path)
            wait_for_app(page)
            note = prepare(page) if prepare else None
            file = out / f"{name}.png"
            page.screenshot(path=str(file))
            err = exception_text(page)
            if err:
                problems[name] = f"exception on the page: {err}"
            elif note:
                problems[name] = note
            if page.get_by_text("This page is being built").count():
                problems[name] = "still a stub (This page is being built)"
            print(f"{file}  ({path})" + (f"  -- {problems[name]}" if name in problems else ""))

        def upload_member(pg) -> str | None:
            target = pg.locator('[data-testid="stFileUploaderDropzoneInput"]')
            if target.count() == 0:
                return "no file uploader on the page"
            target.first.set_input_files(
                files=[{"name": f"{member_id}.png", "mimeType": "image/png", "buffer": member_png}]
            )
            wait_for_app(pg)
            return None

        def roc_tab(pg) -> str | None:
            return None if click_tab(pg, r"ROC") else "no ROC tab found"

        def histogram_tab(pg) -> str | None:
            return None if click_tab(pg, r"histogram") else "no histogram tab found"

        page.goto(base + "/")
        wait_for_app(page)
        page.get_by_text("Model ready").first.wait_for(state="visible", timeout=120_000)
        shot("home", "/")
        shot("learn", "/learn")
        shot("target", "/target")
        shot("data", "/data")
        shot("train", "/train")
        shot("attack", "/attack_lab")
        shot("compare", "/compare", roc_tab)
        shot("compare_histogram", "/compare", histogram_tab)
        shot("sample", f"/sample?id={member_id}")
        shot("my-image", "/was_my_image_used", upload_member)
        shot("factors", "/factors")
        for factor in ("n_members", "augment", "dp_epsilon"):
            shot(f"factors_{factor}", f"/factors?study=digits_{factor}", chart_in_view)
        shot("factors_dp225", "/factors?study=digits225_dp_epsilon", chart_in_view)
        shot("present", "/presenter?slide=5")
        shot("present_defence", "/presenter?slide=8")
        context.close()
        browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", default=str(REPO / "docs" / "screenshots"), help="output folder (default docs/screenshots)"
    )
    parser.add_argument("--url", default=None, help="use an app already running at this URL instead of starting one")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SHOTS)}")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set MIA_CHROMIUM)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    unknown = (only or set()) - set(SHOTS)
    if unknown:
        parser.error(f"unknown page(s) {sorted(unknown)}; choose from {', '.join(SHOTS)}")
    proc = None
    with tempfile.TemporaryDirectory(prefix="mia-shots-") as tmp:
        base = args.url
        if base is None:
            try:
                proc, base = start_app(Path(tmp) / "store", Path(tmp) / "streamlit.log")
            except AppDidNotStart as err:
                print(err, file=sys.stderr)
                return 1
        try:
            problems = take(base.rstrip("/"), out, only)
        finally:
            if proc is not None:
                stop_app(proc)
    for name, text in problems.items():
        print(f"problem: {name}: {text}", file=sys.stderr)
    return 1 if any("exception" in t for t in problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
