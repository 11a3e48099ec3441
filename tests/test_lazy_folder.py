"""Image folders are listed up front and decoded per batch (issue 18, bounded memory): nothing is decoded when
the folder is loaded, a scored batch decodes its own images only, and the scores equal those of the images
decoded whole up front (the eager path)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mia_core.data.folder as folder_mod
from mia_core.data import FolderImages, ImageSet, LazyImages, load_image_folder, resolve_data
from mia_core.data.images import _convert_many, convert_images
from mia_core.lab import shards
from mia_core.lab.experiment import Experiment, load_experiment, make_attacks
from mia_core.lab.runs import ResultStore

PARAMS = {"loss": {"sweep": [100, 200]}}
BATCH = 4


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """members/: six 12x12 RGB PNGs; nonmembers/: six 14x10 RGB PNGs (mixed sizes: converted as read)."""
    root = tmp_path_factory.mktemp("lazy") / "imgs"
    rng = np.random.default_rng(0)
    pixels = {}
    for sub, (h, w) in (("members", (12, 12)), ("nonmembers", (14, 10))):
        (root / sub).mkdir(parents=True)
        for k in range(6):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            (root / sub / f"{k:02d}.png").write_bytes(_png(arr))
            pixels[f"{sub}/{k:02d}.png"] = arr
    return root, pixels


@pytest.fixture()
def decodes(monkeypatch) -> list[str]:
    """The names of the image files decoded from here on (:func:`mia_core.data.decode_image` calls of the
    folder reader)."""
    seen: list[str] = []
    real = folder_mod.decode_image

    def counting(data, name, **kw):
        seen.append(name)
        return real(data, name, **kw)

    monkeypatch.setattr(folder_mod, "decode_image", counting)
    return seen


def test_a_folder_is_decoded_per_batch_and_scores_like_the_eager_path(mixed_folder, decodes, tiny_target, tmp_path):
    root, pixels = mixed_folder
    exp = load_experiment(tiny_target, str(root))
    assert exp.images.lazy and isinstance(exp.images.images, FolderImages)
    assert exp.images.images.shape == (12, 8, 8, 1)
    assert exp.images.fingerprint and decodes == []  # listed, split, fingerprinted: not one file decoded

    # One batch of the sharded path decodes that batch's files, and only those.
    attack = make_attacks(["loss"], PARAMS)[0]
    plan = shards.ShardPlan(len(exp.ids), BATCH)
    (tmp_path / "one").mkdir()
    shards.score_batches(
        attack,
        tiny_target,
        exp.images.images,
        exp.ids,
        seed=0,
        plan=plan,
        batches=[1],
        folder=tmp_path / "one",
        procs=shards.Processes(),
    )
    assert [Path(n).relative_to(root).as_posix() for n in decodes] == list(exp.ids[4:8])

    # The eager path: every file decoded up front and converted as load_experiment did before (read with the
    # folder's mixed-size rule, then to the target's size), in one in-memory array.
    ids = exp.ids
    eager_pixels, _ = _convert_many([pixels[i] for i in ids], resolution=8, channels=1)
    eager_pixels, _ = convert_images(eager_pixels, resolution=8, channels=1)
    np.testing.assert_array_equal(np.asarray(exp.images.images), eager_pixels)
    eager = Experiment(tiny_target, exp.split, ImageSet(eager_pixels, ids, str(root)), exp.conversion, exp.is_member)

    attacks = make_attacks(["loss"], PARAMS)
    decodes.clear()
    lazy = shards.run_sharded(exp, attacks, seed=0, store=ResultStore(tmp_path / "store"), batch_size=BATCH)
    assert sorted(decodes) == sorted(str(root / i) for i in ids)  # every image read once, a batch at a time
    reference = eager.attack(attacks, seed=0, batch_size=BATCH)
    for name in ("loss",):
        assert lazy[name].ids == reference[name].ids
        np.testing.assert_array_equal(lazy[name].scores, reference[name].scores)
        np.testing.assert_array_equal(lazy[name].trace, reference[name].trace)


def test_lazy_images_index_like_the_array(mixed_folder):
    root, pixels = mixed_folder
    images, _, conv = load_image_folder(root, resolution=8, channels=3)
    lazy = images.images
    eager, eager_conv = _convert_many([pixels[i] for i in images.ids], resolution=8, channels=3)
    assert conv == eager_conv and lazy.shape == eager.shape and len(lazy) == 12 and lazy.dtype == np.uint8
    mask = np.arange(12) % 3 == 0
    for key in (5, -1, np.int64(2), slice(2, 9, 3), [7, 0, 7], np.array([3, 1]), mask, (mask, ..., 0), (4, 0)):
        np.testing.assert_array_equal(lazy[key], eager[key])
    np.testing.assert_array_equal(np.stack(list(lazy)), eager)
    np.testing.assert_array_equal(lazy.astype(np.float64), eager.astype(np.float64))
    np.testing.assert_array_equal(lazy.reshape(12, -1), eager.reshape(12, -1))  # other ndarray methods: decoded
    np.testing.assert_array_equal(
        convert_images(lazy, resolution=4, channels=1)[0], convert_images(eager, resolution=4, channels=1)[0]
    )
    with pytest.raises(IndexError, match="out of range"):
        lazy[12]
    # The pages hand the images to st.cache_data functions (hashed) and the figures pickle them.
    import pickle

    from streamlit.runtime.caching.cache_type import CacheType
    from streamlit.runtime.caching.hashing import update_hash

    def st_hash(x) -> str:
        h = hashlib.md5()
        update_hash(x, h, CacheType.DATA)
        return h.hexdigest()

    assert st_hash(lazy) == st_hash(load_image_folder(root, resolution=8, channels=3)[0].images)
    assert st_hash(lazy) != st_hash(load_image_folder(root, resolution=8, channels=1)[0].images)
    np.testing.assert_array_equal(np.asarray(pickle.loads(pickle.dumps(lazy))), eager)
    # A subset stays lazy and keeps its rows' pixels; the fingerprint follows the files' bytes and the ids.
    sub = images.subset(["nonmembers/03.png", "members/01.png"])
    assert isinstance(sub.images, LazyImages)
    np.testing.assert_array_equal(np.asarray(sub.images), eager[[9, 1]])
    again = load_image_folder(root, resolution=8, channels=3)[0]
    assert again.fingerprint == images.fingerprint != sub.fingerprint
    assert load_image_folder(root, resolution=8, channels=1)[0].fingerprint != images.fingerprint


def test_a_corrupt_file_fails_at_its_batch_and_a_non_image_at_listing(tmp_path, decodes):
    rng = np.random.default_rng(1)
    for k in range(6):
        (tmp_path / f"{k}.png").write_bytes(_png(rng.integers(0, 256, (8, 8), dtype=np.uint8)))
    good = (tmp_path / "4.png").read_bytes()
    (tmp_path / "4.png").write_bytes(good[: len(good) // 2])  # header intact, pixel data cut off
    images, split = resolve_data(str(tmp_path), seed=0)  # listed (headers only) and split: fine
    assert decodes == [] and images.images.shape[1:] == (8, 8, 1)
    rows = [images.ids.index(f"{k}.png") for k in range(6)]
    images.images[[rows[0], rows[1]]]  # a batch of good files decodes
    with pytest.raises(ValueError, match=r"4\.png: corrupt or truncated image"):
        images.images[[rows[3], rows[4]]]  # the batch holding the cut file names it

    (tmp_path / "4.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"4\.png: not a supported image"):
        load_image_folder(tmp_path)
    (tmp_path / "4.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"4\.png: the file is empty"):
        load_image_folder(tmp_path)


def test_the_data_and_sample_pages_show_a_lazy_folder(open_page, mixed_folder, tmp_path):
    import shutil

    root = tmp_path / "imgs"
    shutil.copytree(mixed_folder[0], root)  # inside the app's allowed roots
    at = open_page("pages/data.py")
    at.text_input(key="data.folder_path").set_value(str(root))
    at.button(key="data.apply_folder").click()
    at.run()
    assert not at.exception and at.session_state["cfg.data"] == str(root)
    assert len(at.image) == 12 and at.image[0].captions[0] == "members/00.png"  # the galleries decode their images
    at.switch_page("pages/sample.py")
    at.run()
    assert not at.exception, at.exception
    assert at.image and "members/00.png" in at.image[0].captions[0]
