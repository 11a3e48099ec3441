"""mia_core.lab.uploads: PNG bytes of a split image, the content-addressed upload folder."""

from __future__ import annotations

import numpy as np
import pytest

from mia_core.data import load_image_folder
from mia_core.lab.uploads import encode_png, save_upload_folder


def test_encode_png_roundtrip():
    img = np.arange(64, dtype=np.uint8).reshape(8, 8, 1)
    from mia_core.data import decode_image

    assert (decode_image(encode_png(img), "x.png") == img).all()


def test_save_upload_folder(tmp_path):
    png = encode_png(np.full((8, 8), 200, np.uint8))
    folder = save_upload_folder(tmp_path, [("../evil name.png", png), ("a.png", png)], [("b.PNG", png)])
    assert folder.parent == tmp_path / "uploads"
    assert sorted(p.name for p in (folder / "members").iterdir()) == ["a.png", "evil_name.png"]
    images, split, _ = load_image_folder(folder)
    assert split.n_members == 2 and split.n_nonmembers == 1
    assert save_upload_folder(tmp_path, [("../evil name.png", png), ("a.png", png)], [("b.PNG", png)]) == folder
    with pytest.raises(ValueError, match="not an image"):
        save_upload_folder(tmp_path, [("x.exe", b"1")], [("b.png", png)])
    with pytest.raises(ValueError, match="at least one"):
        save_upload_folder(tmp_path, [], [("b.png", png)])
