"""Image sets and their conversion: :class:`ImageSet`, :func:`convert_images`, decoding and uploads.

Part of :mod:`mia_core.data` (its notation and design rules apply); import from there.
"""

from __future__ import annotations

import functools
import hashlib
import io
import mmap
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DIGITS_SOURCE = "sklearn-digits"
UPLOAD_SOURCE = "upload"

IMAGE_MAX_BYTES = 20 * 1024 * 1024
IMAGE_MAX_PIXELS = 4096 * 4096

# File name suffixes read from an image folder, and the PIL decoders allowed for any input.
# Restricting PIL's decoders keeps rarely used (and rarely audited) plugins away from
# untrusted bytes. (Multi-picture camera JPEGs open through the JPEG entry as MPO.)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "GIF")

_MAX_LISTED = 5  # how many missing / offending ids an error message lists


# ----------------------------------------------------------------------------- helpers


def _list_some(items: Sequence[str]) -> str:
    """``'a', 'b', 'c' and 4 more`` for error messages."""
    shown = ", ".join(repr(x) for x in items[:_MAX_LISTED])
    rest = len(items) - _MAX_LISTED
    return shown + (f" and {rest} more" if rest > 0 else "")


def _first_duplicate(ids: Sequence[str]) -> str | None:
    """The first id (in order) that appeared before it, or None.

    Large lists are checked through an int64 array of their hashes (16 bytes per id while it runs, not a
    set of them all: ~50 bytes per id); only ids whose hashes collide are compared.
    """
    n = len(ids)
    candidates: Sequence[int] = range(n)
    if n > _HASHED_DUPLICATE_CHECK:
        hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=n)
        ordered = np.sort(hashes)
        shared = ordered[1:][ordered[1:] == ordered[:-1]]  # hash values held by two ids or more
        del ordered
        if not shared.size:
            return None
        candidates = np.flatnonzero(np.isin(hashes, shared)).tolist()  # ascending
    seen: set[str] = set()
    for k in candidates:
        i = ids[k]
        if i in seen:
            return i
        seen.add(i)
    return None


#: above this many ids, :func:`_first_duplicate` compares hashes first
_HASHED_DUPLICATE_CHECK = 50_000


def _check_positive_int(value: object, name: str) -> int:
    # bool is an int subclass; True as a resolution is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_channels(value: object, name: str = "channels") -> int:
    if isinstance(value, bool) or value not in (1, 3):
        raise ValueError(f"{name} must be 1 (grayscale) or 3 (RGB), got {value!r}")
    return int(value)  # type: ignore[arg-type]


def _size_text(h: int, w: int) -> str:
    return f"{h}x{w}"


def _channels_text(c: int) -> str:
    return "1 channel" if c == 1 else f"{c} channels"


# ----------------------------------------------------------------------------- lazy images


def int_row(key: int, n: int) -> int:
    """An int index into ``n`` images (negative = from the end) as a row number; IndexError when out of range."""
    k = int(key)
    if not -n <= k < n:
        raise IndexError(f"index {k} is out of range for {n} images")
    return k % n


def array_rows(key, n: int) -> np.ndarray:
    """An array index into ``n`` images, 1-d ints (negative = from the end) or a boolean mask of shape (n,), as
    row numbers (intp, in the key's order); IndexError naming the problem."""
    idx = np.asarray(key)
    if idx.dtype == np.bool_:
        if idx.shape != (n,):
            raise IndexError(f"a boolean mask over {n} images must have shape ({n},), got {idx.shape}")
        return np.flatnonzero(idx).astype(np.intp)
    if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
        raise IndexError(f"images are indexed by an int, a slice, 1-d ints or a mask, got {key!r:.80}")
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"an index is out of range for {n} images")
    return np.where(idx < 0, idx + n, idx).astype(np.intp)


