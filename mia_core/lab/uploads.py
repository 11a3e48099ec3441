"""Uploaded image files: written to a content-addressed folder the data loaders read back.

``save_upload_folder`` writes member and non-member uploads to ``<root>/uploads/<hash>/`` (the same
files give the same folder, so the same data fingerprint); ``encode_png`` turns an image of a split
back into PNG bytes to send it through the same upload path. Decoding and its checks happen when
the folder is loaded (:func:`mia_core.data.load_image_folder`).
"""

from __future__ import annotations

import hashlib
import io
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
    members: Sequence[tuple[str, bytes]],
    nonmembers: Sequence[tuple[str, bytes]],
) -> Path:
    """Write uploaded member and non-member files to ``<root>/uploads/<hash>/{members,nonmembers}/``.

    The folder name is a hash of the names and bytes, so the same uploads give the same folder
    (and the same data fingerprint). File names are reduced to safe characters; the bytes are
    written as they are (decoding and its checks happen when the folder is loaded).
    """
    if not members or not nonmembers:
        raise ValueError("upload at least one member image and one non-member image")
    h = hashlib.sha256()
    for role, files in (("members", members), ("nonmembers", nonmembers)):
        for name, data in files:
            h.update(f"{role}/{name}\0{len(data)}\0".encode())
            h.update(bytes(data))
    folder = Path(root) / "uploads" / h.hexdigest()[:16]
    for role, files in (("members", members), ("nonmembers", nonmembers)):
        sub = folder / role
        sub.mkdir(parents=True, exist_ok=True)
        used: set[str] = set()
        for name, data in files:
            (sub / _safe_file_name(name, used)).write_bytes(bytes(data))
    return folder
