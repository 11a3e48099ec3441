"""mia_core.views.images: the one uint8 conversion, the one nearest-neighbour upscale, display helpers."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from mia_core import sampling
from mia_core.data import ImageSet
from mia_core.lab import teaching
from mia_core.views import images as VI
from mia_core.views import results


def test_to_uint8_range_shapes_and_clipping():
    x = np.array([[[-1.0, 0.0], [1.0, 0.5]]])  # (C=1, H=2, W=2)
    u = VI.to_uint8(x)
    assert u.shape == (2, 2, 1) and u.dtype == np.uint8
    assert u[0, 0, 0] == 0 and u[1, 0, 0] == 255 and u[0, 1, 0] == 128 and u[1, 1, 0] == 191
    clipped = VI.to_uint8(torch.linspace(-1.5, 1.5, 64).view(1, 8, 8))
    assert clipped.min() == 0 and clipped.max() == 255
    batch = VI.to_uint8(torch.zeros(2, 3, 4, 5))
    assert batch.shape == (2, 4, 5, 3) and (batch == 128).all()
    with pytest.raises(ValueError, match=r"\(C, H, W\).*\(2, 2\)"):
        VI.to_uint8(np.zeros((2, 2)))


def test_to_uint8_inverts_to_unit_range():
    pixels = np.random.default_rng(0).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
    images = ImageSet(images=pixels, ids=("a", "b", "c"), source="test")
    assert np.array_equal(VI.to_uint8(images.to_unit_range()), pixels)


def test_one_uint8_conversion_in_the_project():
    # The engine (DDIM samples) and the views share the one function; the lab keeps no display copy.
    assert sampling.to_uint8 is VI.to_uint8
    for name in ("to_display", "noise_to_display", "upscale_nearest", "display_image", "to_uint8"):
        assert not hasattr(teaching, name), name
    assert results.upscale_nearest is VI.upscale_nearest and results.to_uint8 is VI.to_uint8


def test_upscale_nearest_is_exact_integer_blocks():
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = VI.upscale_nearest(img, 7)  # factor 7 // 3 = 2
    assert np.array_equal(big, np.kron(img, np.ones((2, 2), np.uint8)))
    digit = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(VI.upscale_nearest(digit, 160), np.repeat(np.repeat(digit, 20, 0), 20, 1))
    rgb = np.random.default_rng(0).integers(0, 255, (4, 4, 3), dtype=np.uint8)
    big_rgb = VI.upscale_nearest(rgb, 13)  # factor 3: 12 x 12, never stretched to 13
    assert big_rgb.shape == (12, 12, 3)
    assert np.array_equal(big_rgb[::3, ::3], rgb) and np.array_equal(big_rgb[2::3, 2::3], rgb)
    grey = VI.upscale_nearest(np.zeros((8, 8, 1), np.uint8), 64)
    assert grey.shape == (64, 64)  # one channel comes back 2-D
    large = np.zeros((100, 50), np.uint8)
    assert VI.upscale_nearest(large, 48).shape == (100, 50)  # never shrunk
    with pytest.raises(ValueError, match="size"):
        VI.upscale_nearest(img, 0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        VI.upscale_nearest(np.zeros((1, 2, 2, 1)), 8)


def test_display_image_and_noise():
    x = torch.linspace(-1, 1, 64).view(1, 8, 8)
    shown = VI.display_image(x, 16)
    assert shown.shape == (16, 16) and np.array_equal(shown[::2, ::2], VI.to_uint8(x)[:, :, 0])
    noise = torch.tensor([[[-3.0, 0.0, 3.0, 9.0]]])
    assert VI.noise_to_uint8(noise)[0, :, 0].tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match="one image"):
        VI.display_image(torch.zeros(2, 1, 8, 8))


def test_png_data_uri_roundtrip():
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    uri = VI.png_data_uri(img)
    assert uri.startswith("data:image/png;base64,")
    back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert np.array_equal(back, img)
    grey = VI.png_data_uri(np.zeros((4, 4, 1), np.uint8))
    assert np.asarray(Image.open(io.BytesIO(base64.b64decode(grey.split(",", 1)[1])))).shape == (4, 4)
