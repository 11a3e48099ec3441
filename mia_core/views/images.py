"""Images as the pages show them: uint8, enlarged with sharp pixels, or as PNG data URIs.

One helper per job, used by every page (Compare, Sample explorer, Learn, Target, Data, "Was my
image used?") and by the presenter:

    to_uint8(x)            model space [-1, 1], (C, H, W) / (N, C, H, W) -> uint8 channels last
                           (defined once in :mod:`mia_core.data.images`, beside its inverse)
    noise_to_uint8(eps)    a noise image (about N(0, 1)) with +-3 sigma mapped to black..white
    upscale(img, smooth=)  (H, W) / (H, W, C) uint8 enlarged: nearest-neighbour (sharp pixels, the default)
                           or smooth (bicubic, a display option for low-resolution targets: the Presenter)
    upscale_nearest(img)   upscale(img, smooth=False): every pixel a k x k block, k an integer
    upscale_caption(smooth) the words a caption uses for either
    display_image(x)       upscale(to_uint8(x)) for one model-space image
    png_data_uri(img)      "data:image/png;base64,..." (thumbnails in tables)

Nothing here runs a model; only numpy and PIL.
"""

from __future__ import annotations

import base64

import numpy as np

from mia_core.data.images import to_uint8

__all__ = [
    "DISPLAY_SIZE",
    "to_uint8",
    "noise_to_uint8",
    "upscale",
    "upscale_nearest",
    "upscale_caption",
    "display_image",
    "png_data_uri",
]

#: Default displayed size of an enlarged image, in pixels (an 8x8 digit becomes 20x20 blocks).
DISPLAY_SIZE = 160


def noise_to_uint8(eps) -> np.ndarray:
    """A noise image (C, H, W), roughly N(0, 1), as uint8 (H, W, C) with -3..+3 sigma -> 0..255 (clipped)."""
    a = eps.detach().cpu().numpy() if hasattr(eps, "detach") else np.asarray(eps)
    if a.ndim == 3 and a.shape[0] not in (1, 3):  # a latent's noise (e.g. 4 channels): its first channel
        a = a[:1]
    return to_uint8(np.asarray(a, dtype=np.float64) / 3.0)


def upscale_nearest(image: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """Nearest-neighbour enlargement of a uint8 (H, W) or (H, W, C) image by an integer factor.

    The factor is ``k = max(1, size // max(H, W))``: every input pixel becomes exactly one k x k
    block (``np.kron`` with a block of ones), so pixels stay square and sharp and no new value
    appears; the result is (k H, k W[, C]), at most ``size`` on its longer side unless the image is
    already larger (then it is returned unchanged, never shrunk). A one-channel (H, W, 1) image
    comes back as (k H, k W), so PIL and ``st.image`` treat it as grey.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"upscale_nearest expects (H, W) or (H, W, C), got shape {a.shape}")
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size!r}")
    factor = max(1, int(size) // max(a.shape[0], a.shape[1]))
    a = np.repeat(np.repeat(a, factor, axis=0), factor, axis=1)
    return a.astype(np.uint8, copy=False)


def upscale(image: np.ndarray, size: int = DISPLAY_SIZE, *, smooth: bool = False) -> np.ndarray:
    """The one upscale helper: a uint8 (H, W) or (H, W, C) image enlarged for display.

    ``smooth=False`` (the default everywhere but the Presenter): :func:`upscale_nearest`, square sharp
    pixels, no new value. ``smooth=True``: bicubic resampling (PIL) to the same size as the nearest
    version, ``(k H, k W)`` with ``k = max(1, size // max(H, W))``, so an 8x8 digit reads as a glyph at
    talk distance; it invents in-between values, so captions say so (:func:`upscale_caption`).
    """
    sharp = upscale_nearest(image, size)
    if not smooth or sharp.shape[:2] == np.asarray(image).shape[:2]:
        return sharp
    from PIL import Image

    a = np.asarray(image, dtype=np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    out = Image.fromarray(a).resize((sharp.shape[1], sharp.shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def upscale_caption(smooth: bool) -> str:
    """How an enlarged image was drawn, for its caption: ``"smoothly enlarged (bicubic)"`` or sharp pixels."""
    return "smoothly enlarged (bicubic, display only)" if smooth else "enlarged, pixels kept sharp"


def display_image(x, size: int = DISPLAY_SIZE, *, smooth: bool = False) -> np.ndarray:
    """One model-space image (C, H, W) in [-1, 1] as shown: ``upscale(to_uint8(x), size, smooth=smooth)``."""
    shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
    if len(shape) != 3:
        raise ValueError(f"display_image expects one image (C, H, W), got shape {shape}")
    return upscale(to_uint8(x), size, smooth=smooth)


def png_data_uri(image: np.ndarray) -> str:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3) image as a ``data:image/png;base64,...`` URI (for ImageColumn).

    The PNG bytes are those of :func:`mia_core.lab.uploads.encode_png` (the one PNG encoder).
    """
    from mia_core.lab.uploads import encode_png

    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")
