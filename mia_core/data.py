"""Image sets, membership splits and the conversions between them.

An attack needs two things from this module: the candidate images (an :class:`ImageSet`)
and which of them the target was trained on (a :class:`Split`, stored as a small JSON
manifest). Images come from scikit-learn's bundled digits, an ``.npz`` file, an image
folder or uploaded files; :func:`resolve_data` turns the CLI's ``--data`` string into both.

Notation
--------
N       number of images
H, W    height and width in pixels (sizes are written ``HxW``)
C       channels, 1 (grayscale) or 3 (RGB)
uint8   pixel values 0..255; every stored image set is uint8 (N, H, W, C), channels last
id      a stable string naming one image (``"digits-0042"``, ``"members/cat.png"``, ``"17"``)

Design rules
------------
* Nothing is converted silently: :func:`convert_images` returns a :class:`Conversion` whose
  ``report`` says what was done (crop, resize filter, channel change) so the UI can show it.
* Untrusted input is decoded defensively: ``.npz`` files are opened with
  ``allow_pickle=False`` and uploads are size-checked before their pixels are decoded.
* Every input problem raises ``ValueError`` with a message naming the bad file or value,
  so a CLI or UI can show ``str(error)`` as is.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ASSETS_DIR",
    "DEFAULT_SPLIT_PATH",
    "DIGITS_SOURCE",
    "IMAGE_MAX_BYTES",
    "IMAGE_MAX_PIXELS",
    "IMAGE_SUFFIXES",
    "SPLIT_FORMAT",
    "Conversion",
    "ImageSet",
    "Split",
    "UploadResult",
    "convert_images",
    "decode_image",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "load_source",
    "load_uploads",
    "random_split",
    "resolve_data",
]

ASSETS_DIR: Path = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_SPLIT_PATH: Path = ASSETS_DIR / "default_target" / "split.json"
DIGITS_SOURCE = "sklearn-digits"
UPLOAD_SOURCE = "upload"
SPLIT_FORMAT = "mia-split/1"

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
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


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


# ----------------------------------------------------------------------------- ImageSet


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Images with one stable string id each.

    Parameters
    ----------
    images : np.ndarray
        uint8, shape (N, H, W, C) with C in {1, 3} and N >= 1. The array is not copied but
        stored as a read-only view; do not modify the original afterwards (the fingerprint
        is cached).
    ids : sequence of str
        N unique, non-empty ids, in the order of ``images``.
    source : str
        Where the images came from: ``DIGITS_SOURCE``, a file or folder path, or ``"upload"``.
    """

    images: np.ndarray
    ids: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray):
            raise ValueError(f"images must be a numpy array, got {type(images).__name__}")
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (0..255), got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"images must have shape (N, H, W, C) with C = 1 or 3, got {images.shape}"
            )
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
        view = np.ascontiguousarray(images).view()
        view.flags.writeable = False
        object.__setattr__(self, "images", view)
        object.__setattr__(self, "ids", ids)

    def __repr__(self) -> str:
        n, h, w, c = self.images.shape
        return f"ImageSet(n={n}, size={h}x{w}x{c}, source={self.source!r}, fingerprint={self.fingerprint!r})"

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
        never applied to different data by accident.
        """
        h = hashlib.sha256()
        h.update(repr(tuple(int(s) for s in self.images.shape)).encode("ascii"))
        h.update(self.images.data)  # contiguous: hashed without a copy
        h.update("\n".join(self.ids).encode("utf-8"))
        return h.hexdigest()[:16]

    def index_of(self) -> dict[str, int]:
        """Mapping id -> row index."""
        return {i: k for k, i in enumerate(self.ids)}

    def subset(self, ids: Sequence[str]) -> "ImageSet":
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
        return ImageSet(images=self.images[rows], ids=ids, source=self.source)

    def to_unit_range(self) -> np.ndarray:
        """Images as float32 (N, C, H, W) in [-1, 1] (``x / 127.5 - 1``), the diffusion models' input range."""
        x = self.images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


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
        return _pil_resize_each(images, resolution, Image.Resampling.LANCZOS), f"resized {change} (Lanczos, antialiased)"
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
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
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

    changed = [(count, conv) for count, conv in reports if conv.changed]
    if not changed:
        return stacked, reports[0][1]
    if len(reports) == 1:
        return stacked, changed[0][1]
    total = len(arrays)
    text = "; ".join(f"{count} of {total} images: {conv.report}" for count, conv in changed)
    return stacked, Conversion(True, text)


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


