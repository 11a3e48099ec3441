"""Where images come from: scikit-learn's digits, ``.npz`` files, image folders, and :func:`resolve_data` for ``--data``.

Part of :mod:`mia_core.data` (its notation and design rules apply); import from there.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..paths import DEFAULT_SPLIT_PATH
from .folder import FolderImages, FolderListing
from .images import (
    DIGITS_SOURCE,
    IMAGE_SUFFIXES,
    UPLOAD_SOURCE,
    Conversion,
    ImageSet,
    _channels_text,
    _check_channels,
    _check_positive_int,
    _list_some,
    _size_text,
)
from .splits import INDEX_SPLIT_KEYS, Split, is_index_split_file, random_split, read_index_split, split_from_indices

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


def _npz_array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
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


def npz_memmap(path: str | Path, key: str) -> np.ndarray | None:
    """Array ``key`` of an *uncompressed* ``.npz`` (``np.savez``) as a read-only memory map: nothing is read
    until rows are used, so an image set larger than memory can be scored batch by batch. None when the
    member is compressed (``np.savez_compressed``), missing, an object array or Fortran-ordered: read it whole."""
    import struct
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(f"{key}.npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)  # the local file header; the data follows its name and extra field
            if local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (KeyError, OSError, ValueError, zipfile.BadZipFile):
        return None
    if dtype.hasobject or fortran or 0 in shape:
        return None
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


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
        raise ValueError(
            f"{path}: images must have shape (N, H, W, C) with C = 1 or 3, or (N, H, W); got {arr.shape}{hint}"
        )
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
            hint = ""
            if all(k in npz.files for k in INDEX_SPLIT_KEYS):
                hint = (
                    f"; it is a SecMI / PIA split (indices into a data set): give it with the images it indexes, "
                    f"--data {path}@IMAGES (an .npz or an image folder of CIFAR-10's training set)"
                )
            raise ValueError(f"{path} has no 'images' array (it has: {', '.join(npz.files) or 'nothing'}){hint}")
        mapped = npz_memmap(path, "images")  # uint8 images of an uncompressed .npz stay on disk until used
        if mapped is not None and mapped.dtype == np.uint8:
            images = _images_from_array(mapped, path)
        else:
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
        captions = _npz_captions(_npz_array(npz, "captions", path), n, path) if "captions" in npz.files else None
    try:
        image_set = ImageSet(images, ids, str(path), captions)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    return image_set, is_member


def _npz_captions(raw: np.ndarray, n: int, path: Path) -> tuple[str, ...]:
    """The ``captions`` array of an ``.npz``: (N,) strings (unicode or UTF-8 bytes), one per image."""
    if raw.ndim != 1 or raw.shape[0] != n:
        raise ValueError(f"{path}: 'captions' has shape {raw.shape}, expected ({n},): one caption per image")
    if raw.dtype.kind == "U":
        return tuple(str(c) for c in raw.tolist())
    if raw.dtype.kind == "S":
        try:
            return tuple(c.decode("utf-8") for c in raw.tolist())
        except UnicodeDecodeError as err:
            raise ValueError(f"{path}: 'captions' holds bytes that are not UTF-8 text ({err})") from err
    raise ValueError(f"{path}: 'captions' must be a string array (np.array([...], dtype=str)), got {raw.dtype}")


def load_npz(path: str | Path) -> ImageSet:
    """Images from an ``.npz`` file (opened with ``allow_pickle=False``).

    Layout: ``images`` uint8 (N, H, W, C) or (N, H, W) (memory-mapped when the file is not compressed,
    ``np.savez``: read from disk as rows are used); optional ``ids`` (N,) of any dtype
    (converted with ``str``), else ids are ``"0"`` .. ``"N-1"``; optional ``captions`` (N,) strings,
    one per image (a text-to-image model's prompts). Other arrays (labels, ...) are ignored. Float
    images are refused: store uint8. ``source`` is ``str(path)``.
    """
    return _read_npz(path)[0]


def _folder_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name; hidden files are skipped."""
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        ),
        key=lambda p: p.name,
    )


