"""Shadow models for the white-box GSA attacks: trained with ``mia train``'s code, cached on disk.

A shadow model imitates the target: the same UNet architecture and training recipe (read from the
target's ``train_log.json``, as ``mia train`` writes it), trained on images the attacker knows the
membership of. Here those are a pool of the experiment's **non-members** (never a target member),
chosen by the attack (``GSA1.partition``); each shadow trains on a seeded half of the pool
(``GSA1.shadow_splits``). The attack then scores the target only on the images outside the pool.

What is kept small, and why: on a 2-core CPU a shadow trained like the embedded default (12,000
steps of 128 images) would take hours, so the shadows run ``shadow_steps`` steps (default 400) of
``shadow_batch_size`` images (default 64), with an EMA decay capped so that its horizon is a tenth of the
run (the target's 0.999 would leave most of the random initial weights in a 400-step EMA). They leak less than the target, which costs GSA accuracy
when their features are transferred to it: the numbers on the default target are for these small
shadows.

Cache: ``<store>/shadows/<key>/`` holds each trained shadow (a diffusers folder with ``split.json``
and ``train_log.json``); the key digests the recipe, the shadow's images (ids and pixels) and its
seed, so a second run of GSA costs only the gradient features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mia_core.attacks.gsa import GSA1, Shadow
from mia_core.data import ImageSet, Split
from mia_core.lab.train import TrainConfig, read_train_log, train
from mia_core.paths import DEFAULT_TARGET_DIR
from mia_core.target import Target, load_folder


def target_recipe(target: Target) -> TrainConfig:
    """The training config of the target: its ``train_log.json`` when ``mia train`` made it, else the
    architecture read from its UNet config with ``TrainConfig``'s other defaults."""
    folder = DEFAULT_TARGET_DIR if target.source == "default" else Path(target.source)
    log = read_train_log(folder) if folder.is_dir() else None
    if log and isinstance(log.get("config"), dict):
        return TrainConfig.from_dict(log["config"])
    cfg = target.unet.config
    return TrainConfig(
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=int(cfg.layers_per_block),
        attention=any("Attn" in b for b in cfg.down_block_types),
        norm_num_groups=int(cfg.norm_num_groups),
        num_timesteps=target.schedule.num_timesteps,
        schedule="cosine" if target.schedule.kind == "cosine" else "linear",
    )


def shadow_config(target: Target, attack: GSA1, index: int, seed: int) -> TrainConfig:
    """The target's recipe with the attack's (small) step count and batch size and a seed per shadow."""
    base = target_recipe(target)
    steps = attack.params.shadow_steps
    # A short run cannot keep the target's EMA: with decay 0.999, 400 steps leave 67 % of the random initial
    # weights in the EMA (0.999^400). The EMA horizon 1 / (1 - decay) is capped at a tenth of the run.
    ema_decay = min(base.ema_decay, 1.0 - 10.0 / steps) if steps > 10 else 0.0
    return dataclasses.replace(
        base,
        steps=steps,
        batch_size=attack.params.shadow_batch_size,
        warmup_steps=min(base.warmup_steps, steps),
        ema_decay=ema_decay,
        log_every=max(1, min(base.log_every, steps)),
        checkpoint_every=0,
        seed=int(seed) * 1000 + index + 1,
    )


def _to_uint8(x0: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), the inverse of ImageSet.to_unit_range for uint8 images."""
    return (
        np.clip(np.rint((np.asarray(x0, dtype=np.float64) + 1.0) * 127.5), 0, 255)
        .astype(np.uint8)
        .transpose(0, 2, 3, 1)
    )


def shadow_key(cfg: TrainConfig, images: ImageSet, member_ids: Sequence[str], nonmember_ids: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    index = images.index_of()
    for i in (*member_ids, "|", *nonmember_ids):
        h.update(i.encode() + b"\0")
        if i != "|":
            h.update(images.images[index[i]].tobytes())
    return h.hexdigest()[:20]


def shadow_targets(
    attack: GSA1,
    target: Target,
    x0: np.ndarray,
    ids: Sequence[str],
    is_member: np.ndarray,
    *,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Shadow]:
    """Train (or read from ``cache_dir``) the attack's shadow models; returns them on the target's device.

    x0 : (N, C, H, W) in [-1, 1], the experiment's images; ids, is_member : their ids and labels.
    progress : ``progress(done, total)`` in training steps over all shadows that are not cached.
    """
    ids = tuple(str(i) for i in ids)
    images = ImageSet(_to_uint8(np.asarray(x0)), ids, source="attack images")
    pool_ids, _ = attack.partition(ids, is_member, seed)
    if len(pool_ids) < 4:
        raise ValueError(
            f"{attack.name}: the shadow pool has {len(pool_ids)} non-members; it needs at least 4 "
            f"(shadow_fraction={attack.params.shadow_fraction} of {int((~np.asarray(is_member)).sum())})"
        )
    splits = attack.shadow_splits(pool_ids, seed)
    cache = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="mia-shadows-"))
    plans = []
    for index, (members, nonmembers) in enumerate(splits):
        cfg = shadow_config(target, attack, index, seed)
        plans.append((cfg, members, nonmembers, cache / shadow_key(cfg, images, members, nonmembers)))
    todo = [p for p in plans if not (p[3] / "train_log.json").is_file()]
    total, done = sum(p[0].steps for p in todo), 0
    shadows = []
    for index, (cfg, members, nonmembers, folder) in enumerate(plans):
        if (cfg, members, nonmembers, folder) in todo:
            split = Split(
                members,
                nonmembers,
                seed=None,
                data_fingerprint=images.fingerprint,
                source="attack images",
                description=f"{attack.name} shadow {index}: half of a pool of target non-members",
            )
            cache.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-shadow-", dir=cache))

            def step(s: int, _n: int, _loss: float, offset: int = done) -> None:
                if progress is not None:
                    progress(offset + s, total)

            train(
                images.subset(members),
                split,
                cfg,
                tmp,
                device=str(target.device),
                progress=step,
                command=f"shadow model {index} of {attack.name} (mia_core.lab.shadow)",
            )
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(tmp, folder)
            done += cfg.steps
        shadow = load_folder(folder, device=target.device, source=str(folder))
        _check_same_architecture(shadow, target)
        shadows.append(
            Shadow(
                shadow,
                members,
                nonmembers,
                f"shadow {index}: {len(members)} members + {len(nonmembers)} non-members, "
                f"{cfg.steps} steps of {cfg.batch_size} images",
            )
        )
    return shadows


def _check_same_architecture(shadow: Target, target: Target) -> None:
    a = [(n, tuple(p.shape)) for n, p in shadow.unet.named_parameters()]
    b = [(n, tuple(p.shape)) for n, p in target.unet.named_parameters()]
    if a != b:
        raise ValueError(
            "the shadow models' UNet differs from the target's (GSA's features are per parameter "
            "tensor): the target was not made by `mia train`, so its recipe is unknown"
        )