def decode_image(data: bytes, name: str) -> np.ndarray:
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
        not a supported image, or corrupt / truncated.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name}: expected the file's bytes, got {type(data).__name__}")
    size = memoryview(data).nbytes
    if size == 0:
        raise ValueError(f"{name}: the file is empty")
    if size > IMAGE_MAX_BYTES:
        raise ValueError(
            f"{name}: {size / 2**20:.1f} MiB is larger than the {IMAGE_MAX_BYTES / 2**20:.0f} MiB limit per image"
        )

    with warnings.catch_warnings():
        # PIL only warns between its own limit and twice that; make the warning a refusal too.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(f"{name}: too many pixels ({err})") from err
        except UnidentifiedImageError as err:
            raise ValueError(f"{name}: not a supported image (PNG, JPEG, BMP, WebP or GIF)") from err
        except Exception as err:  # PIL raises many types on hostile headers
            raise ValueError(f"{name}: unreadable image header ({type(err).__name__}: {err})") from err

        with img:
            w, h = img.size
            if w * h > IMAGE_MAX_PIXELS:
                raise ValueError(
                    f"{name}: {w}x{h} = {w * h:,} pixels is more than the {IMAGE_MAX_PIXELS:,} pixel limit"
                )
            if w == 0 or h == 0:
                raise ValueError(f"{name}: the image has no pixels ({w}x{h})")
            try:
                img.seek(0)  # animated: first frame
                img.load()  # decode now, so corrupt / truncated data fails here
                return _pil_to_array(img)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise ValueError(f"{name}: too many pixels ({err})") from err
            except Exception as err:
                raise ValueError(f"{name}: corrupt or truncated image ({type(err).__name__}: {err})") from err


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


def load_uploads(files: Sequence[tuple[str, bytes]], *, resolution: int, channels: int) -> UploadResult:
    """Decode uploaded files, keep the good ones and report the bad ones.

    Parameters
    ----------
    files : sequence of (name, bytes)
    resolution : int
        Target side length in pixels.
    channels : int
        Target channels, 1 or 3.
    """
    resolution = _check_positive_int(resolution, "resolution")
    channels = _check_channels(channels)
    arrays: list[np.ndarray] = []
    ids: list[str] = []
    used: set[str] = set()
    errors: list[str] = []
    for k, (name, data) in enumerate(files):
        name = str(name) or f"upload-{k + 1}"
        try:
            arr = decode_image(data, name)
        except ValueError as err:
            errors.append(str(err))
            continue
        uid = _unique_name(name, used)
        used.add(uid)
        ids.append(uid)
        arrays.append(arr)
    if not arrays:
        return UploadResult(None, tuple(errors), Conversion(False, "no images decoded"))
    stacked, conversion = _convert_many(arrays, resolution=resolution, channels=channels)
    return UploadResult(ImageSet(stacked, tuple(ids), UPLOAD_SOURCE), tuple(errors), conversion)


# ----------------------------------------------------------------------------- Split


def _check_id_list(ids: object, name: str) -> tuple[str, ...]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Sequence):
        raise ValueError(f"{name} must be a list of ids, got {type(ids).__name__}")
    ids = tuple(ids)
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise ValueError(f"{name} must hold non-empty strings; bad entries: {_list_some([repr(b) for b in bad])}")
    if not ids:
        raise ValueError(f"{name} is empty; a split needs at least one member and one non-member")
    dup = _first_duplicate(ids)
    if dup is not None:
        raise ValueError(f"{name} lists {dup!r} twice")
    return ids


