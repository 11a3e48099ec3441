"""An image folder decoded per batch: :class:`FolderImages`, the lazy images :func:`load_image_folder` returns.

Part of :mod:`mia_core.data` (its notation and design rules apply); import from there.

Listing a folder reads each file's *header* (size, PIL mode, EXIF orientation: no pixel is decoded), so the
set's shape, the size / channel checks and the conversion report are known up front, and a file that is not
an image, has an unreadable header, is empty or too large fails at listing, named. The pixels are decoded
(and converted) when rows are read: a batch at a time by the sharded scoring path, a few by the app's
galleries. Corrupt pixel data behind a good header fails at the batch that reads it, naming the file
(finding it at listing would mean decoding every file up front, which is what this avoids).

Memory per image: its id (a Python string, shared with the :class:`ImageSet`), its header shape (3 int32)
and, once the fingerprint is asked for, a 16-byte digest of its file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import (
    IMAGE_MAX_BYTES,
    Conversion,
    LazyImages,
    _convert_many,
    conversion_of_shapes,
    convert_images,
    decode_image,
    read_image_header,
)

#: (resolution, channels) of one :func:`convert_images` step, None = kept
Step = tuple[int | None, int | None]


def read_image_file(path: Path) -> np.ndarray:
    """Decode the image file at ``path`` (:func:`decode_image`): uint8 (H, W, C); ValueError naming the file."""
    # The size check before reading keeps a huge stray file out of memory.
    try:
        size = path.stat().st_size
        if size > IMAGE_MAX_BYTES:
            raise ValueError(
                f"{path}: {size / 2**20:.1f} MiB is larger than the {IMAGE_MAX_BYTES / 2**20:.0f} MiB limit per image"
            )
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err})") from err
    return decode_image(data, str(path))


@dataclass(frozen=True, eq=False)
class FolderListing:
    """The files of an image folder, as listed: ``names`` (N,) paths relative to ``folder`` (the images' ids,
    ``"a.png"`` or ``"members/a.png"``), ``shapes`` (N, 3) int32 (H, W, C) from each file's header, and
    ``digests`` (N, 16) uint8, the first 16 bytes of each file's sha256, filled when first needed."""

    folder: Path
    names: tuple[str, ...]
    shapes: np.ndarray
    digests: np.ndarray = field(init=False, repr=False)
    hashed: np.ndarray = field(init=False, repr=False)  # (N,) bool: which digests are filled

    def __post_init__(self) -> None:
        object.__setattr__(self, "digests", np.zeros((len(self.names), 16), dtype=np.uint8))
        object.__setattr__(self, "hashed", np.zeros(len(self.names), dtype=bool))

    def __reduce__(self):
        # Plain parts (a Path, strings, an array): pickled, and hashed by st.cache_data, as what they are.
        return (FolderListing, (self.folder, self.names, self.shapes))

    @classmethod
    def read(cls, folder: Path, names: Sequence[str]) -> FolderListing:
        """List ``names`` (relative to ``folder``) from their headers; ValueError naming a bad file."""
        names = tuple(names)
        shapes = np.empty((len(names), 3), dtype=np.int32)
        for k, name in enumerate(names):
            shapes[k] = read_image_header(folder / name)
        return cls(Path(folder), names, shapes)

    def digests_of(self, rows: np.ndarray) -> np.ndarray:
        """(k, 16) uint8 digests of the files ``rows``, reading (not decoding) those not read before."""
        for r in rows[~self.hashed[rows]]:
            path = self.folder / self.names[r]
            try:
                data = path.read_bytes()
            except OSError as err:
                raise ValueError(f"{path}: cannot read the file ({err})") from err
            self.digests[r] = np.frombuffer(hashlib.sha256(data).digest()[:16], dtype=np.uint8)
            self.hashed[r] = True
        return self.digests[rows]


