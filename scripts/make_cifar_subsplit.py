"""Write a small-member CIFAR-10 split as an .npz the project reads (``images``, ``ids``, ``is_member``).

Used for the 32x32 comparison of SecMI, SecMI-NN and quantile regression in the README: few
members (so a short GPU training run sees each one many times) and many non-members (so the
attacks' training parts and TPR at 1 % FPR are measurable). The CIFAR-10 images stay outside the
repository: pass the path of ../shared/data/cifar10/cifar10_subset.npz.

    python scripts/make_cifar_subsplit.py ../shared/data/cifar10/cifar10_subset.npz .whl/cifar256.npz
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="cifar10_subset.npz (uint8 images (N, 32, 32, 3))")
    parser.add_argument("out", help="output .npz")
    parser.add_argument("--n-images", type=int, default=2256, help="the first N images of the source")
    parser.add_argument("--n-members", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with np.load(args.source) as z:
        images = z["images"][: args.n_images]
    if args.n_members >= len(images):
        raise SystemExit(f"--n-members {args.n_members} must be below the number of images {len(images)}")
    perm = np.random.default_rng(args.seed).permutation(len(images))
    is_member = np.zeros(len(images), dtype=bool)
    is_member[perm[: args.n_members]] = True
    ids = np.array([f"cifar-{i:04d}" for i in range(len(images))])
    np.savez_compressed(args.out, images=images, ids=ids, is_member=is_member)
    print(f"wrote {args.out}: {int(is_member.sum())} members, {int((~is_member).sum())} non-members")


if __name__ == "__main__":
    main()
