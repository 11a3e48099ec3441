"""AppTest of the Data page: the default split, bad sources, image folders, uploads, manifests, subsets."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest


def _png(value: int, size: int = 8) -> bytes:
    rng = np.random.default_rng(value)
    arr = rng.integers(0, 256, size=(size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def at(open_page) -> AppTest:
    return open_page("pages/data.py")


def _metrics(app: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in app.metric}


def test_default_split_counts_report_and_galleries(at):
    m = _metrics(at)
    assert m["Members"] == "898" and m["Non-members"] == "899"
    assert m["Model input"] == "8x8, 1 channel"
    assert any("**Data fingerprint:** `322ef792d36ed533`" in md.value for md in at.markdown)
    assert any("no conversion needed (8x8, 1 channel)" in i.value for i in at.info)
    captions = [c for img in at.image for c in img.captions]
    assert len(captions) == 48  # 24 members + 24 non-members on the first pages
    assert all(c.startswith("digits-") for c in captions)
    assert any("Members (898)" in t.label for t in at.tabs)
    assert "JSON" in at.download_button(key="data.download_split").label
    # the pager moves the members gallery to the next 24 ids
    at.pagination[0].set_value(2)
    at.run()
    assert not at.exception
    after = [c for img in at.image for c in img.captions]
    assert len(after) == 48 and after[:24] != captions[:24] and after[24:] == captions[24:]


def test_bad_npz_path_shows_error_and_keeps_data(at, tmp_path):
    at.text_input(key="data.npz_path").set_value(str(tmp_path / "nonexistent" / "images.npz"))  # an allowed folder
    at.button(key="data.apply_npz").click()
    at.run()
    assert not at.exception
    assert any("does not exist" in e.value and "previous data is kept" in e.value for e in at.error)
    assert at.session_state["cfg.data"] == "default"
    assert _metrics(at)["Members"] == "898"
    # a path that does not end in .npz is refused before loading
    at.text_input(key="data.npz_path").set_value("/tmp/x.txt")
    at.button(key="data.apply_npz").click()
    at.run()
    assert any("does not end in .npz" in e.value for e in at.error)


def test_image_folder_switches_data(at, tmp_path):
    folder = tmp_path / "imgs"
    for sub, offset in (("members", 0), ("nonmembers", 100)):
        (folder / sub).mkdir(parents=True)
        for k in range(6):
            (folder / sub / f"im{k}.png").write_bytes(_png(offset + k, size=16))  # 16x16 -> converted to 8x8
    at.session_state["sel.sample"] = "digits-0001"
    at.text_input(key="data.folder_path").set_value(str(folder))
    at.button(key="data.apply_folder").click()
    at.run()
    assert not at.exception
    assert at.session_state["cfg.data"] == str(folder)
    assert at.session_state["sel.sample"] is None
    m = _metrics(at)
    assert m["Members"] == "6" and m["Non-members"] == "6"
    assert any("resized 16x16 -> 8x8" in i.value for i in at.info)
    assert any("Now using image folder" in s.value for s in at.success)
    assert at.image[0].captions[0] == "members/im0.png"
    assert len(at.image) == 12


def test_uploaded_images_become_a_folder(at, tmp_path):
    at.file_uploader(key="data.up_members").set_value([(f"m{k}.png", _png(k), "image/png") for k in range(3)])
    at.file_uploader(key="data.up_nonmembers").set_value([(f"n{k}.png", _png(50 + k), "image/png") for k in range(4)])
    at.button(key="data.apply_upload").click()
    at.run()
    assert not at.exception
    data = Path(at.session_state["cfg.data"])
    assert data.parent == tmp_path / "store" / "uploads"
    assert sorted(p.name for p in (data / "members").iterdir()) == ["m0.png", "m1.png", "m2.png"]
    m = _metrics(at)
    assert m["Members"] == "3" and m["Non-members"] == "4"


def test_manifest_roundtrip_and_subset(at, tmp_path):
    from mia_core.data import DEFAULT_SPLIT_PATH, Split

    # a manifest file: a smaller split of the same data (same fingerprint)
    split = Split.load(DEFAULT_SPLIT_PATH)
    d = split.to_dict()
    d["member_ids"], d["nonmember_ids"] = d["member_ids"][:100], d["nonmember_ids"][:150]
    path = tmp_path / "small.json"
    path.write_text(json.dumps(d))
    at.text_input(key="data.manifest_path").set_value(str(path))
    at.button(key="data.apply_manifest").click()
    at.run()
    assert not at.exception
    assert at.session_state["cfg.data"] == str(path)
    assert _metrics(at)["Members"] == "100" and _metrics(at)["Non-members"] == "150"
    # a broken manifest is refused and the data stays
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    at.text_input(key="data.manifest_path").set_value(str(bad))
    at.button(key="data.apply_manifest").click()
    at.run()
    assert any("not valid JSON" in e.value for e in at.error)
    assert at.session_state["cfg.data"] == str(path)
    # subset for speed
    at.number_input(key="data.limit").set_value(40)
    at.run()
    assert at.session_state["cfg.limit"] == 40
    assert _metrics(at)["Members"] == "40" and _metrics(at)["Non-members"] == "40"
    at.number_input(key="data.limit").set_value(0)
    at.run()
    assert at.session_state["cfg.limit"] is None and _metrics(at)["Members"] == "100"


def test_gallery_thumbnails_are_readable(open_page, monkeypatch):
    """Issue 19: gallery images at least 160 px wide (were 96 px), enlarged without smoothing."""
    from streamlit.elements.image import ImageMixin

    shown = []  # (width, array shape) of every st.image call
    original = ImageMixin.image

    def spy(self, image, caption=None, width="content", **kwargs):
        shown.append((width, np.shape(image)))
        return original(self, image, caption=caption, width=width, **kwargs)

    import streamlit as st

    monkeypatch.setattr(ImageMixin, "image", spy)
    monkeypatch.setattr(st, "image", lambda *a, **k: spy(st._main, *a, **k))  # st.image was bound at import
    open_page("pages/data.py")
    assert len(shown) == 48, shown  # the two galleries' first pages
    assert all(w >= 160 and min(sh[:2]) >= 160 for w, sh in shown), shown