class FolderImages(LazyImages):
    """The images of a :class:`FolderListing` (rows ``index`` of it, in that order; all when None), with the
    :func:`convert_images` steps ``steps`` applied in order as rows are decoded: the first step as
    :func:`_convert_many` does (images of several shapes), the others on the batch.

    Decoding row r checks the image against its header's shape where the conversion relies on it (a size or
    channel count the first step keeps), so a file whose pixels disagree with its header fails, named.
    """

    def __init__(
        self, listing: FolderListing, index: np.ndarray | None = None, steps: tuple[Step, ...] = ((None, None),)
    ) -> None:
        if not steps:
            raise ValueError("FolderImages needs at least one conversion step ((None, None): none)")
        self.listing = listing
        self.index = None if index is None else np.asarray(index, dtype=np.intp)
        self.steps = tuple(steps)
        shapes = self._header_shapes()
        first = shapes[0] if len(shapes) else np.zeros(3, dtype=np.int32)
        hw = None if self.steps and self.steps[0][0] is not None else tuple(int(d) for d in first[:2])
        c = None if self.steps and self.steps[0][1] is not None else int(first[2])
        self._check_uniform(shapes, hw, c)
        self._shape = (len(shapes), *self._shape_after(shapes))

    # -- shape and conversion (from the headers) ----------------------------------------------------

    def _header_shapes(self) -> np.ndarray:
        return self.listing.shapes if self.index is None else self.listing.shapes[self.index]

    def _rows_of(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.index is None else self.index[rows]

    def _check_uniform(self, shapes: np.ndarray, hw: tuple[int, int] | None, c: int | None) -> None:
        """Images that keep their size (channels) through the first step must all have one."""
        from .sources import mixed_images_error

        if hw is not None:
            bad = np.flatnonzero((shapes[:, :2] != np.asarray(hw)).any(axis=1))
            if bad.size:
                raise mixed_images_error(self._path(0), tuple(hw), self._path(bad[0]), tuple(shapes[bad[0], :2]))
        if c is not None:
            bad = np.flatnonzero(shapes[:, 2] != c)
            if bad.size:
                raise mixed_images_error(self._path(0), c, self._path(bad[0]), int(shapes[bad[0], 2]))

    def _path(self, row: int) -> str:
        return str(self.listing.folder / self.listing.names[int(self._rows_of(np.array([row]))[0])])

    def _counts(self, shapes: np.ndarray) -> list[tuple[tuple[int, int, int], int]]:
        """(shape, count) per distinct header shape, in order of first appearance (as _convert_many groups)."""
        uniq, first, counts = np.unique(shapes, axis=0, return_index=True, return_counts=True)
        order = np.argsort(first)
        return [(tuple(int(d) for d in uniq[k]), int(counts[k])) for k in order]

    def _shape_after(self, shapes: np.ndarray) -> tuple[int, int, int]:
        if not len(shapes):
            raise ValueError("no images")
        counts = self._counts(shapes)
        if not self.steps:
            return counts[0][0]
        shape, _ = conversion_of_shapes(counts, resolution=self.steps[0][0], channels=self.steps[0][1])
        for resolution, channels in self.steps[1:]:
            shape, _ = conversion_of_shapes([(shape, len(shapes))], resolution=resolution, channels=channels)
        return shape

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self._shape  # type: ignore[return-value]

    @classmethod
    def open(
        cls, listing: FolderListing, resolution: int | None = None, channels: int | None = None
    ) -> tuple[FolderImages, Conversion]:
        """All the listed images converted to ``resolution`` / ``channels`` (None: kept, and then the same for
        every image, else :class:`~mia_core.data.sources.MixedImagesError` naming two files that differ), and
        the :class:`Conversion` :func:`_convert_many` reports for their shapes."""
        images = cls(listing, None, ((resolution, channels),))
        _, conversion = conversion_of_shapes(images._counts(listing.shapes), resolution=resolution, channels=channels)
        return images, conversion

    def converted(self, resolution: int | None, channels: int | None) -> tuple[FolderImages, Conversion]:
        """One more conversion step; its :class:`Conversion` is the one :func:`convert_images` reports for
        images of this shape."""
        _, conversion = conversion_of_shapes([(self.shape[1:], len(self))], resolution=resolution, channels=channels)
        return FolderImages(self.listing, self.index, (*self.steps, (resolution, channels))), conversion

    # -- reading -------------------------------------------------------------------------------------

    def take(self, index: np.ndarray) -> FolderImages:
        return FolderImages(self.listing, self._rows_of(np.asarray(index, dtype=np.intp)), self.steps)

    def rows(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, dtype=np.intp)
        if not index.size:
            return np.empty((0, *self.shape[1:]), dtype=np.uint8)
        listing = self.listing
        first = self.steps[0] if self.steps else (None, None)
        arrays = []
        for r in self._rows_of(index):
            path = listing.folder / listing.names[r]
            arr = read_image_file(path)
            said = tuple(int(d) for d in listing.shapes[r])
            if (first[0] is None and arr.shape[:2] != said[:2]) or (first[1] is None and arr.shape[2] != said[2]):
                raise ValueError(
                    f"{path}: decoded to {arr.shape[0]}x{arr.shape[1]}, {arr.shape[2]} channel(s), but its header "
                    f"said {said[0]}x{said[1]}, {said[2]} channel(s); convert the folder's images "
                    "(resolution= / channels=) or re-save this file"
                )
            arrays.append(arr)
        out, _ = _convert_many(arrays, resolution=first[0], channels=first[1])
        for resolution, channels in self.steps[1:]:
            out, _ = convert_images(out, resolution=resolution, channels=channels)
        return np.ascontiguousarray(out)

    def hash_into(self, h) -> None:
        h.update(b"image folder files/1 " + repr(self.steps).encode("ascii"))
        n = len(self)
        for start in range(0, n, 65536):
            h.update(self.listing.digests_of(self._rows_of(np.arange(start, min(n, start + 65536)))).tobytes())

    def __reduce__(self):
        return (FolderImages, (self.listing, self.index, self.steps))

    def __repr__(self) -> str:
        n, hh, w, c = self.shape
        return f"FolderImages({self.listing.folder}, n={n}, size={hh}x{w}x{c}, steps={self.steps})"
