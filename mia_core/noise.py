"""Per-image Gaussian noise from a counter-based generator: deterministic, batch-independent, vectorised.

An image's noise must not depend on which batch or subset it is scored in, so it is a function
of (run seed, image id, element index) alone. Drawing it from one seeded ``torch.Generator`` per
image is a Python loop over images and became the bottleneck of the loss attack on a GPU, so
the noise is computed instead, in one vectorised pass on the attack's device:

    key_i         two 31-bit integers from sha256(f"{seed}:{id_i}")              (per image)
    h(x)          a 32-bit integer hash (xor-shift / multiply rounds), in int64 without overflow
    bits_{i,j}    h(h((j + key_i[0]) mod 2^32) xor key_i[1])                       (per element j)
    u_{i,j}       (bits >> 8 + 1/2) / 2^24, uniform on (0, 1)
    z             sqrt(-2 ln u_{i,2m}) cos(2 pi u_{i,2m+1})                         (Box-Muller)

Integer steps are exact on every device; the float steps differ between CPU and GPU by float32
rounding only.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import torch

_MASK32 = 0xFFFFFFFF
_MULT = 0x045D9F3B  # < 2^27: x * _MULT < 2^59 stays inside int64


def image_key(seed: int, image_id: str) -> tuple[int, int]:
    """Two 31-bit keys for one image, stable across runs, batches and subsets."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF, int.from_bytes(digest[4:8], "little") & 0x7FFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = (x * _MULT) & _MASK32
    x = x ^ (x >> 16)
    x = (x * _MULT) & _MASK32
    return x ^ (x >> 16)


def per_image_noise(
    ids: Sequence[str], seed: int, draws: int, shape: tuple[int, ...], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """N(0, I) noise of shape (B, draws, *shape), float32, on ``device``; row i depends only on (seed, ids[i])."""
    n_elements = draws * math.prod(shape)
    keys = torch.tensor([image_key(seed, str(i)) for i in ids], dtype=torch.int64, device=device)  # (B, 2)
    counter = torch.arange(2 * n_elements, dtype=torch.int64, device=device)  # two uniforms per value
    bits = _hash32(_hash32((counter[None, :] + keys[:, :1]) & _MASK32) ^ keys[:, 1:])
    u = ((bits >> 8).to(torch.float32) + 0.5) * (1.0 / 2**24)
    u1, u2 = u[:, 0::2], u[:, 1::2]
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.view(len(ids), draws, *shape)