class LazyImages:
    """uint8 images (N, H, W, C), C in {1, 3}, decoded from storage only when rows are read.

    What an :class:`ImageSet` holds in place of an in-memory array when its images are decoded on use (an image
    folder: :class:`mia_core.data.folder.FolderImages`). It reads like a read-only numpy array: ``shape``,
    ``dtype``, ``ndim``, ``len``; indexing by an int, a slice, an int array or a boolean mask (with further
    axes after it, ``images[rows, ..., 0]``) decodes just those rows and returns a numpy array; iterating
    decodes a chunk at a time; ``np.asarray(images)`` decodes them all (what a small set's figures do; a
    large run reads batches: :func:`mia_core.lab.shards.score_batches`).

    Subclasses implement ``shape``, :meth:`rows` (decode rows to an array), :meth:`take` (a lazy subset),
    :meth:`converted` (a lazy conversion) and :meth:`hash_into` (their part of :attr:`ImageSet.fingerprint`).
    """

    dtype = np.dtype(np.uint8)
    ndim = 4
    #: rows decoded at once by ``np.asarray`` and iteration
    CHUNK = 1024

    @property
    def shape(self) -> tuple[int, int, int, int]:
        raise NotImplementedError

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` ((k,) non-negative ints) decoded: uint8 (k, H, W, C)."""
        raise NotImplementedError

    def take(self, index: np.ndarray) -> LazyImages:
        """Rows ``index`` ((k,) non-negative ints, in that order) as lazy images: nothing is decoded."""
        raise NotImplementedError

    def converted(self, resolution: int | None, channels: int | None) -> tuple[LazyImages, Conversion]:
        """These images as :func:`convert_images` would convert them, converted as rows are read."""
        raise NotImplementedError

    def hash_into(self, h) -> None:
        """Update hash ``h`` with what identifies these images' pixels (:attr:`ImageSet.fingerprint`)."""
        raise NotImplementedError

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            out = self.rows(np.array([int_row(key, n)], dtype=np.intp))[0]
            return out[rest] if rest else out
        if isinstance(key, slice):
            out = self.rows(np.arange(n, dtype=np.intp)[key])
        elif key is Ellipsis:
            out = np.asarray(self)
        else:
            out = self.rows(array_rows(key, n))
        return out[(slice(None), *rest)] if rest else out

    def __iter__(self):
        for start in range(0, len(self), self.CHUNK):
            yield from self.rows(np.arange(start, min(len(self), start + self.CHUNK), dtype=np.intp))

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, dtype=np.uint8)
        for start in range(0, len(self), self.CHUNK):
            stop = min(len(self), start + self.CHUNK)
            out[start:stop] = self.rows(np.arange(start, stop, dtype=np.intp))
        return out if dtype is None else out.astype(dtype)

    def copy(self) -> np.ndarray:
        """All images decoded, as a new writable array."""
        return np.asarray(self)

    def astype(self, dtype) -> np.ndarray:
        return np.asarray(self, dtype=dtype)

    def __getattr__(self, name: str):
        # Any other ndarray method or attribute (reshape, mean, tobytes, ...) works on all the images, decoded:
        # code written for an in-memory set keeps working on a small lazy one.
        if name.startswith("_") or not hasattr(np.ndarray, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(np.asarray(self), name)


class MappedRows(LazyImages):
    """Rows ``index`` of a memory-mapped uint8 (M, H, W, C) array (an uncompressed ``.npz``'s images), in that
    order, with :func:`convert_images` steps applied as they are read: the split's subset of a file larger
    than memory, without gathering it. Its fingerprint is the one of the same pixels gathered in memory
    (the rows' converted bytes, hashed in order, a chunk at a time)."""

    def __init__(self, base: np.ndarray, index: np.ndarray, steps: tuple[tuple[int | None, int | None], ...] = ()):
        self.base = base
        self.index = np.asarray(index, dtype=np.intp)
        self.steps = tuple(steps)
        shape = tuple(int(d) for d in base.shape[1:])
        for resolution, channels in self.steps:
            shape, _ = conversion_of_shapes([(shape, 1)], resolution=resolution, channels=channels)
        self._shape = (int(self.index.size), *shape)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape  # type: ignore[return-value]

    def rows(self, index: np.ndarray) -> np.ndarray:
        wanted = self.index[np.asarray(index, dtype=np.intp)]
        out = np.asarray(self.base[wanted])
        if wanted.size:
            release_pages(self.base[int(wanted.min()) : int(wanted.max()) + 1])  # read: let the file's pages go
        for resolution, channels in self.steps:
            out, _ = convert_images(out, resolution=resolution, channels=channels)
        return np.ascontiguousarray(out)

    def take(self, index: np.ndarray) -> MappedRows:
        return MappedRows(self.base, self.index[np.asarray(index, dtype=np.intp)], self.steps)

    def converted(self, resolution: int | None, channels: int | None) -> tuple[MappedRows, Conversion]:
        _, conversion = conversion_of_shapes([(self.shape[1:], len(self))], resolution=resolution, channels=channels)
        if not conversion.changed:
            return self, conversion
        return MappedRows(self.base, self.index, (*self.steps, (resolution, channels))), conversion

    def hash_into(self, h) -> None:
        step = max(1, _HASH_CHUNK // max(1, int(np.prod(self.shape[1:]))))
        for start in range(0, len(self), step):
            h.update(self.rows(np.arange(start, min(len(self), start + step))).data)

    def __reduce__(self):
        return (MappedRows, (self.base, self.index, self.steps))


# ----------------------------------------------------------------------------- ImageSet


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with one stable string id each.

    Parameters
    ----------
    images : np.ndarray or LazyImages
        uint8, shape (N, H, W, C) with C in {1, 3} and N >= 1. The array is not copied but
        stored as a read-only view; do not modify the original afterwards (the fingerprint
        is cached). :class:`LazyImages` (an image folder) decode rows when they are read.
    ids : sequence of str
        N unique, non-empty ids, in the order of ``images``.
    source : str
        Where the images came from: ``DIGITS_SOURCE``, a file or folder path, or ``"upload"``.
    captions : sequence of str, optional
        One caption per image, in the order of ``images`` (the prompt a text-to-image model was
        trained with; "" is an empty caption), or None when the set has none. Captions are data
        but not part of :attr:`fingerprint` (pixels and ids), so a split manifest still matches
        after a caption is edited; a run conditioned on captions keys them itself
        (``mia_core.attacks.Conditioning.with_captions``).
    """

    images: np.ndarray | LazyImages
    ids: tuple[str, ...]
    source: str
    captions: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, (np.ndarray, LazyImages)):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0..255), got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must have shape (N, H, W, C) with C = 1 or 3, got {images.shape}")
        if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
            raise ValueError(f"an image set needs at least one non-empty image, got shape {images.shape}")
        ids = tuple(self.ids)
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise ValueError(f"ids must be non-empty strings, got {_list_some([repr(b) for b in bad])}")
        if len(ids) != images.shape[0]:
            raise ValueError(f"{len(ids)} ids for {images.shape[0]} images")
        dup = _first_duplicate(ids)
        if dup is not None:
            raise ValueError(f"duplicate image id {dup!r}")
        if not isinstance(self.source, str):
            raise ValueError(f"source must be a string, got {self.source!r}")
        if isinstance(images, np.ndarray):
            view = np.ascontiguousarray(images).view()
            view.flags.writeable = False
            object.__setattr__(self, "images", view)
        object.__setattr__(self, "ids", ids)
        if self.captions is not None:
            object.__setattr__(self, "captions", check_captions(self.captions, ids))

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        caps = ", captioned" if self.captions is not None else ""
        return f"ImageSet(n={n}, size={h}x{w}x{c}{caps}, source={self.source!r}, fingerprint={self.fingerprint!r})"

    def caption_of(self, image_id: str) -> str | None:
        """The caption of one image (None when the set has no captions)."""
        if self.captions is None:
            return None
        return self.captions[self.index_of()[image_id]]

    def with_captions(self, captions: Sequence[str] | None) -> ImageSet:
        """The same images with ``captions`` (one per image, in order; None removes them)."""
        return ImageSet(self.images, self.ids, self.source, None if captions is None else tuple(captions))

    @property
    def n(self) -> int:
        """Number of images N."""
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        """Image height H in pixels."""
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        """Image width W in pixels."""
        return int(self.images.shape[2])

    @property
    def resolution(self) -> int:
        """Side length in pixels of square images; ``ValueError`` if H != W."""
        if self.height != self.width:
            raise ValueError(
                f"images from {self.source} are not square ({self.height}x{self.width}); "
                "convert them with convert_images(..., resolution=...)"
            )
        return self.height

    @property
    def channels(self) -> int:
        """Channels C (1 or 3)."""
        return int(self.images.shape[3])

    @functools.cached_property
    def fingerprint(self) -> str:
        """First 16 hex digits of sha256(shape, image bytes, ids joined by newlines).

        Identifies the exact pixels *and* ids a split was drawn from, so a manifest is
        never applied to different data by accident. Lazy images hash what identifies their
        pixels without decoding them (:meth:`LazyImages.hash_into`; an image folder: its files'
        bytes and the conversions applied) in place of the pixels.
        """
        h = hashlib.sha256()
        h.update(repr(tuple(int(s) for s in self.images.shape)).encode("ascii"))
        if isinstance(self.images, LazyImages):
            self.images.hash_into(h)
        else:
            flat = self.images.reshape(-1)  # contiguous: hashed without a copy, 16 MiB at a time
            for start in range(0, flat.size, _HASH_CHUNK):
                h.update(flat[start : start + _HASH_CHUNK])
                release_pages(flat[start : start + _HASH_CHUNK])  # a memory-mapped file's pages: read, let go
        step = 65536  # "\n".join(ids), a piece at a time
        for start in range(0, len(self.ids), step):
            piece = "\n".join(self.ids[start : start + step])
            h.update((("\n" if start else "") + piece).encode("utf-8"))
        return h.hexdigest()[:16]

    def index_of(self) -> dict[str, int]:
        """Mapping id -> row index."""
        return {i: k for k, i in enumerate(self.ids)}

    def subset(self, ids: Sequence[str]) -> ImageSet:
        """The images with the given ids, in the order given.

        Raises
        ------
        ValueError
            If an id is not in this set (up to five missing ids are listed) or repeated.
        """
        ids = tuple(ids)
        index = self.index_of()
        missing = [i for i in ids if i not in index]
        if missing:
            raise ValueError(f"{len(missing)} id(s) not in the images from {self.source}: {_list_some(missing)}")
        rows = np.fromiter((index[i] for i in ids), dtype=np.intp, count=len(ids))
        del index
        captions = None if self.captions is None else tuple(self.captions[r] for r in rows)
        if isinstance(self.images, LazyImages):
            images = self.images.take(rows)
        elif _mapping_of(self.images) is not None:  # a memory-mapped file: its rows stay there until read
            images = MappedRows(self.images, rows)
        else:
            images = self.images[rows]
        return ImageSet(images=images, ids=ids, source=self.source, captions=captions)

    @property
    def lazy(self) -> bool:
        """True when the images are decoded as rows are read (:class:`LazyImages`), not held in memory."""
        return isinstance(self.images, LazyImages)

    def converted(self, *, resolution: int | None, channels: int | None) -> tuple[ImageSet, Conversion]:
        """These images converted by :func:`convert_images` (lazily for lazy images: as rows are read), the
        same ids, source and captions; and what was done."""
        if isinstance(self.images, LazyImages):
            pixels, conversion = self.images.converted(resolution, channels)
        else:
            pixels, conversion = convert_images(self.images, resolution=resolution, channels=channels)
        return ImageSet(pixels, self.ids, self.source, self.captions), conversion

    def to_unit_range(self) -> np.ndarray:
        """Images as float32 (N, C, H, W) in [-1, 1] (``x / 127.5 - 1``), the diffusion models' input range."""
        return to_unit_range(self.images)


_HASH_CHUNK = 2**24


def _mapping_of(arr: np.ndarray) -> tuple[mmap.mmap, int] | None:
    """The ``mmap.mmap`` a (view of a) memory-mapped array reads, and the address where it starts; None
    for an array in memory."""
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None:
        return None
    return base, np.frombuffer(base, dtype=np.uint8).ctypes.data


def release_pages(arr: np.ndarray) -> None:
    """Unmap the file pages behind ``arr`` (a contiguous part of a memory-mapped array, e.g. a batch of a
    memory-mapped ``.npz``'s images) from this process once they are read (``madvise(MADV_DONTNEED)``): a
    later read faults them back in from the page cache, and the process's resident memory does not grow
    by the file's size as a run reads it through. A no-op for an array in memory (and where the OS lacks
    madvise)."""
    found = _mapping_of(arr) if isinstance(arr, np.ndarray) and arr.flags.c_contiguous else None
    if found is None or not hasattr(mmap, "MADV_DONTNEED") or not arr.nbytes:
        return
    mm, start = found
    lo = arr.ctypes.data - start
    hi = min(len(mm), lo + arr.nbytes)
    lo -= lo % mmap.PAGESIZE
    hi = min(len(mm), -(-hi // mmap.PAGESIZE) * mmap.PAGESIZE)
    try:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError):  # pages still in use elsewhere or an odd mapping: they simply stay
        pass


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1] (``x / 127.5 - 1``); any rows of a set, e.g. one
    batch of a memory-mapped one (the result is the same whether converted whole or batch by batch)."""
    return _channels_first(_unit_range_hwc(np.asarray(images)))


def _unit_range_hwc(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, H, W, C) in [-1, 1], written into ``out`` when given."""
    x = images.astype(np.float32) / np.float32(127.5) if out is None else np.divide(images, np.float32(127.5), out=out)
    return np.subtract(x, np.float32(1.0), out=x)


def _channels_first(x: np.ndarray) -> np.ndarray:
    """float32 (N, H, W, C) -> (N, C, H, W), C-contiguous. For C = 1 that is a view with the strides of the
    channels-last array (numpy calls it contiguous, torch reads it as channels-last: its convolutions may round
    differently from a copy's), the layout every caller has always had: keep it, results stay bit for bit."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


class UnitRangeView:
    """uint8 images (N, H, W, C) seen as float32 (N, C, H, W) in [-1, 1], converted only as rows are read.

    The lazy form of :func:`to_unit_range` (what :attr:`mia_core.lab.experiment.Experiment.x0` returns): memory
    holds the uint8 images (an array, a memory-mapped one, or :class:`LazyImages` that decode rows on use), never
    all of them as float32 (4 bytes per pixel: 614 MB for CIFAR-10's 50,000 images). ``view[a:b]``, ``view[i]``,
    ``view[index_array]`` (or a boolean mask; further axes after it, ``view[rows, 0]``) read and convert just
    those rows, exactly as :func:`to_unit_range` converts them whole. ``shape``, ``dtype``, ``ndim``, ``len``
    read like an array's; ``np.asarray(view)`` converts everything (a chunk at a time, into one float32 array),
    for code that really needs all images at once: it says so where it does. Nothing else converts all of it
    behind the caller's back (an ndarray method is an AttributeError, not a silent 4-bytes-per-pixel copy).
    """

    dtype = np.dtype(np.float32)
    ndim = 4
    #: rows converted at once by ``np.asarray``
    CHUNK = 1024

    def __init__(self, images: np.ndarray | LazyImages) -> None:
        if not isinstance(images, (np.ndarray, LazyImages)):
            raise ValueError(f"images must be a numpy array or LazyImages, got {type(images).__name__}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must have shape (N, H, W, C) with C = 1 or 3, got {images.shape}")
        self.images = images

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n, h, w, c = (int(d) for d in self.images.shape)
        return n, c, h, w

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"UnitRangeView(shape={self.shape}, over {type(self.images).__name__})"

    def _convert(self, rows) -> np.ndarray:
        """``to_unit_range`` of ``self.images[rows]`` (rows: a slice or 1-d ints); a memory-mapped file's pages
        are let go once read."""
        batch = self.images[rows]
        out = to_unit_range(batch)
        if isinstance(batch, np.ndarray):
            release_pages(batch)
        return out

    def __getitem__(self, key) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, (bool, np.bool_)):
            k = int_row(key, n)
            out = self._convert(slice(k, k + 1))[0]
            return out[rest] if rest else out
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            out = self._convert(slice(start, stop) if step == 1 else np.arange(start, stop, step, dtype=np.intp))
        elif key is Ellipsis:
            out = np.asarray(self)
        else:
            # Each row read once, in file order; then indexed as the whole array was (the same memory layout).
            wanted, where = np.unique(array_rows(key, n), return_inverse=True)
            out = self._convert(wanted)[where.reshape(-1)]
        return out[(slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        # Row chunks converted into one channels-last array, then laid out as to_unit_range lays out the whole.
        hwc = np.empty(self.images.shape, dtype=np.float32)
        for start in range(0, len(self), self.CHUNK):
            rows = slice(start, min(len(self), start + self.CHUNK))
            batch = self.images[rows]
            _unit_range_hwc(np.asarray(batch), out=hwc[rows])
            if isinstance(batch, np.ndarray):
                release_pages(batch)
        out = _channels_first(hwc)
        return out if dtype is None else out.astype(dtype, copy=False)


def check_captions(captions: object, ids: Sequence[str], where: str = "") -> tuple[str, ...]:
    """Captions aligned with ``ids``: a sequence of N strings; ValueError naming the problem (and ``where``)."""
    prefix = f"{where}: " if where else ""
    if isinstance(captions, (str, bytes)) or not isinstance(captions, (Sequence, np.ndarray)):
        raise ValueError(f"{prefix}captions must be a list of strings, one per image, got {type(captions).__name__}")
    captions = tuple(captions)
    if len(captions) != len(ids):
        raise ValueError(f"{prefix}{len(captions)} captions for {len(ids)} images: give exactly one caption per image")
    bad = [i for i, c in zip(ids, captions) if not isinstance(c, str)]
    if bad:
        raise ValueError(f"{prefix}captions must be strings; the captions of {_list_some(bad)} are not")
    return captions


def to_uint8(x) -> np.ndarray:
    """Model-space image(s) in [-1, 1] -> uint8 0..255, channels last: the inverse of ``to_unit_range``.

    ``rint((x + 1) * 127.5)`` clipped to 0..255 (values outside [-1, 1], e.g. a noisy x_t, are
    clipped). Accepts a numpy array or a torch tensor (any device) of shape (C, H, W) or
    (N, C, H, W); returns (H, W, C) or (N, H, W, C), contiguous. The one uint8 conversion of the
    project (:mod:`mia_core.views.images` re-exports it for the pages).
    """
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if a.ndim not in (3, 4):
        raise ValueError(f"to_uint8 expects (C, H, W) or (N, C, H, W), got shape {a.shape}")
    a = np.clip(np.rint((np.asarray(a, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(a, -3, -1))


# ----------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_images` did.

    Attributes
    ----------
    changed : bool
        False when the images already had the target size and channels.
    report : str
        A sentence for people, e.g. ``"resized 32x32 -> 8x8 (Lanczos, antialiased); RGB ->
        grayscale (ITU-R 601 luma)"`` or ``"no conversion needed (8x8, 1 channel)"``.
    """

    changed: bool
    report: str


def _centre_crop(images: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Crop (N, H, W, C) to the central (N, S, S, C), S = min(H, W)."""
    h, w = images.shape[1:3]
    if h == w:
        return images, None
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    cropped = images[:, top : top + s, left : left + s, :]
    return cropped, f"centre-cropped {_size_text(h, w)} -> {_size_text(s, s)}"


