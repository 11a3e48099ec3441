"""Membership splits: :class:`Split` (a JSON manifest of member / non-member ids) and :func:`random_split`.

Part of :mod:`mia_core.data` (its notation and design rules apply); import from there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import ImageSet, _check_positive_int, _first_duplicate, _list_some

SPLIT_FORMAT = "mia-split/1"

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
    captions : dict of id -> str, optional
        One caption per member and non-member, recorded in the manifest for a source that does not
        carry its own (an ``.npz`` with a ``captions`` array or a folder with ``metadata.jsonl``
        does): :func:`mia_core.data.resolve_data` gives them to the images. None = not recorded.
    captions_edited : bool
        True: the recorded captions were edited (the app's Data page) and replace the data's own; False
        (the default): where the data carries captions too, the two must agree.
    """

    member_ids: tuple[str, ...]
    nonmember_ids: tuple[str, ...]
    seed: int | None
    data_fingerprint: str
    source: str
    description: str = ""
    captions: dict[str, str] | None = field(default=None, hash=False)
    captions_edited: bool = False

    def __post_init__(self) -> None:
        members = _check_id_list(self.member_ids, "member_ids")
        nonmembers = _check_id_list(self.nonmember_ids, "nonmember_ids")
        overlap = set(members).intersection(nonmembers) if _first_duplicate(members + nonmembers) else ()
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
        if self.captions is not None:
            caps = self.captions
            if not isinstance(caps, dict):
                raise ValueError(f"captions must map each id to its caption, got {type(caps).__name__}")
            ids = members + nonmembers
            unknown = sorted(set(caps) - set(ids))
            if unknown:
                raise ValueError(f"captions are given for {len(unknown)} id(s) not in the split: {_list_some(unknown)}")
            missing = [i for i in ids if i not in caps]
            if missing:
                raise ValueError(f"{len(missing)} id(s) of the split have no caption: {_list_some(missing)}")
            bad = [i for i in ids if not isinstance(caps[i], str)]
            if bad:
                raise ValueError(f"captions must be strings; those of {_list_some(bad)} are not")
            object.__setattr__(self, "captions", {i: caps[i] for i in ids})
        if not isinstance(self.captions_edited, bool):
            raise ValueError(f"captions_edited must be true or false, got {self.captions_edited!r}")
        if self.captions_edited and self.captions is None:
            raise ValueError("captions_edited is set but the split records no captions")
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
            **({"captions": dict(self.captions)} if self.captions is not None else {}),
            **({"captions_edited": True} if self.captions_edited else {}),
        }

    def captions_for(self, images: ImageSet, where: str = "") -> tuple[str, ...]:
        """The recorded captions of ``images`` (ids of this split), in their order. When the images carry
        captions of their own, they must agree with the manifest's (ValueError naming the first id that differs),
        unless the manifest's were edited (:attr:`captions_edited`): then they replace the data's."""
        if self.captions is None:
            raise ValueError("this split records no captions")
        caps = tuple(self.captions[i] for i in images.ids)
        if images.captions is not None and not self.captions_edited:
            differ = [i for i, a, b in zip(images.ids, images.captions, caps) if a != b]
            if differ:
                i = differ[0]
                raise ValueError(
                    f"{where + ': ' if where else ''}the split manifest's caption of {i!r} ({self.captions[i]!r}) differs "
                    f"from the data's ({images.caption_of(i)!r}); {len(differ)} caption(s) differ"
                )
        return caps

    @classmethod
    def from_dict(cls, d: dict) -> Split:
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
            captions=d.get("captions"),
            captions_edited=d.get("captions_edited", False),
        )

    def save(self, path: str | Path) -> None:
        """Write the manifest as JSON (indent 1), creating parent folders."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read a manifest written by :meth:`save`; ``ValueError`` naming the file on any problem."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(
                f"split manifest {path} does not exist" if not path.exists() else f"split manifest {path} is not a file"
            )
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
            raise ValueError(
                f"{len(missing)} id(s) of the split are not in the images from {images.source}: {_list_some(missing)}"
            )

    def limit(self, n: int) -> Split:
        """The first n members and first n non-members (manifest order is already random).

        Fewer are kept where a side has fewer than n. Seed, fingerprint, source and
        description are unchanged; recorded captions are those of the ids kept.
        """
        n = _check_positive_int(n, "n")
        return Split(
            member_ids=self.member_ids[:n],
            nonmember_ids=self.nonmember_ids[:n],
            seed=self.seed,
            data_fingerprint=self.data_fingerprint,
            source=self.source,
            description=self.description,
            captions=(
                None
                if self.captions is None
                else {i: self.captions[i] for i in self.member_ids[:n] + self.nonmember_ids[:n]}
            ),
            captions_edited=self.captions_edited,
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


# ----------------------------------------------------------------------------- index splits (SecMI / PIA)

#: The arrays of SecMI's (and PIA's) split file ``CIFAR10_train_ratio0.5.npz``: indices into the
#: 50,000-image CIFAR-10 *training* set. Members are ``mia_train_idxs``; non-members are
#: ``mia_eval_idxs``, the other half of the training set (never trained on), not the test set.
INDEX_SPLIT_KEYS = ("mia_train_idxs", "mia_eval_idxs")


def is_index_split_file(path: str | Path) -> bool:
    """True when ``path`` is an ``.npz`` holding SecMI's ``mia_train_idxs`` and ``mia_eval_idxs``."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            return all(k in npz.files for k in INDEX_SPLIT_KEYS)
    except Exception:
        return False


