"""Tests for mia_core.data: image sets, splits, loaders, conversion and safe decoding."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mia_core import data
from mia_core.data import (
    DIGITS_SOURCE,
    ImageSet,
    Split,
    convert_images,
    decode_image,
    load_digits,
    load_image_folder,
    load_npz,
    load_source,
    load_uploads,
    random_split,
    resolve_data,
)

# ----------------------------------------------------------------------------- helpers


def _png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    img.save(buf, format=fmt)
    return buf.getvalue()


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_png_bytes(arr))


def _random_images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature + IHDR + IEND claiming width x height, with no pixel data at all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    return load_digits()


# ----------------------------------------------------------------------------- ImageSet


def test_digits_shape_ids_and_range(digits):
    assert digits.images.shape == (1797, 8, 8, 1)
    assert digits.images.dtype == np.uint8
    assert digits.ids[0] == "digits-0000" and digits.ids[-1] == "digits-1796"
    assert digits.source == DIGITS_SOURCE
    assert (digits.n, digits.resolution, digits.channels) == (1797, 8, 1)
    # 0..16 -> round(v * 255 / 16): both ends of the range occur
    assert digits.images.min() == 0 and digits.images.max() == 255
    from sklearn.datasets import load_digits as sk

    raw = sk().images
    np.testing.assert_array_equal(digits.images[..., 0], np.round(raw * 255 / 16).astype(np.uint8))


def test_fingerprint_stable_and_sensitive(digits):
    again = load_digits()
    assert digits.fingerprint == again.fingerprint
    assert len(digits.fingerprint) == 16 and int(digits.fingerprint, 16) >= 0
    changed = digits.images.copy()
    changed[5, 3, 3, 0] ^= 1
    assert ImageSet(changed, digits.ids, digits.source).fingerprint != digits.fingerprint
    renamed = ("x",) + digits.ids[1:]
    assert ImageSet(digits.images, renamed, digits.source).fingerprint != digits.fingerprint


def test_imageset_is_read_only(digits):
    with pytest.raises(ValueError):
        digits.images[0, 0, 0, 0] = 1


def test_imageset_validation():
    imgs = _random_images(3, 4, 4, 3)
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(imgs.astype(np.float32), ("a", "b", "c"), "t")
    with pytest.raises(ValueError, match="duplicate image id 'a'"):
        ImageSet(imgs, ("a", "b", "a"), "t")
    with pytest.raises(ValueError, match="2 ids for 3 images"):
        ImageSet(imgs, ("a", "b"), "t")
    with pytest.raises(ValueError, match="C = 1 or 3"):
        ImageSet(_random_images(3, 4, 4, 4), ("a", "b", "c"), "t")
    with pytest.raises(ValueError, match="not square"):
        ImageSet(_random_images(1, 4, 6, 1), ("a",), "t").resolution


def test_subset_order_and_missing_ids(digits):
    sub = digits.subset(["digits-0010", "digits-0002"])
    assert sub.ids == ("digits-0010", "digits-0002")
    np.testing.assert_array_equal(sub.images[0], digits.images[10])
    np.testing.assert_array_equal(sub.images[1], digits.images[2])
    with pytest.raises(ValueError, match="'nope-1'") as err:
        digits.subset(["digits-0001"] + [f"nope-{k}" for k in range(8)])
    assert "8 id(s)" in str(err.value) and "3 more" in str(err.value)


def test_to_unit_range():
    imgs = np.array([[[[0, 127, 255]]]], dtype=np.uint8)  # (1, 1, 1, 3)
    x = ImageSet(imgs, ("a",), "t").to_unit_range()
    assert x.dtype == np.float32 and x.shape == (1, 3, 1, 1)
    np.testing.assert_allclose(x[0, :, 0, 0], [-1.0, 127 / 127.5 - 1, 1.0], atol=1e-6)


# ----------------------------------------------------------------------------- Split


def test_random_split_sizes_disjoint_deterministic(digits):
    split = random_split(digits, seed=0)
    assert (split.n_members, split.n_nonmembers) == (898, 899)
    assert not set(split.member_ids) & set(split.nonmember_ids)
    assert set(split.member_ids) | set(split.nonmember_ids) == set(digits.ids)
    assert split.data_fingerprint == digits.fingerprint and split.source == DIGITS_SOURCE
    assert random_split(digits, seed=0) == split
    other = random_split(digits, seed=1)
    assert other.member_ids != split.member_ids
    # the documented recipe: members are ids[perm[:n_members]] in permuted order
    perm = np.random.default_rng(0).permutation(1797)
    assert split.member_ids[:3] == tuple(digits.ids[k] for k in perm[:3])


def test_random_split_rejects_bad_fraction(digits):
    with pytest.raises(ValueError, match="member_fraction"):
        random_split(digits, member_fraction=1.0)
    tiny = digits.subset(["digits-0000", "digits-0001"])
    with pytest.raises(ValueError, match="at least one"):
        random_split(tiny, member_fraction=0.4)


def test_split_save_load_round_trip_and_check(tmp_path, digits):
    split = random_split(digits, seed=3, description="round trip")
    path = tmp_path / "sub" / "split.json"
    split.save(path)
    on_disk = json.loads(path.read_text())
    assert on_disk["format"] == "mia-split/1" and on_disk["seed"] == 3
    loaded = Split.load(path)
    assert loaded == split
    loaded.check_against(digits)  # same data: no error

    changed = digits.images.copy()
    changed[0, 0, 0, 0] ^= 1
    other = ImageSet(changed, digits.ids, "elsewhere")
    with pytest.raises(ValueError) as err:
        loaded.check_against(other)
    assert split.data_fingerprint in str(err.value) and other.fingerprint in str(err.value)


def test_split_load_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Split.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Split.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "other/9", "member_ids": ["a"], "nonmember_ids": ["b"]}))
    with pytest.raises(ValueError, match="unsupported split format 'other/9'"):
        Split.load(wrong)


def test_check_against_missing_id(digits):
    split = Split(("digits-0000", "ghost"), ("digits-0001",), None, digits.fingerprint, DIGITS_SOURCE)
    with pytest.raises(ValueError, match="'ghost'"):
        split.check_against(digits)


def test_split_refuses_overlap_duplicates_and_empty():
    with pytest.raises(ValueError, match="both member and non-member: 'b'"):
        Split(("a", "b"), ("b", "c"), 0, "f" * 16, "s")
    with pytest.raises(ValueError, match="'a' twice"):
        Split(("a", "a"), ("c",), 0, "f" * 16, "s")
    with pytest.raises(ValueError, match="nonmember_ids is empty"):
        Split(("a",), (), 0, "f" * 16, "s")


def test_limit_and_labelled(digits):
    split = random_split(digits, seed=0)
    small = split.limit(5)
    assert small.member_ids == split.member_ids[:5] and small.nonmember_ids == split.nonmember_ids[:5]
    assert (small.seed, small.data_fingerprint, small.source) == (split.seed, split.data_fingerprint, split.source)
    with pytest.raises(ValueError, match="positive integer"):
        split.limit(0)
    ids, is_member = small.labelled()
    assert ids == small.member_ids + small.nonmember_ids
    assert is_member.dtype == bool and is_member.tolist() == [True] * 5 + [False] * 5


# ----------------------------------------------------------------------------- npz


def test_load_npz_rgb_with_labels(tmp_path):
    imgs = _random_images(6, 32, 32, 3)
    path = tmp_path / "bench.npz"
    np.savez(path, images=imgs, labels=np.arange(6))
    s = load_npz(path)
    assert s.images.shape == (6, 32, 32, 3) and s.ids == tuple(str(k) for k in range(6))
    assert s.source == str(path)
    np.testing.assert_array_equal(s.images, imgs)


def test_load_npz_gray_with_ids(tmp_path):
    imgs = _random_images(4, 8, 8, 1)[..., 0]  # (N, H, W)
    path = tmp_path / "gray.npz"
    np.savez(path, images=imgs, ids=np.array([10, 11, 12, 13]))
    s = load_npz(path)
    assert s.images.shape == (4, 8, 8, 1) and s.ids == ("10", "11", "12", "13")


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Trap:
    """Unpickling this object would call _record_unpickle."""

    def __reduce__(self):
        return (_record_unpickle, ("trap",))


def test_load_npz_refuses_object_array_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = _Trap(), _Trap()
    np.savez(path, images=arr)
    _UNPICKLED.clear()
    with pytest.raises(ValueError, match="pickled object array") as err:
        load_npz(path)
    assert str(path) in str(err.value)
    assert _UNPICKLED == []


def test_load_npz_refuses_float_and_bad_layouts(tmp_path):
    path = tmp_path / "float.npz"
    np.savez(path, images=np.random.default_rng(0).random((3, 8, 8, 3)))
    with pytest.raises(ValueError, match="uint8"):
        load_npz(path)
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, pixels=_random_images(2, 4, 4, 1))
    with pytest.raises(ValueError, match="no 'images' array .*pixels"):
        load_npz(nokey)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"hello, not a zip")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_npz(garbage)


# ----------------------------------------------------------------------------- folders


def test_image_folder_with_members_and_nonmembers(tmp_path):
    imgs = _random_images(5, 8, 8, 3)
    for k, name in enumerate(["b.png", "a.png", "c.png"]):
        _save_png(tmp_path / "members" / name, imgs[k])
    for k, name in enumerate(["y.png", "x.png"]):
        _save_png(tmp_path / "nonmembers" / name, imgs[3 + k])
    (tmp_path / "members" / "notes.txt").write_text("ignored")

    s, split, conv = load_image_folder(tmp_path)
    assert s.ids == ("members/a.png", "members/b.png", "members/c.png", "nonmembers/x.png", "nonmembers/y.png")
    assert split is not None and split.seed is None
    assert split.member_ids == ("members/a.png", "members/b.png", "members/c.png")
    assert split.nonmember_ids == ("nonmembers/x.png", "nonmembers/y.png")
    assert split.data_fingerprint == s.fingerprint and split.source == str(tmp_path)
    assert not conv.changed and "8x8" in conv.report
    np.testing.assert_array_equal(s.subset(["members/b.png"]).images[0], imgs[0])  # PNG is lossless


def test_image_folder_plain_gives_no_split(tmp_path):
    for k in range(3):
        _save_png(tmp_path / f"img{k}.png", _random_images(1, 6, 6, 1, seed=k)[0])
    s, split, _ = load_image_folder(tmp_path)
    assert split is None and s.ids == ("img0.png", "img1.png", "img2.png") and s.channels == 1


def test_image_folder_mixed_sizes(tmp_path):
    _save_png(tmp_path / "small.png", _random_images(1, 8, 8, 3)[0])
    jpeg = tmp_path / "large.jpg"
    jpeg.write_bytes(_png_bytes(_random_images(1, 16, 16, 3)[0], fmt="JPEG"))
    with pytest.raises(ValueError) as err:
        load_image_folder(tmp_path)
    assert "small.png" in str(err.value) and "large.jpg" in str(err.value) and "resolution=" in str(err.value)

    s, _, conv = load_image_folder(tmp_path, resolution=8, channels=1)
    assert s.images.shape == (2, 8, 8, 1)
    assert conv.changed and "16x16 -> 8x8" in conv.report and "grayscale" in conv.report


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="contains no images"):
        load_image_folder(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"definitely not a png")
    with pytest.raises(ValueError, match="bad.png"):
        load_image_folder(tmp_path)
    (tmp_path / "sub" / "members").mkdir(parents=True)
    with pytest.raises(ValueError, match="no nonmembers/"):
        load_image_folder(tmp_path / "sub")


# ----------------------------------------------------------------------------- conversion


def test_convert_rgb32_to_gray8_reports_both():
    imgs = _random_images(3, 32, 32, 3)
    out, conv = convert_images(imgs, resolution=8, channels=1)
    assert out.shape == (3, 8, 8, 1) and out.dtype == np.uint8
    assert conv.changed
    assert "32x32 -> 8x8" in conv.report and "Lanczos" in conv.report
    assert "RGB -> grayscale" in conv.report


def test_convert_constant_image_keeps_value():
    imgs = np.full((2, 32, 32, 3), 77, dtype=np.uint8)
    out, _ = convert_images(imgs, resolution=8, channels=3)
    assert (out == 77).all()


def test_convert_integer_upscale_is_pixel_repetition():
    imgs = _random_images(2, 8, 8, 1)
    out, conv = convert_images(imgs, resolution=16, channels=1)
    np.testing.assert_array_equal(out, imgs.repeat(2, axis=1).repeat(2, axis=2))
    assert "nearest" in conv.report


def test_convert_no_change_crop_and_channel_repeat():
    imgs = _random_images(2, 8, 8, 1)
    out, conv = convert_images(imgs, resolution=8, channels=1)
    assert not conv.changed and conv.report == "no conversion needed (8x8, 1 channel)"
    np.testing.assert_array_equal(out, imgs)

    tall = _random_images(1, 10, 6, 1)
    out, conv = convert_images(tall, resolution=6, channels=3)
    assert out.shape == (1, 6, 6, 3)
    np.testing.assert_array_equal(out[..., 0], tall[:, 2:8, :, 0])  # central rows
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert "centre-cropped 10x6 -> 6x6" in conv.report and "grayscale -> RGB" in conv.report

    _, conv = convert_images(_random_images(1, 10, 10, 3), resolution=16, channels=3)
    assert "bicubic" in conv.report


# ----------------------------------------------------------------------------- decoding


def test_decode_png_and_jpeg():
    rgb = _random_images(1, 12, 10, 3)[0]
    np.testing.assert_array_equal(decode_image(_png_bytes(rgb), "a.png"), rgb)
    gray = _random_images(1, 5, 7, 1)[0]
    out = decode_image(_png_bytes(gray), "g.png")
    assert out.shape == (5, 7, 1)
    np.testing.assert_array_equal(out, gray)
    assert decode_image(_png_bytes(rgb, fmt="JPEG"), "a.jpg").shape == (12, 10, 3)


def test_decode_rejects_corrupt_and_truncated():
    with pytest.raises(ValueError, match="junk.png.*not a supported image"):
        decode_image(b"this is not an image at all", "junk.png")
    full = _png_bytes(_random_images(1, 64, 64, 3)[0])  # noise: does not compress
    with pytest.raises(ValueError, match="cut.png.*(corrupt|truncated)"):
        decode_image(full[: len(full) // 2], "cut.png")
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"", "empty.png")


def test_decode_rejects_too_many_bytes(monkeypatch):
    monkeypatch.setattr(data.images, "IMAGE_MAX_BYTES", 100)
    with pytest.raises(ValueError, match="big.png.*limit"):
        decode_image(b"\0" * 101, "big.png")


def test_decode_rejects_too_many_pixels_before_decoding(monkeypatch):
    # A header claiming 5000x5000 with no pixel data: only a size check before decoding
    # can give the pixel-limit message (decoding would fail as truncated instead).
    with pytest.raises(ValueError, match="huge.png.*pixel limit"):
        decode_image(_png_header_only(5000, 5000), "huge.png")
    # PIL's own bomb guard (header claiming 10^10 pixels) is reported as a rejection too.
    with pytest.raises(ValueError, match="bomb.png.*pixels"):
        decode_image(_png_header_only(100_000, 100_000), "bomb.png")
    monkeypatch.setattr(data.images, "IMAGE_MAX_PIXELS", 50 * 50)
    with pytest.raises(ValueError, match="real.png.*pixel limit"):
        decode_image(_png_bytes(np.zeros((60, 60, 3), np.uint8)), "real.png")


def test_decode_rgba_composited_on_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent
    rgba[0, 2] = (0, 0, 0, 128)  # half-transparent black
    out = decode_image(_png_bytes(rgba), "alpha.png")
    assert out.shape == (1, 3, 3)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert np.all(np.abs(out[0, 2].astype(int) - 127) <= 2)


def test_decode_animated_gif_uses_first_frame():
    frames = [Image.new("L", (4, 4), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = decode_image(buf.getvalue(), "anim.gif")
    assert out.shape[:2] == (4, 4)
    assert np.unique(out).size == 1 and out.flat[0] == 10


def test_load_uploads_keeps_good_reports_bad():
    good = _png_bytes(_random_images(1, 32, 32, 3)[0])
    other = _png_bytes(_random_images(1, 16, 16, 1)[0], fmt="JPEG")
    result = load_uploads(
        [("a.png", good), ("broken.png", b"nope"), ("a.png", good), ("b.jpg", other)],
        resolution=8,
        channels=1,
    )
    assert result.images is not None
    assert result.images.ids == ("a.png", "a.png#2", "b.jpg")
    assert result.images.images.shape == (3, 8, 8, 1) and result.images.source == "upload"
    assert len(result.errors) == 1 and "broken.png" in result.errors[0]
    assert result.conversion.changed and "grayscale" in result.conversion.report

    none = load_uploads([("x.png", b"junk")], resolution=8, channels=1)
    assert none.images is None and len(none.errors) == 1


# ----------------------------------------------------------------------------- resolve_data


def test_resolve_default_without_split_file(tmp_path, monkeypatch, digits):
    monkeypatch.setattr(data.sources, "DEFAULT_SPLIT_PATH", tmp_path / "missing.json")
    images, split = resolve_data("default")
    assert (split.n_members, split.n_nonmembers) == (898, 899)
    assert split == random_split(digits, seed=0, description=split.description)
    assert images.ids == split.member_ids + split.nonmember_ids


def test_resolve_default_with_split_file(tmp_path, monkeypatch, digits):
    path = tmp_path / "split.json"
    random_split(digits, seed=7).limit(10).save(path)
    monkeypatch.setattr(data.sources, "DEFAULT_SPLIT_PATH", path)
    images, split = resolve_data("default")
    assert split == Split.load(path) and images.n == 20
    assert images.ids[:10] == split.member_ids

    wrong = Split(split.member_ids, split.nonmember_ids, 7, "0" * 16, DIGITS_SOURCE)
    wrong.save(path)
    with pytest.raises(ValueError, match="fingerprint"):
        resolve_data("default")


def test_resolve_npz_random_and_is_member(tmp_path):
    imgs = _random_images(20, 8, 8, 3)
    path = tmp_path / "set.npz"
    np.savez(path, images=imgs)
    images, split = resolve_data(str(path), seed=4)
    assert (split.n_members, split.n_nonmembers) == (10, 10) and split.seed == 4
    assert resolve_data(str(path), seed=4)[1] == split
    assert resolve_data(str(path), seed=5)[1] != split
    assert images.n == 20

    flags = np.zeros(20, dtype=bool)
    flags[[1, 3, 5]] = True
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, images=imgs, is_member=flags)
    _, split = resolve_data(str(labelled))
    assert split.member_ids == ("1", "3", "5") and split.n_nonmembers == 17 and split.seed is None


def test_resolve_folder(tmp_path):
    for k in range(4):
        _save_png(tmp_path / "plain" / f"{k}.png", _random_images(1, 8, 8, 1, seed=k)[0])
    _, split = resolve_data(str(tmp_path / "plain"), seed=1)
    assert (split.n_members, split.n_nonmembers) == (2, 2) and split.seed == 1

    for k in range(3):
        _save_png(tmp_path / "split" / "members" / f"m{k}.png", _random_images(1, 8, 8, 1, seed=k)[0])
        _save_png(tmp_path / "split" / "nonmembers" / f"n{k}.png", _random_images(1, 8, 8, 1, seed=9 + k)[0])
    images, split = resolve_data(str(tmp_path / "split"))
    assert split.member_ids == ("members/m0.png", "members/m1.png", "members/m2.png")
    assert images.ids == split.member_ids + split.nonmember_ids


def test_resolve_manifest_with_relative_source(tmp_path, monkeypatch):
    npz = tmp_path / "data" / "set.npz"
    npz.parent.mkdir()
    np.savez(npz, images=_random_images(12, 8, 8, 1))
    full = load_npz(npz)
    split = random_split(full, seed=2)
    relative = Split(split.member_ids, split.nonmember_ids, 2, split.data_fingerprint, "../data/set.npz")
    manifest = tmp_path / "manifests" / "split.json"
    relative.save(manifest)

    monkeypatch.chdir(tmp_path / "data")  # the source must resolve from the manifest, not the cwd
    images, loaded = resolve_data(str(manifest))
    assert loaded == relative
    assert images.ids == split.member_ids + split.nonmember_ids
    np.testing.assert_array_equal(images.images, full.subset(images.ids).images)
    assert load_source("../data/set.npz", base_dir=manifest.parent).fingerprint == full.fingerprint


def test_resolve_digits_source_uses_seed():
    _, a = resolve_data(DIGITS_SOURCE, seed=1)
    _, b = resolve_data(DIGITS_SOURCE, seed=2)
    assert a.seed == 1 and a.member_ids != b.member_ids


def test_resolve_unknown_spec(tmp_path):
    with pytest.raises(ValueError) as err:
        resolve_data(str(tmp_path / "nothing.txt"))
    message = str(err.value)
    assert "does not exist" in message and "default" in message and ".npz" in message and ".json" in message
    odd = tmp_path / "notes.txt"
    odd.write_text("x")
    with pytest.raises(ValueError, match="not a supported kind of file"):
        resolve_data(str(odd))