def _pil_resize_each(images: np.ndarray, size: int, resample: Image.Resampling) -> np.ndarray:
    """Resize every square image of (N, S, S, C) to (N, size, size, C) with PIL."""
    out = np.empty((images.shape[0], size, size, images.shape[3]), dtype=np.uint8)
    for k, img in enumerate(images):
        # 2-D uint8 -> PIL "L", (S, S, 3) uint8 -> "RGB"
        pil = Image.fromarray(img[..., 0] if img.shape[2] == 1 else img)
        resized = np.asarray(pil.resize((size, size), resample=resample))
        out[k] = resized.reshape(size, size, images.shape[3])
    return out


def _resize_square(images: np.ndarray, resolution: int) -> tuple[np.ndarray, str | None]:
    """Resize square (N, S, S, C) images to (N, R, R, C)."""
    s = images.shape[1]
    if s == resolution:
        return images, None
    change = f"{_size_text(s, s)} -> {_size_text(resolution, resolution)}"
    if resolution < s:
        # Lanczos in PIL widens its kernel by the scale factor, i.e. it antialiases.
        return _pil_resize_each(
            images, resolution, Image.Resampling.LANCZOS
        ), f"resized {change} (Lanczos, antialiased)"
    if resolution % s == 0:
        # An integer upscale is done as exact pixel repetition: no new pixel values appear.
        k = resolution // s
        up = np.repeat(np.repeat(images, k, axis=1), k, axis=2)
        return up, f"upscaled {change} (nearest neighbour, each pixel repeated {k}x{k})"
    return _pil_resize_each(images, resolution, Image.Resampling.BICUBIC), f"upscaled {change} (bicubic)"


