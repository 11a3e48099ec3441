"""Bounded memory on the non-sharded path (issue 18): ``Experiment.x0`` converts rows as they are read,
``Attack.run`` converts one batch at a time with results bit for bit those of the whole array, and the blind
baseline reads its images in chunks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mia_core.attacks import get_attack, learned
from mia_core.attacks.secmi import SecMIStat
from mia_core.data import ImageSet, LazyImages, load_npz
from mia_core.data.images import UnitRangeView, to_unit_range
from mia_core.lab import blind
from mia_core.lab.experiment import load_experiment


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


class CountingImages(LazyImages):
    """In-memory uint8 images read through the LazyImages interface, recording how many rows each read took."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.reads: list[int] = []

    @property
    def shape(self):
        return self.pixels.shape

    def rows(self, index):
        self.reads.append(len(index))
        return self.pixels[index]

    def take(self, index):
        return CountingImages(self.pixels[index])

    def converted(self, resolution, channels):
        raise NotImplementedError

    def hash_into(self, h) -> None:
        h.update(self.pixels.tobytes())


@pytest.fixture(scope="module")
def exp(tiny_target):
    return load_experiment(tiny_target, "default", limit=6)  # 12 digits, 8x8x1


def _same(a, b) -> None:
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert sorted(a.extras) == sorted(b.extras)
    for k in a.extras:
        np.testing.assert_array_equal(a.extras[k], b.extras[k])


@pytest.mark.parametrize("channels", [1, 3])
def test_the_view_reads_rows_as_to_unit_range_converts_them(channels, tmp_path):
    pixels = np.random.default_rng(channels).integers(0, 256, (23, 5, 4, channels), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", images=pixels)  # uncompressed: memory-mapped, its subset read as rows are used
    mapped = load_npz(tmp_path / "x.npz")
    order = [str(i) for i in np.random.default_rng(0).permutation(23)]
    lazy = mapped.subset(order).images
    assert isinstance(lazy, LazyImages)
    for source, expected in ((pixels, to_unit_range(pixels)), (lazy, to_unit_range(pixels[[int(i) for i in order]]))):
        view = UnitRangeView(source)
        assert view.shape == expected.shape == (23, channels, 5, 4) and len(view) == 23 and view.dtype == np.float32
        whole = np.asarray(view)
        np.testing.assert_array_equal(whole, expected)
        assert whole.strides == expected.strides  # the same layout as before (torch's convolutions depend on it)
        for key in (slice(3, 11), slice(None, None, 4), 7, -1, np.array([5, 0, -3]), [2, 2], np.arange(23) % 3 == 0):
            np.testing.assert_array_equal(view[key], expected[key])
            if not isinstance(key, slice) or key.step is None:  # a stepped slice is a view of the whole there
                assert view[key].strides == expected[key].strides
        np.testing.assert_array_equal(view[2:6, 0], expected[2:6, 0])
        with pytest.raises(AttributeError):  # no ndarray method converts all of it behind the caller's back
            view.min()
        with pytest.raises(IndexError, match="out of range"):
            view[23]


def test_attack_run_on_the_view_is_bit_identical_with_kept_extras_and_for_a_learned_attack(exp):
    """The same ids and seed give the same scores, trace and kept outputs from the view (converted batch by
    batch) as from the whole float32 array (what Experiment.x0 was)."""
    whole = exp.images.to_unit_range()
    stat = SecMIStat(t_sec=20, k=10)  # trace on, and the large kept outputs
    keep = ("x_tilde", "x_recon")
    _same(
        stat.run(exp.target, exp.x0, ids=exp.ids, seed=3, batch_size=5, keep=keep),
        stat.run(exp.target, whole, ids=exp.ids, seed=3, batch_size=5, keep=keep),
    )
    pia = get_attack("pia", {"sweep": [10, 50]})  # noise-free, trace over a sweep
    _same(pia.run(exp.target, exp.x0, ids=exp.ids, seed=1), pia.run(exp.target, whole, ids=exp.ids, seed=1))

    def secmi_nn(x0):
        learned._LAST_INTERMEDIATES.clear()  # compute the SecMI pass afresh from these images
        attack = get_attack("secmi_nn", {"t_sec": 20, "k": 10, "epochs": 1, "min_steps": 2})
        return attack.fit_score(exp.target, x0, exp.ids, exp.is_member, seed=0, batch_size=4)

    _same(secmi_nn(exp.x0), secmi_nn(whole))


def test_the_view_is_checked_before_any_work(exp, tiny_rgb_target):
    loss = get_attack("loss", {"sweep": []})
    wrong = r"images must have shape \(N, 3, 32, 32\) for this target, got \(12, 1, 8, 8\)"
    with pytest.raises(ValueError, match=wrong):
        loss.run(tiny_rgb_target, exp.x0, ids=exp.ids)

    class Doubled(UnitRangeView):  # a view whose rows leave [-1, 1]: refused at the batch that holds them
        def _convert(self, rows):
            return super()._convert(rows) * 2

    calls = []
    with pytest.raises(ValueError, match=r"images must be in \[-1, 1\], got values in \[-2.000, 2.000\]"):
        loss.run(exp.target, Doubled(exp.images.images), ids=exp.ids, progress=lambda d, n: calls.append(d))
    assert calls == []


def test_experiment_attack_reads_one_batch_at_a_time(exp):
    """Experiment.attack (mia attack without --processes, the app's runs) never holds more than a batch of
    images: the whole set used to be converted to float32 up front (one read of all 12 rows)."""
    counting = CountingImages(np.asarray(exp.images.images))
    lazy = dataclasses.replace(exp, images=ImageSet(counting, exp.ids, "counting"))
    assert lazy.x0.shape == (12, 1, 8, 8) and counting.reads == []  # nothing read to know the shape
    res = lazy.attack([get_attack("loss", {"sweep": [10]})], seed=0, batch_size=4)["loss"]
    assert counting.reads and max(counting.reads) <= 4 and sum(counting.reads) == 12
    direct = exp.attack([get_attack("loss", {"sweep": [10]})], batch_size=4)["loss"]
    np.testing.assert_array_equal(res.scores, direct.scores)


def _one_shot_features(images: np.ndarray, size: int) -> np.ndarray:
    """blind_features as it was: all images as float64 at once."""
    arr = np.asarray(images, dtype=np.float64) / 255.0
    n, h, w, c = arr.shape
    bh, bw = h // size, w // size
    blocks = arr[:, : bh * size, : bw * size, :].reshape(n, size, bh, size, bw, c).mean(axis=(2, 4))
    flat = arr.reshape(n, -1)
    return np.concatenate([blocks.reshape(n, -1), flat.mean(1, keepdims=True), flat.std(1, keepdims=True)], axis=1)


def test_blind_features_are_computed_in_chunks_with_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(blind, "FEATURE_CHUNK", 16)
    pixels = np.random.default_rng(5).integers(0, 256, (40, 10, 9, 3), dtype=np.uint8)
    expected = _one_shot_features(pixels, 4)
    np.testing.assert_allclose(blind.blind_features(pixels, 4), expected, rtol=1e-12, atol=1e-15)
    np.savez(tmp_path / "x.npz", images=pixels)
    mapped = load_npz(tmp_path / "x.npz")
    lazy = mapped.subset(mapped.ids[::-1]).images  # memory-mapped rows, read in reverse order
    np.testing.assert_allclose(blind.blind_features(lazy, 4), expected[::-1], rtol=1e-12, atol=1e-15)
    counting = CountingImages(pixels)
    np.testing.assert_allclose(blind.blind_features(counting, 4), expected, rtol=1e-12, atol=1e-15)
    assert max(counting.reads) <= 16 and sum(counting.reads) == 40  # one chunk in memory at a time
    is_member = np.arange(40) % 2 == 0
    counting.reads.clear()
    b = blind.blind_baseline(counting, is_member, seed=0, n_bootstrap=10, size=4)
    assert max(counting.reads) <= 16
    whole = blind.blind_baseline(pixels, is_member, seed=0, n_bootstrap=10, size=4)
    np.testing.assert_array_equal(b.scores, whole.scores)


def test_learned_inputs_from_the_view_are_a_float32_tensor(exp):
    from mia_core.attacks.base import check_images

    x = check_images(exp.target, exp.x0)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), exp.images.to_unit_range())