def load_image_folder(
    path: str | Path, *, resolution: int | None = None, channels: int | None = None
) -> tuple[ImageSet, Split | None, Conversion]:
    """Images from a folder of PNG / JPEG / BMP / WebP / GIF files (read in sorted name order).

    With subfolders ``members/`` and ``nonmembers/``, both are read and a :class:`Split`
    is returned (ids ``"members/<file>"`` and ``"nonmembers/<file>"``, seed None, files in
    the folder itself ignored). Otherwise the folder's own files are read (ids = file
    names) and the split is None.

    Captions follow the Hugging Face ``imagefolder`` convention: a ``metadata.jsonl`` with one
    JSON object per line, ``{"file_name": ..., "text": ...}``, in the folder (``file_name``
    relative to it, e.g. ``members/a.png``) and / or in ``members/`` and ``nonmembers/`` (relative
    to the subfolder). With any metadata every image needs exactly one caption (see
    :func:`read_folder_captions`).

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
        uint8 (N, H, W, C), source ``str(path)``, held as :class:`~mia_core.data.folder.FolderImages`:
        listed from the files' headers now, decoded (and converted) when rows are read, a batch at a
        time. Its fingerprint hashes the files' bytes and the conversion (read, not decoded).
    split : Split or None
    conversion : Conversion

    Raises
    ------
    ValueError
        Not a folder, no images, a file that is no readable image (empty, too large, not a supported
        format, a bad header: named), or images of different sizes / channels when no target was given
        (two differing files are named). Corrupt pixel data behind a good header fails, naming the file,
        when its row is read.
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

    ids = tuple(i for i, _ in entries)
    del entries
    listing = FolderListing.read(folder, ids)  # headers only: a file that is no readable image fails here, named
    lazy, conversion = FolderImages.open(listing, resolution, channels)  # checks sizes / channels where kept
    image_set = ImageSet(lazy, ids, str(folder), read_folder_captions(folder, ids, has_members))
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


METADATA_FILE = "metadata.jsonl"


def read_folder_captions(folder: Path, ids: Sequence[str], has_members: bool = False) -> tuple[str, ...] | None:
    """Captions of an image folder's images from its ``metadata.jsonl`` file(s) (module doc of
    :func:`load_image_folder`), aligned with ``ids``; None when the folder has no metadata.

    Raises ValueError naming the file and line for a line that is not a JSON object with string
    ``file_name`` and ``text``, a file named twice, captions of files that are not in the folder,
    and images without a caption.
    """
    folder = Path(folder)
    places = [(folder / METADATA_FILE, "")]
    if has_members:
        places += [(folder / sub / METADATA_FILE, f"{sub}/") for sub in ("members", "nonmembers")]
    found: dict[str, str] = {}
    where: dict[str, str] = {}
    read_any = False
    for path, prefix in places:
        if not path.is_file():
            continue
        read_any = True
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: cannot read the captions ({err})") from err
        for k, file_name, text in metadata_rows(lines, str(path)):
            key = prefix + file_name
            if key in found:
                raise ValueError(f"{path}, line {k}: {key!r} has a caption already (in {where[key]})")
            found[key], where[key] = text, f"{path.name} line {k}"
    if not read_any:
        return None
    unknown = sorted(set(found) - set(ids))
    if unknown:
        raise ValueError(
            f"{folder}: {METADATA_FILE} has captions for {len(unknown)} file(s) that are not images of the folder: "
            f"{_list_some(unknown)}"
        )
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValueError(
            f"{folder}: {len(missing)} image(s) have no caption in {METADATA_FILE}: {_list_some(missing)}; "
            'give every image one line (an empty "text" for none)'
        )
    return tuple(found[i] for i in ids)


def metadata_rows(lines: Sequence[str], where: str) -> list[tuple[int, str, str]]:
    """``(line number, file_name, text)`` of each non-blank line of a ``metadata.jsonl`` (the Hugging Face
    imagefolder convention), ``file_name`` with ``/`` separators and without a leading ``./``.

    Raises ValueError naming ``where`` and the line for a line that is not a JSON object with string
    ``file_name`` and ``text``.
    """
    rows = []
    for k, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}, line {k}: not valid JSON ({err})") from err
        if (
            not isinstance(row, dict)
            or not isinstance(row.get("file_name"), str)
            or not isinstance(row.get("text"), str)
        ):
            raise ValueError(
                f'{where}, line {k}: expected an object with string "file_name" and "text" '
                f"(the Hugging Face imagefolder convention), got {line.strip()[:80]!r}"
            )
        rows.append((k, row["file_name"].replace("\\", "/").removeprefix("./"), row["text"]))
    return rows


class MixedImagesError(ValueError):
    """An image folder whose files differ in size or channels, read without a resolution / channels."""


def mixed_images_error(file_a: str, value_a: object, file_b: str, value_b: object) -> MixedImagesError:
    """The error for two files of a folder that differ in size ((H, W) values) or channels (int values)."""
    what, option = ("sizes", "resolution") if isinstance(value_a, tuple) else ("channels", "channels")
    return MixedImagesError(
        f"images differ in {what}: {file_a} is {_describe(value_a)} but {file_b} is "
        f"{_describe(value_b)}; pass {option}= to convert them all"
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
        raise ValueError(
            "uploaded images are not stored anywhere; a split of uploads cannot be reloaded from its manifest"
        )
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
    "a split manifest (.json), an .npz file with an 'images' array, a folder of images, or SPLIT.npz@IMAGES "
    "(a SecMI / PIA index split over an .npz or image folder of the data set it indexes)"
)


def dataset_index(images: ImageSet, path: str | Path) -> tuple[np.ndarray, str]:
    """The data-set index of each image (what a SecMI / PIA split file indexes), and how it was read.

    * an ``.npz`` with ``orig_index`` (N,) int: those indices; with a ``split`` (N,) string array
      too, only rows whose split is ``"train"`` count (others get -1): SecMI indexes the training set;
    * an image folder whose file names are all integers (``00042.png``): those integers;
    * otherwise the images' order: image k is data-set image k (an ``.npz`` of CIFAR-10's training
      set as torchvision or keras give it: ``np.savez(path, images=CIFAR10(train=True).data)``).

    Returns ``(index, how)``: (N,) int64 and a phrase for the split's description.
    """
    path = Path(path)
    n = images.n
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            if "orig_index" in npz.files:
                index = np.asarray(_npz_array(npz, "orig_index", path))
                if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
                    raise ValueError(f"{path}: 'orig_index' must be ({n},) integers, got {index.dtype} {index.shape}")
                index = index.astype(np.int64)
                how = "indices from its orig_index array"
                if "split" in npz.files:
                    part = np.asarray(_npz_array(npz, "split", path)).astype(str)
                    if part.shape != (n,):
                        raise ValueError(f"{path}: 'split' has shape {part.shape}, expected ({n},)")
                    index = np.where(part == "train", index, -1)
                    how += f" ({int((part == 'train').sum())} training images; the other {int((part != 'train').sum())} ignored)"
                return index, how
        return np.arange(n, dtype=np.int64), "image k of the file is data-set image k"
    stems = [Path(i).stem for i in images.ids]
    if stems and all(s.isdigit() for s in stems):
        return np.asarray([int(s) for s in stems], dtype=np.int64), "indices from the file names"
    return np.arange(n, dtype=np.int64), "image k in file-name order is data-set image k"


def _index_split_over(split_path: Path, images_spec: str) -> tuple[ImageSet, Split]:
    """``SPLIT.npz@IMAGES``: SecMI's member / non-member indices over the images they index."""
    members, nonmembers = read_index_split(split_path)
    images_path = Path(images_spec).expanduser()
    if images_path.suffix.lower() == ".npz":
        images = load_npz(images_path)
    elif images_path.is_dir():
        images = load_image_folder(images_path)[0]
    else:
        reason = "does not exist" if not images_path.exists() else "is neither an .npz file nor an image folder"
        raise ValueError(f"images {images_spec!r} of --data {split_path}@{images_spec} {reason}")
    index, how = dataset_index(images, images_path)
    split = split_from_indices(images, index, members, nonmembers, description="")
    description = (
        f"SecMI / PIA split {split_path.name} over {images_path} ({how}): {split.n_members} of "
        f"{len(members)} members and {split.n_nonmembers} of {len(nonmembers)} non-members present"
    )
    return images, Split(
        split.member_ids,
        split.nonmember_ids,
        seed=None,
        data_fingerprint=split.data_fingerprint,
        source=split.source,
        description=description,
    )