def _change_channels(images: np.ndarray, channels: int) -> tuple[np.ndarray, str | None]:
    """Convert (N, H, W, C) to (N, H, W, channels)."""
    c = images.shape[3]
    if c == channels:
        return images, None
    if channels == 3:
        return np.repeat(images, 3, axis=3), "grayscale -> RGB (channel repeated)"
    out = np.empty(images.shape[:3] + (1,), dtype=np.uint8)
    for k, img in enumerate(images):
        out[k, ..., 0] = np.asarray(Image.fromarray(img).convert("L"))
    return out, "RGB -> grayscale (ITU-R 601 luma)"


def convert_images(
    images: np.ndarray, *, resolution: int | None, channels: int | None
) -> tuple[np.ndarray, Conversion]:
    """Convert images to a target's resolution and channels, and say what was done.

    Steps, each reported when it changes something: a non-square image is centre-cropped
    to a square; a downscale uses PIL Lanczos (antialiased); an upscale by an integer
    factor repeats pixels (nearest neighbour, exact), any other upscale is bicubic;
    RGB -> grayscale uses PIL ``convert("L")`` (ITU-R 601-2 luma), grayscale -> RGB
    repeats the channel.

    Parameters
    ----------
    images : np.ndarray
        uint8 (N, H, W, C), C in {1, 3}.
    resolution : int or None
        Target side length R in pixels; None keeps H and W (no crop, no resize).
    channels : int or None
        Target channels, 1 or 3; None keeps C.

    Returns
    -------
    converted : np.ndarray
        uint8 (N, R, R, channels), contiguous; the input itself when nothing changed.
    conversion : Conversion
    """
    if isinstance(images, LazyImages):
        images = np.asarray(images)  # all of them, decoded (ImageSet.converted converts lazily)
    if (
        not isinstance(images, np.ndarray)
        or images.dtype != np.uint8
        or images.ndim != 4
        or images.shape[3] not in (1, 3)
    ):
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"convert_images needs uint8 (N, H, W, C) with C = 1 or 3, got {dtype} {shape}")
    if resolution is not None:
        resolution = _check_positive_int(resolution, "resolution")
    if channels is not None:
        channels = _check_channels(channels)

    steps: list[str] = []
    out = images
    if resolution is not None:
        out, step = _centre_crop(out)
        steps += [step] if step else []
        out, step = _resize_square(out, resolution)
        steps += [step] if step else []
    if channels is not None:
        out, step = _change_channels(out, channels)
        steps += [step] if step else []

    if not steps:
        h, w, c = images.shape[1:]
        return images, Conversion(False, f"no conversion needed ({_size_text(h, w)}, {_channels_text(c)})")
    return np.ascontiguousarray(out), Conversion(True, "; ".join(steps))


