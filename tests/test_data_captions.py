"""Issue 15, item 2: captions are data (one per image) from an .npz, an image folder's metadata.jsonl,
a split manifest, and uploads; subsets keep them aligned; misaligned or missing captions fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core.data import ImageSet, Split, load_image_folder, load_npz, load_uploads, resolve_data
from mia_core.lab.uploads import encode_png, save_upload_folder


def _images(n=4):
    return np.arange(n * 4 * 4, dtype=np.uint8).reshape(n, 4, 4, 1)


def test_imageset_captions_follow_subset_and_are_checked():
    s = ImageSet(_images(), ("a", "b", "c", "d"), "x", ("one", "two", "three", "four"))
    sub = s.subset(["d", "b"])
    assert sub.captions == ("four", "two") and sub.caption_of("b") == "two"
    assert s.fingerprint == ImageSet(_images(), ("a", "b", "c", "d"), "x").fingerprint  # pixels and ids only
    assert ImageSet(_images(), ("a", "b", "c", "d"), "x").subset(["a"]).captions is None
    with pytest.raises(ValueError, match="3 captions for 4 images"):
        ImageSet(_images(), ("a", "b", "c", "d"), "x", ("one", "two", "three"))
    with pytest.raises(ValueError, match="captions of 'b' are not"):
        ImageSet(_images(), ("a", "b", "c", "d"), "x", ("one", 2, "three", "four"))


def test_npz_captions(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(
        path, images=_images(), ids=np.array(["w", "x", "y", "z"]), captions=np.array(["a seven", "", "a one", "é"])
    )
    s = load_npz(path)
    assert s.captions == ("a seven", "", "a one", "é")
    images, split = resolve_data(str(path))
    assert images.captions == tuple(s.caption_of(i) for i in images.ids)  # reordered with the split's ids
    split.save(tmp_path / "split.json")  # a manifest whose source is the npz (the shipped t2i layout)
    again, _ = resolve_data(str(tmp_path / "split.json"))
    assert again.captions == images.captions and "captions" not in json.loads((tmp_path / "split.json").read_text())
    np.savez(path, images=_images(), captions=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"'captions' has shape \(2,\), expected \(4,\)"):
        load_npz(path)
    np.savez(path, images=_images(), captions=np.arange(4))
    with pytest.raises(ValueError, match="'captions' must be a string array"):
        load_npz(path)


def _write_folder(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        (folder / name).write_bytes(encode_png(np.full((4, 4), 30 * k, np.uint8)))


def test_image_folder_metadata_jsonl(tmp_path):
    flat = tmp_path / "flat"
    _write_folder(flat, ["a.png", "b.png"])
    (flat / "metadata.jsonl").write_text(
        '{"file_name": "b.png", "text": "bee"}\n{"file_name": "a.png", "text": "ay"}\n'
    )
    assert load_image_folder(flat)[0].captions == ("ay", "bee")
    # members/ + nonmembers/: one file at the root, or one per subfolder (names relative to it)
    split_folder = tmp_path / "split"
    _write_folder(split_folder / "members", ["m.png"])
    _write_folder(split_folder / "nonmembers", ["n.png"])
    (split_folder / "members" / "metadata.jsonl").write_text(json.dumps({"file_name": "m.png", "text": "in"}) + "\n")
    (split_folder / "metadata.jsonl").write_text(json.dumps({"file_name": "nonmembers/n.png", "text": "out"}) + "\n")
    images, split, _ = load_image_folder(split_folder)
    assert dict(zip(images.ids, images.captions)) == {"members/m.png": "in", "nonmembers/n.png": "out"}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"file_name": "a.png", "text": "ay"}'], r"1 image\(s\) have no caption in metadata.jsonl: 'b.png'"),
        (
            [
                '{"file_name": "a.png", "text": "ay"}',
                '{"file_name": "b.png", "text": "b"}',
                '{"file_name": "c.png", "text": "c"}',
            ],
            "not images of the folder: 'c.png'",
        ),
        (
            ['{"file_name": "a.png", "text": "ay"}', '{"file_name": "a.png", "text": "again"}'],
            "'a.png' has a caption already",
        ),
        (['{"file_name": "a.png", "caption": "ay"}'], r'line 1: expected an object with string "file_name" and "text"'),
        (["not json"], "line 1: not valid JSON"),
    ],
)
def test_bad_metadata_jsonl_is_refused_clearly(tmp_path, lines, message):
    _write_folder(tmp_path / "f", ["a.png", "b.png"])
    (tmp_path / "f" / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message):
        load_image_folder(tmp_path / "f")


def test_split_manifest_records_captions(tmp_path):
    npz = tmp_path / "d.npz"
    np.savez(npz, images=_images(), ids=np.array(["w", "x", "y", "z"]))
    s = load_npz(npz)
    caps = {"w": "a", "x": "b", "y": "c", "z": "d"}
    split = Split(("w", "x"), ("y", "z"), None, s.fingerprint, "d.npz", captions=caps)
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json").captions == caps
    images, _ = resolve_data(str(tmp_path / "split.json"))
    assert images.captions == ("a", "b", "c", "d")
    assert split.limit(1).captions == {"w": "a", "y": "c"}
    with pytest.raises(ValueError, match=r"1 id\(s\) of the split have no caption: 'z'"):
        Split(("w", "x"), ("y", "z"), None, s.fingerprint, "d.npz", captions={"w": "a", "x": "b", "y": "c"})
    np.savez(npz, images=_images(), ids=np.array(["w", "x", "y", "z"]), captions=np.array(["a", "b", "c", "other"]))
    with pytest.raises(ValueError, match="caption of 'z' \\('d'\\) differs from the data's \\('other'\\)"):
        resolve_data(str(tmp_path / "split.json"))


def test_uploads_take_an_optional_caption(tmp_path):
    png = encode_png(np.full((4, 4), 9, np.uint8))
    result = load_uploads([("a.png", png, "a seven"), ("b.png", png)], resolution=4, channels=1)
    assert result.images.captions == ("a seven", "")
    assert load_uploads([("a.png", png)], resolution=4, channels=1).images.captions is None
    folder = save_upload_folder(tmp_path, [("m.png", png, "in")], [("n.png", png)])
    images, split, _ = load_image_folder(folder)
    assert images.captions == ("in", "") and split.n_members == 1
    assert save_upload_folder(tmp_path, [("m.png", png, "other")], [("n.png", png)]) != folder  # captions are content
    plain = save_upload_folder(tmp_path, [("m.png", png)], [("n.png", png)])
    assert not (plain / "metadata.jsonl").exists() and load_image_folder(plain)[0].captions is None