@dataclass(frozen=True)
class Split:
    """Which images are members (in the target's training set) and which are not.

    Attributes
    ----------
    member_ids, nonmember_ids : tuple of str
        Disjoint, non-empty, without duplicates. Order matters: :meth:`limit` keeps the first n.
    seed : int or None
        The seed of :func:`random_split`; None when the split was given (folders, ``is_member``).
    data_fingerprint : str
        :attr:`ImageSet.fingerprint` of the whole image set the ids refer to.
    source : str
        How to load the images back: ``DIGITS_SOURCE`` or a path to an ``.npz`` file or image
        folder (a relative path is relative to the manifest's folder).
    description : str
    """

    member_ids: tuple[str, ...]
    nonmember_ids: tuple[str, ...]
    seed: int | None
    data_fingerprint: str
    source: str
    description: str = ""

    def __post_init__(self) -> None:
        members = _check_id_list(self.member_ids, "member_ids")
        nonmembers = _check_id_list(self.nonmember_ids, "nonmember_ids")
        overlap = set(members).intersection(nonmembers)
        if overlap:
            ordered = [i for i in members if i in overlap]
            raise ValueError(f"{len(overlap)} id(s) are both member and non-member: {_list_some(ordered)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None, got {self.seed!r}")
        if not isinstance(self.data_fingerprint, str) or not self.data_fingerprint:
            raise ValueError(f"data_fingerprint must be a non-empty string, got {self.data_fingerprint!r}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError(f"source must be a non-empty string, got {self.source!r}")
        if not isinstance(self.description, str):
            raise ValueError(f"description must be a string, got {self.description!r}")
        object.__setattr__(self, "member_ids", members)
        object.__setattr__(self, "nonmember_ids", nonmembers)
        object.__setattr__(self, "seed", None if self.seed is None else int(self.seed))

    def __repr__(self) -> str:
        return (
            f"Split(n_members={self.n_members}, n_nonmembers={self.n_nonmembers}, seed={self.seed}, "
            f"data_fingerprint={self.data_fingerprint!r}, source={self.source!r})"
        )

    @property
    def n_members(self) -> int:
        return len(self.member_ids)

    @property
    def n_nonmembers(self) -> int:
        return len(self.nonmember_ids)

    def to_dict(self) -> dict:
        """JSON-ready manifest with ``"format": "mia-split/1"``."""
        return {
            "format": SPLIT_FORMAT,
            "member_ids": list(self.member_ids),
            "nonmember_ids": list(self.nonmember_ids),
            "seed": self.seed,
            "data_fingerprint": self.data_fingerprint,
            "source": self.source,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        """Inverse of :meth:`to_dict`; ``ValueError`` on a wrong ``format`` or missing keys.

        Integer ids (hand-written manifests for an ``.npz`` without ids) are read as strings.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a split manifest must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format")
        if fmt != SPLIT_FORMAT:
            raise ValueError(f"unsupported split format {fmt!r}; expected {SPLIT_FORMAT!r}")
        missing = [k for k in ("member_ids", "nonmember_ids", "data_fingerprint", "source") if k not in d]
        if missing:
            raise ValueError(f"split manifest lacks {', '.join(missing)}")

        def ids(key: str) -> object:
            value = d[key]
            if isinstance(value, list):
                return [str(i) if isinstance(i, int) and not isinstance(i, bool) else i for i in value]
            return value

        return cls(
            member_ids=ids("member_ids"),  # type: ignore[arg-type]
            nonmember_ids=ids("nonmember_ids"),  # type: ignore[arg-type]
            seed=d.get("seed"),
            data_fingerprint=d["data_fingerprint"],
            source=d["source"],
            description=d.get("description", ""),
        )

    def save(self, path: str | Path) -> None:
        """Write the manifest as JSON (indent 1), creating parent folders."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Split":
        """Read a manifest written by :meth:`save`; ``ValueError`` naming the file on any problem."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"split manifest {path} does not exist" if not path.exists() else f"split manifest {path} is not a file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"split manifest {path} is not valid JSON: {err}") from err
        try:
            return cls.from_dict(d)
        except ValueError as err:
            raise ValueError(f"split manifest {path}: {err}") from err

    def check_against(self, images: ImageSet) -> None:
        """Raise ``ValueError`` unless ``images`` is the data this split was drawn from."""
        if images.fingerprint != self.data_fingerprint:
            raise ValueError(
                f"the split was made for data with fingerprint {self.data_fingerprint}, but the images "
                f"from {images.source} have fingerprint {images.fingerprint}"
            )
        known = set(images.ids)
        missing = [i for i in self.member_ids + self.nonmember_ids if i not in known]
        if missing:
            raise ValueError(f"{len(missing)} id(s) of the split are not in the images from {images.source}: {_list_some(missing)}")

    def limit(self, n: int) -> "Split":
        """The first n members and first n non-members (manifest order is already random).

        Fewer are kept where a side has fewer than n. Seed, fingerprint, source and
        description are unchanged.
        """
        n = _check_positive_int(n, "n")
        return Split(
            member_ids=self.member_ids[:n],
            nonmember_ids=self.nonmember_ids[:n],
            seed=self.seed,
            data_fingerprint=self.data_fingerprint,
            source=self.source,
            description=self.description,
        )

    def labelled(self) -> tuple[tuple[str, ...], np.ndarray]:
        """``(member ids + non-member ids, is_member)``, is_member bool (n_members + n_nonmembers,)."""
        ids = self.member_ids + self.nonmember_ids
        is_member = np.zeros(len(ids), dtype=bool)
        is_member[: self.n_members] = True
        return ids, is_member


def random_split(images: ImageSet, *, member_fraction: float = 0.5, seed: int = 0, description: str = "") -> Split:
    """Draw members uniformly at random.

    ``perm = np.random.default_rng(seed).permutation(N)``; the first ``floor(N *
    member_fraction)`` of ``perm`` are members, the rest non-members, both in permuted
    order (so :meth:`Split.limit` takes a random subset). 1,797 digits give 898 / 899.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if not 0.0 < float(member_fraction) < 1.0:
        raise ValueError(f"member_fraction must be strictly between 0 and 1, got {member_fraction!r}")
    n = images.n
    n_members = math.floor(n * member_fraction)
    if n_members < 1 or n_members >= n:
        raise ValueError(
            f"member_fraction {member_fraction} of {n} images leaves {n_members} members and "
            f"{n - n_members} non-members; both need at least one"
        )
    perm = np.random.default_rng(int(seed)).permutation(n)
    ids = images.ids
    return Split(
        member_ids=tuple(ids[k] for k in perm[:n_members]),
        nonmember_ids=tuple(ids[k] for k in perm[n_members:]),
        seed=int(seed),
        data_fingerprint=images.fingerprint,
        source=images.source,
        description=description,
    )


# ----------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=1)
def _digits_values() -> np.ndarray:
    """scikit-learn's digits as float (1797, 8, 8), 0..16, read from the file scikit-learn ships.

    Reading ``sklearn/datasets/data/digits.csv.gz`` directly skips importing scikit-learn (0.7 s,
    most of the app's first page load); ``sklearn.datasets.load_digits`` is the fallback.
    """
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
        if path.exists():
            with gzip.open(path, "rt") as fh:
                table = np.loadtxt(fh, delimiter=",", dtype=np.float64)  # 64 pixels + the label per row
            return table[:, :64].reshape(-1, 8, 8)
    from sklearn.datasets import load_digits as _sk_load_digits

    return _sk_load_digits().images


def _digits_uint8() -> np.ndarray:
    values = _digits_values()  # float64 (1797, 8, 8), 0..16
    arr = np.round(values * 255.0 / 16.0).astype(np.uint8)[..., None]
    arr.flags.writeable = False
    return arr


def load_digits() -> ImageSet:
    """scikit-learn's bundled 8x8 digits: uint8 (1797, 8, 8, 1), ids ``digits-0000`` .. ``digits-1796``.

    Values 0..16 become ``round(v * 255 / 16)``. Nothing is downloaded.
    """
    arr = _digits_uint8()
    ids = tuple(f"digits-{k:04d}" for k in range(arr.shape[0]))
    return ImageSet(arr, ids, DIGITS_SOURCE)


def _npz_array(npz: "np.lib.npyio.NpzFile", key: str, path: Path) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as err:
        if "pickle" not in str(err).lower():
            raise ValueError(f"{path}: cannot read array {key!r} ({err})") from err
        # numpy refuses object (pickled) arrays when allow_pickle=False; we never unpickle.
        raise ValueError(
            f"{path}: array {key!r} is a pickled object array, which is refused (it could run code); "
            "store images as uint8 and ids as a string array"
        ) from err
    except Exception as err:
        raise ValueError(f"{path}: cannot read array {key!r} ({type(err).__name__}: {err})") from err


def _images_from_array(arr: np.ndarray, path: Path) -> np.ndarray:
    """Validate the ``images`` array of an ``.npz``; (N, H, W) becomes (N, H, W, 1)."""
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        raise ValueError(
            f"{path}: images are {arr.dtype} (values {lo:g}..{hi:g}); store them as uint8 0..255, "
            "e.g. np.round(x * 255).astype(np.uint8) for values in [0, 1]"
        )
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            raise ValueError(f"{path}: images must be uint8, got {arr.dtype}")
        # A lossless cast only: other integer types are accepted when every value fits.
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{path}: images are {arr.dtype} with values outside 0..255; store uint8")
        arr = arr.astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3):
        hint = " (channels-first? store channels last)" if arr.ndim == 4 and arr.shape[1] in (1, 3) else ""
        raise ValueError(f"{path}: images must have shape (N, H, W, C) with C = 1 or 3, or (N, H, W); got {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise ValueError(f"{path}: the images array is empty")
    return arr


def _read_npz(path: str | Path) -> tuple[ImageSet, np.ndarray | None]:
    """An ``.npz``'s images and, if present, its ``is_member`` array (unvalidated)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"npz file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"{path} is not a readable .npz file ({type(err).__name__}: {err})") from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an .npz archive with an 'images' array")
    with loaded as npz:
        if "images" not in npz.files:
            raise ValueError(f"{path} has no 'images' array (it has: {', '.join(npz.files) or 'nothing'})")
        images = _images_from_array(_npz_array(npz, "images", path), path)
        n = images.shape[0]
        if "ids" in npz.files:
            raw_ids = _npz_array(npz, "ids", path)
            if raw_ids.ndim != 1 or raw_ids.shape[0] != n:
                raise ValueError(f"{path}: 'ids' has shape {raw_ids.shape}, expected ({n},)")
            ids = tuple(str(i) for i in raw_ids.tolist())
        else:
            ids = tuple(str(k) for k in range(n))
        is_member = _npz_array(npz, "is_member", path) if "is_member" in npz.files else None
    try:
        image_set = ImageSet(images, ids, str(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return image_set, is_member


def load_npz(path: str | Path) -> ImageSet:
    """Images from an ``.npz`` file (opened with ``allow_pickle=False``).

    Layout: ``images`` uint8 (N, H, W, C) or (N, H, W); optional ``ids`` (N,) of any dtype
    (converted with ``str``), else ids are ``"0"`` .. ``"N-1"``. Other arrays (labels, ...)
    are ignored. Float images are refused: store uint8. ``source`` is ``str(path)``.
    """
    return _read_npz(path)[0]


def _folder_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.name,
    )


def _read_file(path: Path) -> np.ndarray:
    # The size check before reading keeps a huge stray file out of memory.
    try:
        size = path.stat().st_size
        if size > IMAGE_MAX_BYTES:
            raise ValueError(f"{path}: {size / 2**20:.1f} MiB is larger than the {IMAGE_MAX_BYTES / 2**20:.0f} MiB limit per image")
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(f"{path}: cannot read the file ({err})") from err
    return decode_image(data, str(path))


def _first_mismatch(values: Sequence[object]) -> int | None:
    """Index of the first value that differs from ``values[0]``."""
    for k in range(1, len(values)):
        if values[k] != values[0]:
            return k
    return None


def load_image_folder(
    path: str | Path, *, resolution: int | None = None, channels: int | None = None
) -> tuple[ImageSet, Split | None, Conversion]:
    """Images from a folder of PNG / JPEG / BMP / WebP / GIF files (read in sorted name order).

    With subfolders ``members/`` and ``nonmembers/``, both are read and a :class:`Split`
    is returned (ids ``"members/<file>"`` and ``"nonmembers/<file>"``, seed None, files in
    the folder itself ignored). Otherwise the folder's own files are read (ids = file
    names) and the split is None.

    Parameters
    ----------
    path : str or Path
    resolution : int, optional
        Convert every image to R x R (see :func:`convert_images`). Without it all images must
        have the same size.
    channels : int, optional
        Convert every image to 1 or 3 channels. Without it all images must have the same
        channels.

    Returns
    -------
    images : ImageSet
        uint8 (N, H, W, C), source ``str(path)``.
    split : Split or None
    conversion : Conversion

    Raises
    ------
    ValueError
        Not a folder, no images, an unreadable file (named), or images of different sizes /
        channels when no target was given (two differing files are named).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"image folder {folder} does not exist or is not a folder")
    if resolution is not None:
        resolution = _check_positive_int(resolution, "resolution")
    if channels is not None:
        channels = _check_channels(channels)

    has_members, has_nonmembers = (folder / "members").is_dir(), (folder / "nonmembers").is_dir()
    if has_members != has_nonmembers:
        present, absent = ("members", "nonmembers") if has_members else ("nonmembers", "members")
        raise ValueError(f"image folder {folder} has {present}/ but no {absent}/; give both or neither")

    entries: list[tuple[str, Path]] = []
    if has_members:
        for sub in ("members", "nonmembers"):
            files = _folder_files(folder / sub)
            if not files:
                raise ValueError(f"{folder / sub} contains no images ({', '.join(IMAGE_SUFFIXES)})")
            entries += [(f"{sub}/{p.name}", p) for p in files]
    else:
        entries = [(p.name, p) for p in _folder_files(folder)]
        if not entries:
            raise ValueError(f"image folder {folder} contains no images ({', '.join(IMAGE_SUFFIXES)})")

    arrays = [_read_file(p) for _, p in entries]
    files = [str(p) for _, p in entries]
    if resolution is None:
        _require_uniform(files, [a.shape[:2] for a in arrays], "sizes", "resolution")
    if channels is None:
        _require_uniform(files, [a.shape[2] for a in arrays], "channels", "channels")
    stacked, conversion = _convert_many(arrays, resolution=resolution, channels=channels)

    image_set = ImageSet(stacked, tuple(i for i, _ in entries), str(folder))
    split = None
    if has_members:
        split = Split(
            member_ids=tuple(i for i in image_set.ids if i.startswith("members/")),
            nonmember_ids=tuple(i for i in image_set.ids if i.startswith("nonmembers/")),
            seed=None,
            data_fingerprint=image_set.fingerprint,
            source=str(folder),
            description=f"members/ and nonmembers/ of {folder}",
        )
    return image_set, split, conversion


