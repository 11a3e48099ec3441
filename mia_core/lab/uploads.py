"""Uploaded image files: written to a content-addressed folder the data loaders read back.

``save_upload_folder`` writes member and non-member uploads to ``<root>/uploads/<hash>/`` (the same
files give the same folder, so the same data fingerprint); ``encode_png`` turns an image of a split
back into PNG bytes to send it through the same upload path. Decoding and its checks happen when
the folder is loaded (:func:`mia_core.data.load_image_folder`).

Captions (text-to-image targets): an upload may carry one, typed next to it or given in a
``metadata.jsonl`` among the uploads (:func:`metadata_captions`, the Hugging Face imagefolder
convention); :func:`condition_uploads` keys the attacks with the uploads' captions, and an upload
without one is scored with the empty prompt ``""``. The Data page's edited captions become a split
manifest of their own (:func:`edited_caption_split`, :func:`save_split_manifest`).

``ood_reference`` / ``OODReference.check`` say whether an uploaded image is unlike the split's images
(out of distribution, e.g. a photo scored against a digits model): its distance to the nearest split
image, against a threshold read off the split itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.data import DIGITS_SOURCE, IMAGE_SUFFIXES, Split, resolve_data

__all__ = [
    "encode_png",
    "save_upload_folder",
    "metadata_captions",
    "condition_uploads",
    "NO_CAPTION_TEXT",
    "collection_caption_note",
    "collection_prompt_mismatch",
    "caption_edits",
    "edited_caption_split",
    "save_split_manifest",
    "OODReference",
    "OODCheck",
    "ood_reference",
    "rms_distances",
]


def encode_png(image: np.ndarray) -> bytes:
    """A uint8 (H, W, C) / (H, W) image as PNG bytes (lossless), e.g. to feed a split image back
    through the upload path."""
    from PIL import Image

    img = np.asarray(image, dtype=np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _safe_file_name(name: str, used: set[str]) -> str:
    base = Path(str(name).replace("\\", "/")).name
    stem, suffix = Path(base).stem, Path(base).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"{name}: not an image file name (expected one of {', '.join(IMAGE_SUFFIXES)})")
    stem = _SAFE_NAME.sub("_", stem).strip("._") or "image"
    out, k = f"{stem}{suffix}", 2
    while out in used:
        out, k = f"{stem}-{k}{suffix}", k + 1
    used.add(out)
    return out


def save_upload_folder(
    root: str | Path,
    members: Sequence[tuple[str, bytes] | tuple[str, bytes, str | None]],
    nonmembers: Sequence[tuple[str, bytes] | tuple[str, bytes, str | None]],
) -> Path:
    """Write uploaded member and non-member files to ``<root>/uploads/<hash>/{members,nonmembers}/``.

    Each upload is ``(name, bytes)`` or ``(name, bytes, caption)``. When any upload has a caption,
    ``metadata.jsonl`` (the Hugging Face imagefolder convention: ``file_name`` relative to the folder,
    ``text``) records one per file ("" for an upload without one), and the loaded set has captions.

    The folder name is a hash of the names, bytes and captions, so the same uploads give the same
    folder (and the same data fingerprint). File names are reduced to safe characters; the bytes are
    written as they are (decoding and its checks happen when the folder is loaded).
    """
    if not members or not nonmembers:
        raise ValueError("upload at least one member image and one non-member image")
    h = hashlib.sha256()
    captioned = False
    for role, files in (("members", members), ("nonmembers", nonmembers)):
        for entry in files:
            name, data, caption = _upload_entry(entry)
            h.update(f"{role}/{name}\0{len(data)}\0".encode())
            h.update(bytes(data))
            if caption is not None:
                captioned = True
                h.update(f"\0caption\0{caption}\0".encode())
    folder = Path(root) / "uploads" / h.hexdigest()[:16]
    rows = []
    for role, files in (("members", members), ("nonmembers", nonmembers)):
        sub = folder / role
        sub.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for entry in files:
            name, data, caption = _upload_entry(entry)
            safe = _safe_file_name(name, used)
            (sub / safe).write_bytes(bytes(data))
            rows.append({"file_name": f"{role}/{safe}", "text": caption or ""})
    if captioned:
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder


def _upload_entry(entry: Sequence[object]) -> tuple[str, bytes, str | None]:
    """(name, bytes, caption or None) of one upload given as (name, bytes) or (name, bytes, caption)."""
    if len(entry) not in (2, 3):
        raise ValueError(f"an upload is (name, bytes) or (name, bytes, caption), got {len(entry)} items")
    name, data = str(entry[0]), entry[1]
    caption = entry[2] if len(entry) == 3 else None
    if caption is not None and not isinstance(caption, str):
        raise ValueError(f"{name}: the caption must be a string, got {type(caption).__name__}")
    return name, bytes(data), caption  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- captions

#: What an upload without a caption is scored with, in words (one line on the page).
NO_CAPTION_TEXT = (
    'No caption: scored with the empty prompt "" (the unconditional model), while the split\'s images were scored '
    "with their own captions, so its score is not quite comparable with theirs."
)


#: How to give a set's captions, per place: the app's uploads, a folder or .npz given to the CLI.
CAPTION_HINTS = {
    "upload": "Upload a metadata.jsonl with the images",
    "cli": "Put a metadata.jsonl in the folder (or a 'captions' array in the .npz)",
}


def _captioned(captions: Sequence[str] | None) -> int:
    """How many images of a set have a caption (``ImageSet.captions``: "" = none; None = no image has one)."""
    return 0 if captions is None else sum(1 for c in captions if c)


def collection_caption_note(captions: Sequence[str] | None, n: int, hint: str = "upload") -> str:
    """One line on how a set of ``n`` images (a collection) is conditioned on a target conditioned on each
    image's own caption: ``captions`` are the set's (``ImageSet.captions``: "" = none; None = no image has one);
    ``hint``: where the line is read (a key of :data:`CAPTION_HINTS`)."""
    given = _captioned(captions)
    if given == n:
        return f"All {n} images are scored with their own captions."
    empty = 'the empty prompt "" (the unconditional model)'
    if given == 0:
        return (
            f"No captions: all {n} images are scored with {empty}. {CAPTION_HINTS[hint]} "
            '(one line per image, `{"file_name": "a.png", "text": "its caption"}`) to score them with their own.'
        )
    return f"{given} of {n} images are scored with their own captions; the other {n - given} with {empty}."


def collection_prompt_mismatch(
    suspect: Sequence[str] | None, n_suspect: int, heldout: Sequence[str] | None, n_heldout: int
) -> str | None:
    """On a target conditioned on each image's own caption: a warning when the suspect and held-out sets (their
    ``ImageSet.captions``) are not scored under the same kind of prompt, all with their own captions or all with
    the empty prompt; None when they are. Scores under another prompt differ whatever the training (a model's
    denoising error depends on the prompt it is given), so such a test compares the prompts as much as the training."""
    kinds = []
    for captions, n in ((suspect, n_suspect), (heldout, n_heldout)):
        given = _captioned(captions)
        kinds.append("their own captions" if given == n else "the empty prompt" if given == 0 else "a mix")
    if kinds[0] == kinds[1] != "a mix":
        return None
    return (
        f"The suspect set is scored with {kinds[0]} and the held-out set with {kinds[1]}: scores under another "
        "prompt differ whatever the training, so this p-value compares the prompts as much as the training. Give "
        "every image of both sets its caption, or none."
    )


def metadata_captions(
    data: bytes, names: Sequence[str], where: str = "metadata.jsonl"
) -> tuple[dict[str, str], list[str]]:
    """Captions of uploaded images from an uploaded ``metadata.jsonl`` (one JSON object per line,
    ``{"file_name": ..., "text": ...}``, the Hugging Face imagefolder convention).

    A row matches an upload by file name (its folder part is ignored: uploads have none).
    Returns (upload name -> caption, notes): the notes name the rows of files that were not uploaded.
    Raises ValueError naming ``where`` and the line for a bad line, and for a file named twice.
    """
    from mia_core.data.sources import metadata_rows

    try:
        text = bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{where}: not UTF-8 text ({err})") from err
    known = set(names)
    found: dict[str, str] = {}
    line_of: dict[str, int] = {}
    unknown: list[str] = []
    for k, file_name, caption in metadata_rows(text.splitlines(), where):
        name = file_name.rsplit("/", 1)[-1]
        if name in line_of:
            raise ValueError(f"{where}, line {k}: {name!r} has a caption already (line {line_of[name]})")
        line_of[name] = k
        if name in known:
            found[name] = caption
        else:
            unknown.append(name)
    notes = []
    if unknown:
        some = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        notes.append(f"{where} has captions for {len(unknown)} file(s) that were not uploaded: {some}")
    return found, notes


def condition_uploads(
    target: Any, attacks: Sequence[Any], n: int, captions: Sequence[str] | None = None
) -> tuple[list[Any], tuple[str, ...] | None]:
    """The attacks and captions that score ``n`` new images (uploads) on ``target``.

    On a text-to-image target with attacks conditioned on each image's own caption (mode "caption"),
    the images' ``captions`` (one per image; "" = none) are the prompts, and an image without one (or
    every image, when ``captions`` is None) gets "" (the empty prompt). The attacks are re-keyed with
    the digest of these captions (:meth:`Conditioning.with_captions`), so new captions are a new score.
    Otherwise the attacks come back unchanged, with ``captions`` as given.
    """
    attacks = list(attacks)
    if captions is not None and len(captions) != n:
        raise ValueError(f'got {len(captions)} captions for {n} images: give one per image ("" for none)')
    conditioned = [a for a in attacks if getattr(a, "conditioning", None) is not None]
    if getattr(target, "kind", "") != "t2i" or not any(a.conditioning.mode == "caption" for a in conditioned):
        return attacks, None if captions is None else tuple(captions)
    caps = tuple("" if c is None else str(c) for c in captions) if captions is not None else ("",) * n
    out = [
        a.with_conditioning(a.conditioning.with_captions(caps)) if getattr(a, "conditioning", None) is not None else a
        for a in attacks
    ]
    return out, caps


def caption_edits(ids: Sequence[str], before: Sequence[str], after: Sequence[str]) -> dict[str, str]:
    """id -> new caption, for the images whose caption changed (``before`` / ``after`` aligned with ``ids``)."""
    if not len(ids) == len(before) == len(after):
        raise ValueError(f"{len(ids)} ids, {len(before)} captions before and {len(after)} after: give one per image")
    bad = [i for i, c in zip(ids, after) if not isinstance(c, str)]
    if bad:
        raise ValueError(f"captions must be text; those of {', '.join(map(repr, bad[:5]))} are not")
    return {i: a for i, b, a in zip(ids, before, after) if a != b}


def edited_caption_split(spec: str, edits: Mapping[str, str], *, seed: int = 0) -> Split:
    """The split of data ``spec`` (a ``--data`` value, :func:`mia_core.data.resolve_data` with ``seed``)
    with ``edits`` (id -> caption) applied to its captions, recorded as edited (``captions_edited``: they
    replace the data's own when the manifest is loaded). All of the split's ids are kept; its source
    becomes an absolute path, so the manifest can live anywhere.

    Raises ValueError when the data has no captions or an edited id is not one of the split's.
    """
    images, split = resolve_data(spec, seed=seed)
    if images.captions is None:
        raise ValueError(f"the data {spec!r} has no captions to edit")
    unknown = [i for i in edits if i not in set(images.ids)]
    if unknown:
        some = ", ".join(map(repr, unknown[:5]))
        raise ValueError(f"edited captions of {len(unknown)} id(s) not in the split: {some}")
    captions = dict(zip(images.ids, images.captions))
    changed = {i: str(c) for i, c in edits.items() if captions[i] != c}
    captions.update(changed)
    source = images.source if images.source == DIGITS_SOURCE else str(Path(images.source).expanduser().resolve())
    before = split.description.split(" · captions edited")[0]
    description = (before + " · " if before else "") + "captions edited on the Data page"
    return Split(
        split.member_ids,
        split.nonmember_ids,
        split.seed,
        split.data_fingerprint,
        source,
        description,
        captions=captions,
        captions_edited=True,
    )


def save_split_manifest(root: str | Path, split: Split) -> Path:
    """Write ``split`` to ``<root>/uploads/manifests/<hash>.json`` (named by a hash of its JSON: the same
    split, the same file) and return the path."""
    text = json.dumps(split.to_dict(), indent=1) + "\n"
    folder = Path(root) / "uploads" / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}.json"
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- out of distribution

#: The split's nearest-neighbour distances below which an upload counts as "like the split" (a quantile).
OOD_QUANTILE = 0.99
#: At most this many split images are the reference (a seeded subset above it): 2,000^2 distances.
OOD_MAX_REFERENCE = 2000


def _flat_unit(images) -> np.ndarray:
    """uint8 (N, H, W[, C]) -> float32 (N, D) in [-1, 1] (the model's pixel scale)."""
    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W[, C]), got dtype {a.dtype}")
    if a.ndim < 3:
        raise ValueError(f"expected a batch of images (N, H, W[, C]), got shape {a.shape}")
    return (a.reshape(a.shape[0], -1).astype(np.float32) / 127.5) - 1.0


def rms_distances(queries: np.ndarray, reference: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """(M, N) root-mean-square pixel distances between flattened images in [-1, 1].

    ``sqrt(mean_d (q_d - r_d)^2)``: 0 = the same image, 2 = black against white everywhere.
    Computed in chunks of ``chunk`` queries (memory: chunk x N floats).
    """
    q, r = np.asarray(queries, dtype=np.float32), np.asarray(reference, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ValueError(f"rms_distances needs (M, D) and (N, D) arrays, got {q.shape} and {r.shape}")
    r2 = (r.astype(np.float64) ** 2).sum(1)
    out = np.empty((q.shape[0], r.shape[0]), dtype=np.float64)
    for i in range(0, q.shape[0], chunk):
        qi = q[i : i + chunk].astype(np.float64)
        sq = (qi**2).sum(1)[:, None] + r2[None, :] - 2.0 * qi @ r.T.astype(np.float64)
        out[i : i + chunk] = np.sqrt(np.maximum(sq, 0.0) / q.shape[1])
    return out


@dataclass(frozen=True)
class OODCheck:
    """One image against the split: its distance to the nearest split image and the verdict."""

    distance: float  # RMS pixel distance (pixel scale [-1, 1]) to the nearest split image
    threshold: float  # the split's own OOD_QUANTILE nearest-neighbour distance
    unlike: bool  # distance > threshold: out of distribution

    def sentence(self, quantile: float = OOD_QUANTILE) -> str:
        """The card's warning (or its all-clear), with the numbers it rests on."""
        if self.unlike:
            return (
                f"This image is unlike the split's images: its nearest split image is {self.distance:.3g} away "
                f"(root-mean-square pixel distance on the -1..1 scale), while {quantile:.0%} of the split's own "
                f"images have a neighbour within {self.threshold:.3g}. Its scores compare it with images of "
                "another kind, so the verdict says little about training."
            )
        return (
            f"Like the split's images: nearest split image {self.distance:.3g} away (RMS pixel distance), "
            f"within the {self.threshold:.3g} that {quantile:.0%} of the split's images reach."
        )


@dataclass(frozen=True, eq=False)
class OODReference:
    """The split's images as a reference for "is this upload like them?".

    Attributes
    ----------
    reference : (N, D) float32 in [-1, 1], the flattened split images (at most OOD_MAX_REFERENCE).
    threshold : float, the ``quantile`` of the split images' leave-one-out nearest-neighbour RMS distances.
    quantile : float.
    """

    reference: np.ndarray
    threshold: float
    quantile: float

    @property
    def n_reference(self) -> int:
        return int(self.reference.shape[0])

    def distances(self, images) -> np.ndarray:
        """(M,) RMS distance of each uint8 (M, H, W[, C]) image to its nearest reference image."""
        q = _flat_unit(images)
        if q.shape[1] != self.reference.shape[1]:
            raise ValueError(
                f"images have {q.shape[1]} values each, the split's {self.reference.shape[1]}: convert them to the "
                "target's resolution and channels first"
            )
        return rms_distances(q, self.reference).min(axis=1)

    def check(self, images) -> list[OODCheck]:
        """One :class:`OODCheck` per image (distance > threshold = unlike the split)."""
        return [OODCheck(float(d), self.threshold, bool(d > self.threshold)) for d in self.distances(images)]


def ood_reference(
    images, *, quantile: float = OOD_QUANTILE, max_reference: int = OOD_MAX_REFERENCE, seed: int = 0
) -> OODReference:
    """Build the reference from a split's uint8 images (N, H, W[, C]), N >= 2.

    The threshold comes from the split itself: for each reference image, the RMS distance to its
    nearest *other* reference image; the ``quantile`` of those distances. An upload farther than
    that from every split image is further out than (1 - quantile) of the split's own images.
    """
    if not 0.0 < float(quantile) <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
    flat = _flat_unit(images)
    if flat.shape[0] < 2:
        raise ValueError(f"an OOD reference needs at least 2 split images, got {flat.shape[0]}")
    if flat.shape[0] > max_reference:
        keep = np.sort(np.random.default_rng(seed).choice(flat.shape[0], size=int(max_reference), replace=False))
        flat = flat[keep]
    d = rms_distances(flat, flat)
    np.fill_diagonal(d, np.inf)
    threshold = float(np.quantile(d.min(axis=1), float(quantile)))
    flat.setflags(write=False)
    return OODReference(reference=flat, threshold=threshold, quantile=float(quantile))
