"""Uploaded image files: written to a content-addressed folder the data loaders read back.

``save_upload_folder`` writes member and non-member uploads to ``<root>/uploads/<hash>/`` (the same
files give the same folder, so the same data fingerprint); ``encode_png`` turns an image of a split
back into PNG bytes to send it through the same upload path. Decoding and its checks happen when
the folder is loaded (:func:`mia_core.data.load_image_folder`).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mia_core.data import IMAGE_SUFFIXES

__all__ = ["encode_png", "save_upload_folder"]


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