def _require_uniform(files: Sequence[str], values: Sequence[object], what: str, option: str) -> None:
    b = _first_mismatch(values)
    if b is not None:
        a = 0
        raise ValueError(
            f"images differ in {what}: {files[a]} is {_describe(values[a])} but {files[b]} is "
            f"{_describe(values[b])}; pass {option}= to convert them all"
        )


def _describe(value: object) -> str:
    if isinstance(value, tuple):
        return _size_text(*value)  # type: ignore[arg-type]
    return _channels_text(int(value))  # type: ignore[arg-type]


def _resolve_path(source: str, base_dir: Path | None) -> Path:
    """A relative source is looked up in ``base_dir`` first, then in the working directory."""
    p = Path(source).expanduser()
    if p.is_absolute() or base_dir is None:
        return p
    candidate = Path(base_dir) / p
    # The fallback lets a manifest saved elsewhere keep a cwd-relative source working.
    return candidate if candidate.exists() or not p.exists() else p


def load_source(source: str, base_dir: Path | None = None) -> ImageSet:
    """The image set a :attr:`Split.source` names.

    ``DIGITS_SOURCE`` -> :func:`load_digits`; a path ending in ``.npz`` -> :func:`load_npz`;
    a folder -> :func:`load_image_folder` (its ImageSet, which holds ``members/`` and
    ``nonmembers/`` together when present). A relative path is resolved against
    ``base_dir`` (the manifest's folder) when it exists there, else against the working
    directory.
    """
    if source == DIGITS_SOURCE:
        return load_digits()
    if source == UPLOAD_SOURCE:
        raise ValueError("uploaded images are not stored anywhere; a split of uploads cannot be reloaded from its manifest")
    path = _resolve_path(source, base_dir)
    if path.suffix.lower() == ".npz":
        return load_npz(path)
    if path.is_dir():
        return load_image_folder(path)[0]
    if not path.exists():
        raise ValueError(f"data source {source!r} not found (looked for {path})")
    raise ValueError(f"data source {source!r} is neither {DIGITS_SOURCE!r}, an .npz file nor an image folder")