def read_index_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(member indices, non-member indices) from a SecMI / PIA split ``.npz`` (``allow_pickle=False``).

    Both are int64 (M,), in the file's order, non-negative, without duplicates and disjoint;
    ``ValueError`` naming the file otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"split file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in INDEX_SPLIT_KEYS if k not in npz.files]
            if missing:
                raise ValueError(
                    f"{path} has no {', '.join(missing)} (it has: {', '.join(npz.files) or 'nothing'}); "
                    f"expected SecMI's split layout {INDEX_SPLIT_KEYS}"
                )
            arrays = [np.asarray(npz[k]) for k in INDEX_SPLIT_KEYS]
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"{path} is not a readable .npz split file ({type(err).__name__}: {err})") from err
    out = []
    for key, arr in zip(INDEX_SPLIT_KEYS, arrays):
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
            raise ValueError(f"{path}: {key} must be a non-empty 1-D integer array, got {arr.dtype} {arr.shape}")
        if int(arr.min()) < 0:
            raise ValueError(f"{path}: {key} holds a negative index ({int(arr.min())})")
        if np.unique(arr).size != arr.size:
            raise ValueError(f"{path}: {key} lists an index twice")
        out.append(arr.astype(np.int64))
    both = np.intersect1d(out[0], out[1])
    if both.size:
        raise ValueError(f"{path}: {both.size} index(es) are both member and non-member, e.g. {int(both[0])}")
    return out[0], out[1]


def split_from_indices(
    images: ImageSet,
    image_index: np.ndarray,
    member_idx: np.ndarray,
    nonmember_idx: np.ndarray,
    *,
    description: str = "",
) -> Split:
    """A :class:`Split` of ``images`` from dataset indices.

    Parameters
    ----------
    images : ImageSet, N images.
    image_index : (N,) int, the dataset index of each image (-1 = not part of the indexed set,
        e.g. a test image); no index twice.
    member_idx, nonmember_idx : (M,) int, dataset indices (see :func:`read_index_split`).

    Members and non-members keep the order of ``member_idx`` / ``nonmember_idx`` (so
    :meth:`Split.limit` takes the first n of the split file). Indices with no image in
    ``images`` (a partial copy of the data set) are left out; ``ValueError`` when a side is left
    empty.
    """
    image_index = np.asarray(image_index, dtype=np.int64)
    if image_index.shape != (images.n,):
        raise ValueError(f"image_index has shape {image_index.shape}, expected ({images.n},)")
    valid = image_index[image_index >= 0]
    if np.unique(valid).size != valid.size:
        raise ValueError(f"two images of {images.source} have the same data-set index")
    row_of = {int(i): k for k, i in enumerate(image_index.tolist()) if i >= 0}
    sides = []
    for name, wanted in (("members", member_idx), ("non-members", nonmember_idx)):
        rows = [row_of[int(i)] for i in wanted if int(i) in row_of]
        if not rows:
            top = int(valid.max()) if valid.size else -1
            raise ValueError(
                f"none of the split's {len(wanted)} {name} is among the {images.n} images of {images.source} "
                f"(their data-set indices run up to {top}); pass the data set the split indexes (CIFAR-10's training set)"
            )
        sides.append(tuple(images.ids[r] for r in rows))
    return Split(
        sides[0],
        sides[1],
        seed=None,
        data_fingerprint=images.fingerprint,
        source=images.source,
        description=description,
    )
