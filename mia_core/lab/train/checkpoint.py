"""What a training run writes and reads back: the model folder (:func:`save_pipeline`), its
``train_log.json`` (:func:`read_train_log`), the ``mia train`` command that reproduces it
(:func:`train_command`) and resumable checkpoints (safetensors + JSON, no pickles).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mia_core.data import Split
from mia_core.lab.train.config import TrainConfig
from mia_core.lab.train.dp import DPState

if TYPE_CHECKING:
    from mia_core.lab.train.loop import TrainResult

CHECKPOINT_FORMAT = "mia-train-checkpoint/1"
CHECKPOINT_DIR = "checkpoint"
_STATE_FILE = "training_state.safetensors"
_STATE_JSON = "training_state.json"
# Fields a resumed run may change; everything else must match the checkpoint.
_RESUMABLE_CHANGES = ("steps", "checkpoint_every")


#: model_index.json of each kind of folder a training run writes (diffusers' pipeline class and components).
MODEL_INDEX: dict[str, dict[str, Any]] = {
    "ddpm": {
        "_class_name": "DDPMPipeline",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    },
    "ve": {
        "_class_name": "ScoreSdeVePipeline",
        "scheduler": ["diffusers", "ScoreSdeVeScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    },
    # diffusers' unconditional latent pipeline (LDMPipeline) names its autoencoder "vqvae"; the lab reads
    # an AutoencoderKL from vae/ (as Stable Diffusion folders do), so the component is listed as such.
    "latent": {
        "_class_name": "LDMPipeline",
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
}


def save_pipeline(
    unet: Any,
    schedule: Any,
    split: Split,
    cfg: Any,
    result: TrainResult,
    out_dir: Path,
    *,
    device: str,
    command: str,
    snapshot_of: int | None = None,
    vae: Any = None,
    extra_log: dict[str, Any] | None = None,
) -> None:
    """Write the diffusers pipeline folder, the split manifest and the training log.

    The one writer of every training run (DDPM, latent, VE-SDE): ``unet/`` (safetensors),
    ``scheduler/scheduler_config.json`` (``schedule.to_scheduler_config()``: a DDPM's NoiseSchedule or a
    VESchedule), ``vae/`` when a ``vae`` is given (latent diffusion), ``model_index.json`` (see
    :data:`MODEL_INDEX`), ``split.json`` and ``train_log.json``. ``cfg`` is the UNet's config (a
    TrainConfig, or a VETrainConfig: anything with ``to_dict()``); ``extra_log`` adds keys to the log
    (``kind``, the VAE's training record).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out_dir / "unet", safe_serialization=True)
    kind = "latent" if vae is not None else ("ve" if getattr(schedule, "kind", "") == "ve" else "ddpm")
    if vae is not None:
        vae.to("cpu").save_pretrained(out_dir / "vae", safe_serialization=True)
    scheduler_config = schedule.to_scheduler_config()
    if vae is not None:  # latents have unit std, not a [-1, 1] range: the sampler must not clip x0_hat
        scheduler_config["clip_sample"] = False
    (out_dir / "scheduler").mkdir(exist_ok=True)
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config, indent=2))
    (out_dir / "model_index.json").write_text(json.dumps(MODEL_INDEX[kind], indent=2))
    split.save(out_dir / "split.json")
    log = {
        "command": command,
        **({"kind": kind} if kind != "ddpm" else {}),
        "config": cfg.to_dict(),
        "device": device,
        "seconds": round(result.seconds, 1),
        "weights": "EMA",
        "n_members": split.n_members,
        "data_fingerprint": split.data_fingerprint,
        "loss_curve": [[s, round(v, 6)] for s, v in result.losses],
        "dp": result.dp,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    log.update(extra_log or {})
    if result.resumed_at:
        log["resumed_at"] = list(result.resumed_at)
    if snapshot_of is not None:
        log["snapshot_of"] = {
            "steps": snapshot_of,
            "note": f"EMA weights at step {cfg.steps} of a {snapshot_of}-step run",
        }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))


def train_command(data: str, out: str, cfg: TrainConfig) -> str:
    """The ``mia train`` command line that trains exactly ``cfg`` on ``data`` into ``out``.

    Every flag that changes the weights is spelled out; ``--log-every`` only when it differs from
    the default (it sets the loss curve's resolution, not the weights).
    """
    import shlex

    defaults = TrainConfig()
    args: list[Any] = [
        "mia",
        "train",
        "--data",
        data,
        "--out",
        out,
        "--steps",
        cfg.steps,
        "--batch-size",
        cfg.batch_size,
        "--lr",
        f"{cfg.lr:g}",
        "--warmup-steps",
        cfg.warmup_steps,
        "--ema-decay",
        f"{cfg.ema_decay:g}",
        "--channels",
        ",".join(map(str, cfg.block_out_channels)),
        "--layers-per-block",
        cfg.layers_per_block,
        "--schedule",
        cfg.schedule,
        "--augment",
        cfg.augment,
    ]
    if not cfg.attention:
        args.append("--no-attention")
    if cfg.dp_epsilon is not None:
        args += ["--dp-epsilon", f"{cfg.dp_epsilon:g}"]
        if cfg.dp_delta is not None:
            args += ["--dp-delta", f"{cfg.dp_delta:g}"]
        args += ["--dp-max-grad-norm", f"{cfg.dp_max_grad_norm:g}"]
        if cfg.dp_accountant != defaults.dp_accountant:
            args += ["--dp-accountant", cfg.dp_accountant]
    if cfg.log_every != defaults.log_every:
        args += ["--log-every", cfg.log_every]
    args += ["--seed", cfg.seed]
    return " ".join(shlex.quote(str(a)) for a in args)