def _convert_many(
    arrays: Sequence[np.ndarray], *, resolution: int | None, channels: int | None
) -> tuple[np.ndarray, Conversion]:
    """Convert images of possibly different shapes (each uint8 (H, W, C)) to one (N, R, R, C') array.

    Images are grouped by shape so each group is one :func:`convert_images` call; the
    reports of groups that changed are joined, prefixed with their image counts when
    there is more than one group.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, a in enumerate(arrays):
        groups.setdefault(a.shape, []).append(k)

    results: dict[int, np.ndarray] = {}
    reports: list[tuple[int, Conversion]] = []
    for rows in groups.values():
        converted, conv = convert_images(np.stack([arrays[k] for k in rows]), resolution=resolution, channels=channels)
        results.update(zip(rows, converted))
        reports.append((len(rows), conv))

    shapes = {r.shape for r in results.values()}
    if len(shapes) != 1:  # only possible when resolution/channels is None; callers check first
        raise ValueError(f"images still differ in shape after conversion: {sorted(shapes)}")
    stacked = np.stack([results[k] for k in range(len(arrays))])

    return stacked, _joined_groups(reports)


def _joined_groups(reports: Sequence[tuple[int, Conversion]]) -> Conversion:
    """One Conversion for the (count, Conversion) of each group of same-shaped images (:func:`_convert_many`)."""
    changed = [(count, conv) for count, conv in reports if conv.changed]
    if not changed:
        return reports[0][1]
    if len(reports) == 1:
        return changed[0][1]
    total = sum(count for count, _ in reports)
    return Conversion(True, "; ".join(f"{count} of {total} images: {conv.report}" for count, conv in changed))


def conversion_of_shapes(
    counts: Sequence[tuple[tuple[int, int, int], int]], *, resolution: int | None, channels: int | None
) -> tuple[tuple[int, int, int], Conversion]:
    """What :func:`_convert_many` does to images of these shapes, without their pixels: ``counts`` holds
    ((H, W, C), how many) per shape, in order of first appearance. Returns the (H, W, C) after conversion
    and the same :class:`Conversion` (its report depends on the shapes alone; one black image per shape is
    converted to find it). ValueError when the shapes still differ after conversion."""
    reports, shapes = [], set()
    for shape, count in counts:
        converted, conv = convert_images(
            np.zeros((1, *shape), dtype=np.uint8), resolution=resolution, channels=channels
        )
        reports.append((int(count), conv))
        shapes.add(tuple(int(d) for d in converted.shape[1:]))
    if len(shapes) != 1:
        raise ValueError(f"images still differ in shape after conversion: {sorted(shapes)}")
    return shapes.pop(), _joined_groups(reports)


# ----------------------------------------------------------------------------- decoding


def _to_uint8_gray(arr: np.ndarray) -> np.ndarray:
    """32-bit int / 16-bit / float grayscale (H, W) -> uint8; values above 255 are taken as 16-bit."""
    arr = np.clip(arr.astype(np.float64), 0, None)
    if arr.size and arr.max() > 255:
        arr = np.clip(arr / 257.0, 0, 255)  # 65535 / 257 = 255
    return np.round(arr).astype(np.uint8)


def _composite_on_white(img: Image.Image) -> Image.Image:
    """RGBA with transparency flattened onto a white background, as RGB."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """A loaded PIL image as uint8 (H, W, C): grayscale modes give C = 1, all others RGB."""
    mode = img.mode
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in img.info
    if mode in ("1", "L", "LA", "La"):
        gray = _composite_on_white(img).convert("L") if has_alpha else img.convert("L")
        return np.asarray(gray, dtype=np.uint8)[..., None]
    if mode.startswith("I") or mode == "F":
        return _to_uint8_gray(np.asarray(img))[..., None]
    rgb = _composite_on_white(img) if has_alpha else img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8)


def _exif_upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says (itself when there is no tag)."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception:  # a malformed EXIF block: keep the pixels as stored
        return img


def decode_image(data: bytes, name: str, *, max_pixels: int | None = None, limit_text: str = "") -> np.ndarray:
    """Decode one untrusted image file.

    Parameters
    ----------
    data : bytes
        The file's content (PNG, JPEG, BMP, WebP or GIF).
    name : str
        The file's name, used in error messages.

    Returns
    -------
    np.ndarray
        uint8 (H, W, C): C = 1 for grayscale modes ("1", "L", "LA", "I", "I;16", "F"),
        C = 3 for everything else. Transparent pixels are composited on white before the
        alpha channel is dropped; an animated image gives its first frame.

    Raises
    ------
    ValueError
        Naming the file and the reason: empty, more than ``IMAGE_MAX_BYTES`` bytes, more than
        ``IMAGE_MAX_PIXELS`` pixels (checked from the header, before pixels are decoded),
        not a supported image, or corrupt / truncated. ``max_pixels`` (default
        ``IMAGE_MAX_PIXELS``) lowers the pixel limit, e.g. to what is left of a request's budget;
        ``limit_text`` then says which limit it is.

    The EXIF orientation tag is applied (a phone photo taken upright is returned upright).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name}: expected the file's bytes, got {type(data).__name__}")
    _check_file_size(memoryview(data).nbytes, name)

    with warnings.catch_warnings():
        # PIL only warns between its own limit and twice that; make the warning a refusal too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = _open_image(io.BytesIO(data), name)
        with img:
            _check_pixels(img, name, max_pixels, limit_text)
            try:
                img.seek(0)  # animated: first frame
                img.load()  # decode now, so corrupt / truncated data fails here
                return _pil_to_array(_exif_upright(img))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise ValueError(f"{name}: too many pixels ({err})") from err
            except Exception as err:
                raise ValueError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err})") from err