def resolve_data(
    spec: str, *, seed: int = 0, resolution: int | None = None, channels: int | None = None
) -> tuple[ImageSet, Split]:
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
    * ``SPLIT.npz@IMAGES``: a SecMI / PIA index split (``mia_train_idxs`` members,
      ``mia_eval_idxs`` non-members, in the file's order) over an ``.npz`` or image folder of the
      data set it indexes (see :func:`dataset_index`); indices missing from a partial copy are left out.

    ``resolution`` / ``channels`` convert an image folder's files as they are read (see
    :func:`load_image_folder`); this is the rule for a folder of mixed sizes: each image is
    centre-cropped to a square and resized to ``resolution`` x ``resolution``. Without them a
    folder's images must all have one size and one channel count.

    Returns
    -------
    images : ImageSet
        Restricted to the split's ids: members first, then non-members.
    split : Split
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"--data must be one of: {_ACCEPTED_SPECS}; got {spec!r}")
    images, split = _resolve_full(spec, seed, resolution, channels)
    images = images.subset(split.member_ids + split.nonmember_ids)
    if split.captions is not None:
        images = images.with_captions(split.captions_for(images, spec))
    return images, split


def _resolve_full(
    spec: str, seed: int, resolution: int | None = None, channels: int | None = None
) -> tuple[ImageSet, Split]:
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
    if "@" in spec and not path.exists():
        split_part, _, images_part = spec.partition("@")
        if is_index_split_file(Path(split_part).expanduser()):
            return _index_split_over(Path(split_part).expanduser(), images_part)
        if Path(split_part).expanduser().is_file():
            read_index_split(Path(split_part).expanduser())  # raises, naming what the file lacks
        raise ValueError(f"--data {spec!r}: split file {split_part!r} does not exist (SPLIT.npz@IMAGES)")
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
        images, split, _ = load_image_folder(path, resolution=resolution, channels=channels)
        if split is None:
            split = random_split(images, seed=seed, description=f"{path}, random half split, seed {seed}")
        return images, split
    reason = "does not exist" if not path.exists() else "is not a supported kind of file"
    raise ValueError(f"--data {spec!r} {reason}; accepted: {_ACCEPTED_SPECS}")