def _split_from_is_member(images: ImageSet, is_member: np.ndarray, path: Path) -> Split:
    if is_member.ndim != 1 or is_member.shape[0] != images.n:
        raise ValueError(f"{path}: 'is_member' has shape {is_member.shape}, expected ({images.n},)")
    if is_member.dtype != np.bool_:
        if not np.issubdtype(is_member.dtype, np.integer) or not np.isin(is_member, (0, 1)).all():
            raise ValueError(f"{path}: 'is_member' must be boolean or 0/1 integers, got {is_member.dtype}")
        is_member = is_member.astype(bool)
    try:
        return Split(
            member_ids=tuple(i for i, m in zip(images.ids, is_member) if m),
            nonmember_ids=tuple(i for i, m in zip(images.ids, is_member) if not m),
            seed=None,
            data_fingerprint=images.fingerprint,
            source=images.source,
            description=f"is_member array of {path}",
        )
    except ValueError as err:
        raise ValueError(f"{path}: 'is_member': {err}") from err


_ACCEPTED_SPECS = (
    f"'default' (the bundled digits and the default target's split), {DIGITS_SOURCE!r} (digits, random split), "
    "a split manifest (.json), an .npz file with an 'images' array, or a folder of images"
)


def resolve_data(spec: str, *, seed: int = 0) -> tuple[ImageSet, Split]:
    """Images and split from the CLI's ``--data`` value.

    * ``"default"``: digits with ``DEFAULT_SPLIT_PATH`` when that file exists (checked
      against the images), else ``random_split(digits, seed=0)``.
    * ``DIGITS_SOURCE``: digits with ``random_split(seed=seed)``.
    * ``*.json``: a split manifest; its source is loaded (relative to the manifest's folder)
      and checked against the manifest's fingerprint.
    * ``*.npz``: :func:`load_npz` and its ``is_member`` array if present, else
      ``random_split(seed=seed)``.
    * a folder: :func:`load_image_folder`; its members/nonmembers split, else
      ``random_split(seed=seed)``.

    Returns
    -------
    images : ImageSet
        Restricted to the split's ids: members first, then non-members.
    split : Split
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"--data must be one of: {_ACCEPTED_SPECS}; got {spec!r}")
    images, split = _resolve_full(spec, seed)
    return images.subset(split.member_ids + split.nonmember_ids), split


def _resolve_full(spec: str, seed: int) -> tuple[ImageSet, Split]:
    if spec == "default":
        digits = load_digits()
        if DEFAULT_SPLIT_PATH.exists():
            split = Split.load(DEFAULT_SPLIT_PATH)
            split.check_against(digits)
            return digits, split
        return digits, random_split(digits, seed=0, description="default: digits, random half split, seed 0")
    if spec == DIGITS_SOURCE:
        digits = load_digits()
        return digits, random_split(digits, seed=seed, description=f"digits, random half split, seed {seed}")

    path = Path(spec).expanduser()
    suffix = path.suffix.lower()
    if suffix == ".json":
        split = Split.load(path)
        images = load_source(split.source, base_dir=path.parent)
        split.check_against(images)
        return images, split
    if suffix == ".npz":
        images, is_member = _read_npz(path)
        if is_member is not None:
            return images, _split_from_is_member(images, is_member, path)
        return images, random_split(images, seed=seed, description=f"{path}, random half split, seed {seed}")
    if path.is_dir():
        images, split, _ = load_image_folder(path)
        if split is None:
            split = random_split(images, seed=seed, description=f"{path}, random half split, seed {seed}")
        return images, split
    reason = "does not exist" if not path.exists() else "is not a supported kind of file"
    raise ValueError(f"--data {spec!r} {reason}; accepted: {_ACCEPTED_SPECS}")