# -- training keeps its members as uint8 ----------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_unit_range_rows_are_to_unit_range_bit_for_bit_in_the_same_layout(channels):
    from mia_core.lab.train.loop import unit_range_rows

    pixels = np.random.default_rng(channels).integers(0, 256, (9, 4, 4, channels), dtype=np.uint8)
    whole = torch.as_tensor(to_unit_range(pixels))  # what the loops indexed before
    idx = torch.tensor([4, 0, 4, 8])
    got = unit_range_rows(torch.from_numpy(pixels), idx)
    assert got.dtype == torch.float32 and torch.equal(got, whole[idx]) and got.stride() == whole[idx].stride()


def test_training_on_uint8_members_gives_the_weights_of_float32_members(tmp_path, monkeypatch):
    """The UNet loop and the latent VAE keep the members as uint8 on the device and convert each minibatch; the
    trained weights are bit for bit those of the float32 members they held before (the old code path, patched
    back in: all members converted up front, batches indexed from them)."""
    from safetensors.torch import load_file

    from mia_core.data import random_split
    from mia_core.lab.train import TrainConfig, VAEConfig, latent, loop, train, train_latent

    pixels = np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8)
    images = ImageSet(pixels, [f"{i}" for i in range(24)], "rgb")
    split = random_split(images, seed=3)
    members = images.subset(split.member_ids)
    cfg = TrainConfig(
        steps=3, batch_size=4, block_out_channels=(16, 32), layers_per_block=1, log_every=3, warmup_steps=1, seed=1
    )
    cfg = dataclasses.replace(cfg, augment="strong")
    vae_cfg = VAEConfig(steps=2, batch_size=4, block_out_channels=(8, 16), latent_channels=2, log_every=1)

    def weights(folder):
        return [load_file(str(f)) for f in sorted(folder.rglob("*.safetensors"))]

    def run(name):
        train(members, split, cfg, tmp_path / name / "pixels", device="cpu")
        plain = dataclasses.replace(cfg, augment="none")  # a latent run takes no augmentation
        train_latent(members, split, vae_cfg, plain, tmp_path / name / "latent", device="cpu")
        return weights(tmp_path / name / "pixels") + weights(tmp_path / name / "latent")

    held = []
    real = loop.device_pixels
    monkeypatch.setattr(loop, "device_pixels", lambda images, dev: held.append(real(images, dev)) or held[-1])
    monkeypatch.setattr(latent, "device_pixels", loop.device_pixels)
    new = run("uint8")
    assert held and all(t.dtype == torch.uint8 for t in held)
    old_data = lambda images, dev: torch.as_tensor(images.to_unit_range()).to(dev)  # noqa: E731
    for module in (loop, latent):
        monkeypatch.setattr(module, "device_pixels", old_data)
        monkeypatch.setattr(module, "unit_range_rows", lambda data, idx: data[idx])
    old = run("float32")
    assert len(new) == len(old) == 3  # the UNet, then the latent run's UNet and VAE
    for a, b in zip(new, old):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