def read_train_log(folder: str | Path) -> dict[str, Any] | None:
    """A model folder's ``train_log.json`` (or its parent's, for a ``unet/`` folder), None if it has none.

    Logs of older versions are brought up to date: ``config.augment`` is filled in from
    ``config.hflip`` and ``dp`` is None when absent. With DP, ``log["dp"]`` holds
    ``target_epsilon, delta, noise_multiplier, max_grad_norm, achieved_epsilon, accountant,
    sample_rate`` (see :func:`train`). A log that is not valid JSON raises ``ValueError`` naming it.
    """
    folder = Path(folder)
    for path in (folder / "train_log.json", folder.parent / "train_log.json"):
        if path.is_file():
            break
    else:
        return None
    try:
        log = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"training log {path} is not valid JSON: {err}") from err
    if not isinstance(log, dict):
        raise ValueError(f"training log {path} is not a JSON object")
    config = log.get("config")
    if isinstance(config, dict) and "augment" not in config:
        config["augment"] = "hflip" if config.get("hflip") else "none"
    log.setdefault("dp", None)
    return log


@dataclass
class LoopState:
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    running_sum: float = 0.0
    running_n: int = 0
    seconds: float = 0.0
    resumed_at: list[int] = field(default_factory=list)


def _members_digest(split: Split) -> str:
    return hashlib.sha256("\n".join(split.member_ids).encode()).hexdigest()[:16]


def save_checkpoint(
    folder: Path,
    cfg: TrainConfig,
    split: Split,
    unet: Any,
    ema: Any,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    dp: DPState | None,
    state: LoopState,
) -> None:
    """Model, EMA, optimizer moments and RNG states as safetensors; the rest as JSON (no pickles).

    Files are written under temporary names and renamed, the JSON last, so a run killed while
    saving leaves the previous checkpoint readable (the step is in both files and must agree).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in unet.state_dict().items():
        tensors[f"unet.{name}"] = value.detach().cpu().contiguous()
    for name, value in ema.state_dict().items():
        tensors[f"ema.{name}"] = value.detach().cpu().contiguous()
    opt_state = opt.state_dict()
    for index, param_state in opt_state["state"].items():
        for key, value in param_state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.batches"] = gen.get_state()
    if dp is not None:
        tensors["rng.dp_noise"] = dp.noise_generator.get_state().cpu()
    tmp = folder / (_STATE_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(state.step)})
    os.replace(tmp, folder / _STATE_FILE)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": state.step,
        "config": cfg.to_dict(),
        "members_digest": _members_digest(split),
        "n_members": split.n_members,
        "losses": [[s, v] for s, v in state.losses],
        "running_sum": state.running_sum,
        "running_n": state.running_n,
        "seconds": state.seconds,
        "resumed_at": state.resumed_at,
        "dp_accountant_history": [list(h) for h in dp.history()] if dp is not None else None,
        "torch": torch.__version__,
    }
    tmp_json = folder / (_STATE_JSON + ".tmp")
    tmp_json.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_json, folder / _STATE_JSON)


def load_checkpoint(
    folder: Path,
    cfg: TrainConfig,
    split: Split,
    unet: Any,
    ema: Any,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    dp: DPState | None,
) -> LoopState:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if (folder / CHECKPOINT_DIR / _STATE_JSON).is_file():
        folder = folder / CHECKPOINT_DIR
    meta_path, state_path = folder / _STATE_JSON, folder / _STATE_FILE
    if not meta_path.is_file() or not state_path.is_file():
        raise ValueError(f"no training checkpoint in {folder} (expected {_STATE_JSON} and {_STATE_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: unsupported checkpoint format {meta.get('format')!r}")
    with safe_open(str(state_path), framework="pt") as fh:
        tensor_step = int((fh.metadata() or {}).get("step", -1))
    if tensor_step != meta["step"]:
        raise ValueError(
            f"{folder}: the tensors are of step {tensor_step} but the JSON of step {meta['step']} "
            "(a save was interrupted); resume from an earlier copy or start again"
        )
    saved_cfg = TrainConfig.from_dict(meta["config"])
    allowed = () if cfg.uses_dp else _RESUMABLE_CHANGES  # DP: sigma was set for the whole run's steps
    allowed = allowed + ("checkpoint_every",)
    differ = [
        f.name
        for f in dataclasses.fields(cfg)
        if f.name not in allowed and getattr(cfg, f.name) != getattr(saved_cfg, f.name)
    ]
    if differ:
        diffs = ", ".join(f"{k}: {getattr(saved_cfg, k)!r} -> {getattr(cfg, k)!r}" for k in differ)
        raise ValueError(f"cannot resume from {folder}: the config differs ({diffs})")
    if meta["members_digest"] != _members_digest(split):
        raise ValueError(f"cannot resume from {folder}: it was trained on other members")
    if meta["step"] > cfg.steps:
        raise ValueError(f"cannot resume from {folder}: it is at step {meta['step']}, beyond steps={cfg.steps}")

    tensors = load_file(str(state_path))
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    # The hyper-parameters come from cfg (checked equal above) and the lr is set every step.
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["rng.batches"])
    if dp is not None:
        dp.noise_generator.set_state(tensors["rng.dp_noise"])
        dp.restore_history(meta["dp_accountant_history"] or [])
    return LoopState(
        int(meta["step"]),
        [(int(s), float(v)) for s, v in meta["losses"]],
        float(meta["running_sum"]),
        int(meta["running_n"]),
        float(meta["seconds"]),
        list(meta.get("resumed_at", [])),
    )