def _open_image(fp, name: str) -> Image.Image:
    """``Image.open`` restricted to the allowed decoders (header only); ValueError naming ``name``.
    Call it with ``Image.DecompressionBombWarning`` turned into an error."""
    try:
        return Image.open(fp, formats=_PIL_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ValueError(f"{name}: too many pixels ({err})") from err
    except UnidentifiedImageError as err:
        raise ValueError(f"{name}: not a supported image (PNG, JPEG, BMP, WebP or GIF)") from err
    except Exception as err:  # PIL raises many types on hostile headers
        raise ValueError(f"{name}: unreadable image header ({type(err).__name__}: {err})") from err


def _check_pixels(img: Image.Image, name: str, max_pixels: int | None, limit_text: str) -> None:
    """The header's size against the pixel limit (see :func:`decode_image`); ValueError naming ``name``."""
    w, h = img.size
    limit = IMAGE_MAX_PIXELS if max_pixels is None else min(IMAGE_MAX_PIXELS, max_pixels)
    if w * h > limit:
        what = limit_text or f"the {limit:,} pixel limit"
        raise ValueError(f"{name}: {w}x{h} = {w * h:,} pixels is more than {what}")
    if w == 0 or h == 0:
        raise ValueError(f"{name}: the image has no pixels ({w}x{h})")


def _check_file_size(size: int, name: str) -> None:
    if size == 0:
        raise ValueError(f"{name}: the file is empty")
    if size > IMAGE_MAX_BYTES:
        raise ValueError(
            f"{name}: {size / 2**20:.1f} MiB is larger than the {IMAGE_MAX_BYTES / 2**20:.0f} MiB limit per image"
        )


#: PIL modes that :func:`decode_image` returns with one channel (all other modes give RGB).
_GRAY_MODES = ("1", "L", "LA", "La", "F")


def _header_orientation(img: Image.Image) -> int | None:
    """The EXIF orientation tag an opened (not decoded) image carries in its header, or None."""
    raw = img.info.get("exif")
    if not raw:
        return None
    try:
        exif = Image.Exif()
        exif.load(raw)
        return int(exif.get(0x0112) or 0) or None
    except Exception:  # a malformed EXIF block: decode_image keeps the pixels as stored too
        return None


def read_image_header(path: str | Path) -> tuple[int, int, int]:
    """(H, W, C) of the array :func:`decode_image` returns for the file at ``path``, read from its header
    alone (no pixel is decoded): C from the PIL mode (grayscale modes 1, others 3), H and W swapped when the
    header's EXIF orientation turns the image by 90 degrees.

    Raises ValueError naming the file for everything :func:`decode_image` refuses before decoding pixels:
    an unreadable, empty or too large file, an unsupported format, an unreadable header, too many pixels.
    Corrupt pixel data behind a good header is only found when the file is decoded.
    """
    path = Path(path)
    name = str(path)
    try:
        _check_file_size(path.stat().st_size, name)
        f = open(path, "rb")  # noqa: SIM115 (closed below, after PIL has read the header)
    except OSError as err:
        raise ValueError(f"{name}: cannot read the file ({err})") from err
    with f, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = _open_image(f, name)
        with img:
            _check_pixels(img, name, None, "")
            w, h = img.size
            mode = img.mode
            c = 1 if mode in _GRAY_MODES or mode.startswith("I") else 3
            if _header_orientation(img) in (5, 6, 7, 8):  # transposed or turned by 90 degrees
                w, h = h, w
    return h, w, c


# ----------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadResult:
    """Uploaded files after decoding and conversion.

    Attributes
    ----------
    images : ImageSet or None
        The files that decoded, converted to the requested (resolution, channels), in upload
        order; ids are the file names (a repeated name gets ``#2``, ``#3``, ...). None if no
        file decoded.
    errors : tuple of str
        One message per rejected file.
    conversion : Conversion
    """

    images: ImageSet | None
    errors: tuple[str, ...]
    conversion: Conversion


def _unique_name(name: str, used: set[str]) -> str:
    if name not in used:
        return name
    k = 2
    while f"{name}#{k}" in used:
        k += 1
    return f"{name}#{k}"


#: decoded pixels one upload request may cost in all (the files' own sizes, before conversion):
#: two images of the largest allowed size, or e.g. 128 photos of 512 x 512.
UPLOAD_MAX_TOTAL_PIXELS = 2 * IMAGE_MAX_PIXELS
#: converted uploads kept by content hash (each is only R x R x C bytes), so a rerun (another FPR
#: budget, another attack) decodes nothing again.
UPLOAD_CACHE_ENTRIES = 512
_upload_cache: OrderedDict[tuple[str, int, int], tuple[np.ndarray, str]] = OrderedDict()
_upload_cache_lock = threading.Lock()


def upload_limits_text(max_files: int | None = None) -> str:
    """The upload limits in one sentence, for the page that takes uploads."""
    files = f"at most {max_files} files, " if max_files else ""
    return (
        f"Limits per request: {files}{IMAGE_MAX_BYTES / 2**20:.0f} MiB and {IMAGE_MAX_PIXELS / 2**20:.0f} "
        f"megapixels per image, {UPLOAD_MAX_TOTAL_PIXELS / 2**20:.0f} megapixels in all (decoded pixels)."
    )


def check_upload_pixels(files: Sequence[tuple[str, bytes]], max_total_pixels: int | None = None) -> int:
    """The pixels ``files`` would decode to, read from their headers only; ValueError (naming the
    total and the limit) above ``max_total_pixels`` (default ``UPLOAD_MAX_TOTAL_PIXELS``).
    Unreadable headers count 0 here: decoding reports them."""
    limit = UPLOAD_MAX_TOTAL_PIXELS if max_total_pixels is None else int(max_total_pixels)
    total = 0
    for entry in files:  # (name, bytes) or (name, bytes, caption)
        data = entry[1]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as img:
                    total += img.size[0] * img.size[1]
        except Exception:
            continue
    if total > limit:
        raise ValueError(
            f"{len(files)} files hold {total:,} pixels; one request may decode at most {limit:,} "
            f"({limit / 2**20:.0f} megapixels): upload fewer or smaller images"
        )
    return total


def _decode_converted(
    data: bytes, name: str, resolution: int, channels: int, max_pixels: int, limit_text: str
) -> tuple[np.ndarray, str, int]:
    """One upload decoded and converted at once: ((R, R, C) uint8, its conversion report, pixels decoded).

    Cached by content hash: a file seen before costs no decoding (0 pixels)."""
    key = (hashlib.sha256(data).hexdigest(), resolution, channels)
    with _upload_cache_lock:
        hit = _upload_cache.get(key)
        if hit is not None:
            _upload_cache.move_to_end(key)
            return hit[0], hit[1], 0
    arr = decode_image(data, name, max_pixels=max_pixels, limit_text=limit_text)
    pixels = arr.shape[0] * arr.shape[1]
    converted, conversion = convert_images(arr[None], resolution=resolution, channels=channels)
    del arr  # only the small converted image outlives this call: peak memory is one full-size image
    small = np.ascontiguousarray(converted[0])
    small.setflags(write=False)
    with _upload_cache_lock:
        _upload_cache[key] = (small, conversion.report)
        while len(_upload_cache) > UPLOAD_CACHE_ENTRIES:
            _upload_cache.popitem(last=False)
    return small, conversion.report, pixels


def load_uploads(
    files: Sequence[tuple[str, bytes] | tuple[str, bytes, str | None]],
    *,
    resolution: int,
    channels: int,
    max_total_pixels: int = UPLOAD_MAX_TOTAL_PIXELS,
) -> UploadResult:
    """Decode uploaded files, keep the good ones and report the bad ones.

    Each file is decoded and converted on its own (peak memory: one full-size image, whatever
    the number of files), at most ``max_total_pixels`` pixels are decoded per call (a file
    that would pass that is refused, from its header, before it is decoded), and files seen
    before come from a cache by content hash.

    Parameters
    ----------
    files : sequence of (name, bytes) or (name, bytes, caption)
        With a caption for any file, the set has captions (a file without one gets "").
    resolution : int
        Target side length in pixels.
    channels : int
        Target channels, 1 or 3.
    max_total_pixels : int
        Budget of decoded pixels for this call (default ``UPLOAD_MAX_TOTAL_PIXELS``).
    """
    resolution = _check_positive_int(resolution, "resolution")
    channels = _check_channels(channels)
    arrays: list[np.ndarray] = []
    reports: list[str] = []
    ids: list[str] = []
    used: set[str] = set()
    errors: list[str] = []
    captions: list[str] = []
    any_caption = False
    left = int(max_total_pixels)
    for k, entry in enumerate(files):
        name, data = entry[0], entry[1]
        caption = entry[2] if len(entry) > 2 else None
        if caption is not None and not isinstance(caption, str):
            raise ValueError(f"{name}: the caption must be a string, got {type(caption).__name__}")
        name = str(name) or f"upload-{k + 1}"
        limit_text = f"what is left of the {max_total_pixels:,} pixels one request may decode ({max(0, left):,})"
        try:
            arr, report, pixels = _decode_converted(data, name, resolution, channels, max(0, left), limit_text)
        except ValueError as err:
            errors.append(str(err))
            continue
        left -= pixels
        uid = _unique_name(name, used)
        used.add(uid)
        ids.append(uid)
        arrays.append(arr)
        reports.append(report)
        captions.append(caption or "")
        any_caption = any_caption or caption is not None
    if not arrays:
        return UploadResult(None, tuple(errors), Conversion(False, "no images decoded"))
    images = ImageSet(np.stack(arrays), tuple(ids), UPLOAD_SOURCE, tuple(captions) if any_caption else None)
    return UploadResult(images, tuple(errors), _joined(reports))


def _joined(reports: Sequence[str]) -> Conversion:
    """One Conversion for per-image reports: "k of N images: ..." per distinct change."""
    counts: dict[str, int] = {}
    for r in reports:
        counts[r] = counts.get(r, 0) + 1
    changed = {r: c for r, c in counts.items() if not r.startswith("no conversion needed")}
    if not changed:
        return Conversion(False, reports[0])
    if len(counts) == 1:
        return Conversion(True, reports[0])
    return Conversion(True, "; ".join(f"{c} of {len(reports)} images: {r}" for r, c in changed.items()))
