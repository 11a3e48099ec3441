"""Bounded memory for large runs: the chunked bootstrap (same numbers, O(N) memory) and memory-mapped .npz images."""

from __future__ import annotations

import mmap
import tracemalloc

import numpy as np
import pytest

from mia_core import metrics as m
from mia_core.data import load_npz


def _one_shot_intervals(scores, labels, n_bootstrap, seed):
    """The bootstrap as it was: every resample's indices drawn in two (B, n) arrays."""
    rng = np.random.default_rng(seed)
    member_idx = rng.integers(0, int(labels.sum()), size=(n_bootstrap, int(labels.sum())))
    nonmember_idx = rng.integers(0, int((~labels).sum()), size=(n_bootstrap, int((~labels).sum())))
    samples = m._resampled_metrics(scores, labels, member_idx, nonmember_idx, (0.01, 0.001))
    return {k: np.quantile(v, (0.025, 0.975)).tolist() for k, v in samples.items()}


def test_chunked_bootstrap_gives_the_one_shot_intervals(monkeypatch):
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=1500), 2)  # ties included
    labels = rng.random(1500) < 0.4
    expected = _one_shot_intervals(scores, labels, 60, seed=7)
    for chunk in (1000, 7 * 1500, 2**20):  # one resample at a time, 7 (the last chunk short), all at once
        monkeypatch.setattr(m, "BOOTSTRAP_CHUNK_ELEMENTS", chunk)
        got = m.evaluate(scores, labels, n_bootstrap=60, seed=7)
        assert got.auc_ci.to_list() == expected["auc"]
        assert got.asr_ci.to_list() == expected["asr"]
        assert got.tpr_at_1pct_fpr_ci.to_list() == expected[0.01]
        assert got.tpr_at_01pct_fpr_ci is None  # 900 non-members: 0.1 % is n/a


def test_bootstrap_memory_does_not_grow_with_resamples_times_images():
    """20,000 images, 200 resamples: the one-shot bootstrap peaked at ~215 MiB (issue 18); chunked, below 90."""
    rng = np.random.default_rng(0)
    scores, labels = rng.normal(size=20_000), rng.random(20_000) < 0.5
    tracemalloc.start()
    try:
        m.evaluate(scores, labels, n_bootstrap=200, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 90 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_uncompressed_npz_images_are_memory_mapped(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (50, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "plain.npz", images=images)
    np.savez_compressed(tmp_path / "packed.npz", images=images)
    plain, packed = load_npz(tmp_path / "plain.npz"), load_npz(tmp_path / "packed.npz")
    np.testing.assert_array_equal(plain.images[..., 0], images)
    assert plain.fingerprint == packed.fingerprint  # same pixels, same ids, however stored

    def file_backed(a):
        while a is not None and not isinstance(a, mmap.mmap):
            a = getattr(a, "base", None)
        return a is not None

    assert file_backed(plain.images) and not file_backed(packed.images)


def _rss_file_mib() -> float | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("RssFile:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def test_read_pages_of_a_memory_mapped_npz_are_let_go(tmp_path):
    """Hashing (the fingerprint) and reading batches touch every page of a memory-mapped .npz; released
    once read, they do not stay in the process's resident memory (peak RSS at 1M images, issue 18)."""
    from mia_core.data.images import release_pages

    if _rss_file_mib() is None:
        pytest.skip("no /proc/self/status RssFile here (not Linux)")
    n = 2**18  # 16 MiB of 8x8 images
    np.savez(tmp_path / "big.npz", images=np.random.default_rng(0).integers(0, 256, (n, 8, 8), dtype=np.uint8))
    images = load_npz(tmp_path / "big.npz")
    before = _rss_file_mib()
    assert images.fingerprint == load_npz(tmp_path / "big.npz").fingerprint
    assert _rss_file_mib() - before < 4, "the fingerprint left the file's pages mapped"
    batch = images.images[1000:200_000]
    assert int(batch.sum(dtype=np.int64)) > 0  # read: its pages are resident now
    touched = _rss_file_mib()
    release_pages(batch)
    assert touched - _rss_file_mib() > 5
    assert int(batch.sum(dtype=np.int64)) == int(np.asarray(images.images[1000:200_000]).sum(dtype=np.int64))
    release_pages(np.arange(10))  # an array in memory: nothing to do


def test_duplicate_check_of_many_ids_uses_little_memory():
    from mia_core.data.images import _first_duplicate

    ids = [f"img-{k:07d}" for k in range(100_000)]
    tracemalloc.start()
    try:
        assert _first_duplicate(ids) is None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(ids), f"{peak / len(ids):.0f} bytes per id"  # a set of them all: ~42
    ids[75_000], ids[85_000] = ids[60_000], ids[7]
    assert _first_duplicate(ids) == ids[60_000]  # the first id (in order) seen before
    assert _first_duplicate(ids[:80_000] + [ids[5]]) == ids[60_000]
    assert _first_duplicate(ids[:70_000] + [ids[5]]) == ids[5]
    assert _first_duplicate(list(ids[:100]) + [ids[3]]) == ids[3]  # the small path


def test_the_split_of_a_memory_mapped_npz_stays_on_disk_with_the_same_pixels_and_fingerprint(tmp_path):
    from mia_core.data import LazyImages, resolve_data

    rng = np.random.default_rng(2)
    images, is_member = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), rng.random(40) < 0.4
    np.savez(tmp_path / "plain.npz", images=images, is_member=is_member)
    np.savez_compressed(tmp_path / "packed.npz", images=images, is_member=is_member)
    mapped, split = resolve_data(str(tmp_path / "plain.npz"))
    memory, split_m = resolve_data(str(tmp_path / "packed.npz"))
    assert isinstance(mapped.images, LazyImages) and isinstance(memory.images, np.ndarray)
    assert mapped.ids == memory.ids and split.member_ids == split_m.member_ids
    assert mapped.fingerprint == memory.fingerprint  # the same pixels, however they are held
    np.testing.assert_array_equal(np.asarray(mapped.images), memory.images)
    (conv, report), (conv_m, report_m) = (s.converted(resolution=4, channels=3) for s in (mapped, memory))
    assert report == report_m and conv.lazy and conv.fingerprint == conv_m.fingerprint
    np.testing.assert_array_equal(conv.images[3:9], conv_m.images[3:9])
    sub, sub_m = (s.subset(s.ids[::-7]) for s in (conv, conv_m))
    assert sub.lazy and sub.fingerprint == sub_m.fingerprint
    np.testing.assert_array_equal(np.asarray(sub.images), sub_m.images)
