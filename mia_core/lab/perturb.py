"""What-if: simple perturbations of an uploaded image and how its attack score moves.

A person asking "was my image used?" may hold a resized, recompressed, cropped or mirrored copy of a
training image. This module makes such copies of one image and scores them all with one attack, with
the **same noise draws** as the original (every copy is scored under the original's id, and the
attacks derive their noise from the id), so the score differences come from the image alone.

    perturb(img, kind, level)   uint8 (H, W[, C]) -> uint8 of the same shape
                                 kind: "blur" (Gaussian, sigma in pixels of this image), "jpeg"
                                 (quality 1..95), "crop" (keep the central fraction, resized back),
                                 "flip" (left-right; level ignored)
    variants(img)               the original and DEFAULT_PERTURBATIONS of it, as Variant records
    score_variants(...)         their scores with one attack, converted like an upload

Nothing here draws: the figure is :func:`mia_core.views.verdict.perturbation_figure`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "DEFAULT_PERTURBATIONS", "Variant", "decode_image", "perturb", "variants", "score_variants"]

KINDS = ("original", "blur", "jpeg", "crop", "flip")

#: (kind, level) pairs shown by default: mild and strong of each, and a mirror image.
DEFAULT_PERTURBATIONS: tuple[tuple[str, float], ...] = (
    ("blur", 0.5),
    ("blur", 1.0),
    ("jpeg", 75),
    ("jpeg", 30),
    ("crop", 0.9),
    ("crop", 0.75),
    ("flip", 0),
)


@dataclass(frozen=True, eq=False)
class Variant:
    """One copy of the image: ``kind`` and ``level`` as given to :func:`perturb`, the uint8 image, a label."""

    kind: str
    level: float
    image: np.ndarray

    @property
    def label(self) -> str:
        if self.kind == "original":
            return "original"
        if self.kind == "blur":
            return f"blur σ={self.level:g} px"
        if self.kind == "jpeg":
            return f"JPEG quality {int(self.level)}"
        if self.kind == "crop":
            return f"crop to {self.level:.0%}"
        return "flipped left-right"


def decode_image(data: bytes) -> np.ndarray:
    """An image file's bytes as uint8 (H, W) (grey) or (H, W, 3) (colour, alpha dropped), at its own size."""
    from PIL import Image

    with Image.open(io.BytesIO(bytes(data))) as img:
        grey = img.mode in ("1", "L", "LA", "I", "I;16", "F")
        return np.asarray(img.convert("L" if grey else "RGB"), dtype=np.uint8)


def _pil(image: np.ndarray):
    from PIL import Image

    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)):
        raise ValueError(f"perturb expects a uint8 image (H, W) or (H, W, 1|3|4), got {a.dtype} {a.shape}")
    return Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a), a.shape


def _back(img, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(img, dtype=np.uint8)
    return out.reshape(shape) if out.size == int(np.prod(shape)) else out


def perturb(image: np.ndarray, kind: str, level: float = 0) -> np.ndarray:
    """A perturbed copy of a uint8 image (H, W) or (H, W, C), same shape and dtype.

    ``blur``: Gaussian blur, ``level`` = sigma in pixels of this image (> 0). ``jpeg``: encode and
    decode as JPEG at quality ``level`` (1..95). ``crop``: keep the central ``level`` fraction of each
    side (0 < level <= 1) and resize it back (bicubic). ``flip``: mirror left-right. ``original``: a copy.
    """
    from PIL import Image, ImageFilter

    pil, shape = _pil(image)
    if kind == "original":
        return np.array(image, dtype=np.uint8, copy=True)
    if kind == "flip":
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8)[:, ::-1])
    if kind == "blur":
        if not float(level) > 0:
            raise ValueError(f"blur needs a sigma > 0 (pixels), got {level!r}")
        return _back(pil.filter(ImageFilter.GaussianBlur(radius=float(level))), shape)
    if kind == "jpeg":
        if not 1 <= int(level) <= 95:
            raise ValueError(f"JPEG quality must be in 1..95, got {level!r}")
        buf = io.BytesIO()
        pil.convert("RGB" if pil.mode in ("RGBA", "P") else pil.mode).save(buf, format="JPEG", quality=int(level))
        out = Image.open(io.BytesIO(buf.getvalue()))
        out = out.convert(pil.mode) if out.mode != pil.mode else out
        return _back(out, shape)
    if kind == "crop":
        if not 0 < float(level) <= 1:
            raise ValueError(f"crop keeps a fraction in (0, 1] of each side, got {level!r}")
        w, h = pil.size
        cw, ch = max(1, round(w * float(level))), max(1, round(h * float(level)))
        left, top = (w - cw) // 2, (h - ch) // 2
        return _back(pil.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC), shape)
    raise ValueError(f"unknown perturbation {kind!r}; expected one of {', '.join(KINDS)}")


def variants(image: np.ndarray, perturbations: Sequence[tuple[str, float]] = DEFAULT_PERTURBATIONS) -> list[Variant]:
    """The original image and one :class:`Variant` per (kind, level), in that order."""
    out = [Variant("original", 0, np.array(image, dtype=np.uint8, copy=True))]
    out += [Variant(kind, level, perturb(image, kind, level)) for kind, level in perturbations]
    return out


def score_variants(
    target, attack, image_id: str, images: Sequence[Variant], *, seed: int = 0, caption: str | None = None
) -> np.ndarray:
    """(len(images),) scores (higher = member) of each variant with ``attack``, converted like an upload.

    Each variant goes through :func:`mia_core.data.load_uploads` (the page's conversion to the
    target's resolution and channels) and is scored under ``image_id``, so all of them get the
    original's noise draws and only the image differs. ``caption``: the original's caption, the prompt
    of every variant on a text-to-image target conditioned on own captions (None: the empty prompt).
    """
    from mia_core.data import load_uploads
    from mia_core.lab.uploads import condition_uploads, encode_png

    if not images:
        raise ValueError("score_variants needs at least one variant")
    x0 = []
    for v in images:
        png = encode_png(v.image)
        up = load_uploads([("variant.png", png)], resolution=target.resolution, channels=target.channels)
        if up.images is None:
            raise ValueError(f"could not convert the {v.label} variant: {'; '.join(map(str, up.errors))}")
        x0.append(up.images.to_unit_range()[0])
    batch = np.stack(x0)
    (attack,), captions = condition_uploads(target, [attack], len(images), [caption or ""] * len(images))
    text = {"captions": captions} if captions is not None else {}
    res = attack.run(target, batch, ids=[str(image_id)] * len(images), seed=seed, **text)
    return np.asarray(res.scores, dtype=float)
