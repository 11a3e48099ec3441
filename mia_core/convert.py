"""Convert the papers' own DDPM checkpoints (SecMI / PIA / ReDiffuse, the pytorch-ddpm code base)
into a diffusers folder (``unet/`` + ``scheduler/``, safetensors) that :func:`mia_core.target.load_target`
reads.

The checkpoint format (``w86763777/pytorch-ddpm main.py``; SecMI identical; PIA and ReDiffuse save
``ckpt-step{N}.pt``) is a dict ``{"net_model", "ema_model", "sched", "optim", "step", "x_T"}``. The
attacks use ``ema_model``; so does this converter by default. Keys carry a ``module.`` prefix when
the model was trained with ``--parallel``: it is stripped.

Safety: the file is read with ``torch.load(path, weights_only=True)`` only. Anything that is not
tensors and plain containers (dicts, lists, numbers, strings) is refused with :class:`ConvertError`;
nothing is ever unpickled otherwise, so a malicious ``.pt`` cannot run code here.

Architecture (pytorch-ddpm's ``UNet(T, ch, ch_mult, attn, num_res_blocks, dropout)``) is read from
the tensors' shapes: ``ch`` from ``head.weight``, the levels and ``num_res_blocks`` from where the
``downblocks.{i}.main`` (down-sampling) convolutions sit, ``ch_mult`` from each level's output
channels, ``attn`` from the levels whose ResBlocks carry ``attn.*`` weights, ``T`` from the rows of
the fixed sinusoidal table ``time_embedding.timembedding.0.weight``, and the resolution from ``x_T``.
Flags the user passes (``ch=...`` etc.) are checked against the shapes; a disagreement is an error.
``dropout`` is not in the weights (it only matters for training): 0.1, the papers' value, unless given.

Key map and settings (``../shared/reference/attacks-next.md`` section 10). The settings below
silently give wrong outputs when set otherwise, so they are fixed here, never read from elsewhere:

    time_embedding_type="positional", flip_sin_to_cos=False (max |delta| 2.62 otherwise),
    freq_shift=0 (1.92; google/ddpm-cifar10-32 uses 1), downsample_padding=1 (4.04 with 0),
    norm_eps=1e-5 (1.1e-4 with 1e-6), norm_num_groups=32, attention_head_dim=None (one head,
    scaled by C^-1/2), mid_block_scale_factor=1, act_fn="silu".

    time_embedding.timembedding.0.weight  (the fixed sin/cos table: dropped when it equals the formula,
                                             diffusers then computes it; else kept as time_proj.weight
                                             of a "learned" embedding, see choose_time_embedding)
    time_embedding.timembedding.1.*       -> time_embedding.linear_1.*, weight columns permuted to
                                             [0, 2, 4, ..., 1, 3, 5, ...] (pytorch-ddpm interleaves
                                             sin/cos, diffusers concatenates them; 2.08 otherwise)
    time_embedding.timembedding.3.*       -> time_embedding.linear_2.*
    head.*                                -> conv_in.*
    tail.0.* / tail.2.*                   -> conv_norm_out.* / conv_out.*
    ResBlock R: block1.0, block1.2, temb_proj.1, block2.0, block2.3, shortcut
                                          -> norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut
    R.attn.group_norm                     -> attentions.{j}.group_norm
    R.attn.proj_q/k/v/proj (1x1 convs)    -> attentions.{j}.to_q/to_k/to_v/to_out.0 (weight[:, :, 0, 0])
    downblocks.{(R+1) i + j}, j < R       -> down_blocks.{i}.resnets.{j} (+ attentions.{j})
    downblocks.{(R+1) i + R}.main         -> down_blocks.{i}.downsamplers.0.conv
    middleblocks.0 / middleblocks.1       -> mid_block.resnets.0 + mid_block.attentions.0 / mid_block.resnets.1
    upblocks.{(R+2) k + j}, j <= R        -> up_blocks.{k}.resnets.{j} (+ attentions.{j})
    upblocks.{(R+2) k + R + 1}.main       -> up_blocks.{k}.upsamplers.0.conv

with R = num_res_blocks, i the down level (0 = full resolution) and k the up level (0 = deepest).

The converted model is paired with the papers' schedule: ``DDPMScheduler`` with linear betas
``beta_1``..``beta_T`` (1e-4..0.02), T timesteps (0-based, the same integers in both models),
epsilon prediction, and takes pixels in [-1, 1] (the authors' loaders apply 2x - 1 to [0, 1] inputs).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

#: The papers' CIFAR-10 settings (config/CIFAR10.txt of pytorch-ddpm, used by SecMI and PIA).
PAPER_DEFAULTS = {"beta_1": 1e-4, "beta_T": 0.02, "T": 1000, "dropout": 0.1}
CONVERSION_FILE = "conversion.json"


class ConvertError(ValueError):
    """A checkpoint could not be converted; the message says why and what to do."""


@dataclass(frozen=True)
class DDPMArchitecture:
    """pytorch-ddpm's ``UNet`` hyper-parameters (``attn`` holds 0-based level indices)."""

    ch: int
    ch_mult: tuple[int, ...]
    attn: tuple[int, ...]
    num_res_blocks: int
    dropout: float
    in_channels: int
    out_channels: int
    resolution: int
    num_timesteps: int

    def describe(self) -> str:
        return (
            f"ch={self.ch}, ch_mult={list(self.ch_mult)}, attn={list(self.attn)}, "
            f"num_res_blocks={self.num_res_blocks}, dropout={self.dropout:g}, T={self.num_timesteps}, "
            f"{self.in_channels}x{self.resolution}x{self.resolution}"
        )


# -- reading -------------------------------------------------------------------------------------


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ``.pt`` checkpoint with ``torch.load(weights_only=True)``; refuse anything else.

    Raises :class:`ConvertError` when the file holds objects other than tensors and plain
    containers (the restricted unpickler stops before creating them: nothing runs), or is not a
    torch checkpoint at all.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConvertError(f"checkpoint {str(path)!r} not found (expected a .pt file)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()
        reason = next(
            (line for line in detail if "GLOBAL" in line or "Unsupported" in line), detail[0] if detail else ""
        )
        raise ConvertError(
            f"refusing to load {path}: it holds objects other than tensors and plain containers "
            f"({reason.strip()[:200]}). Only weights are read (torch.load(weights_only=True)); arbitrary pickles "
            "can run code and are never unpickled. Re-save the state dicts alone (torch.save({'ema_model': "
            "model.state_dict()}, path)) from a trusted environment"
        ) from None
    except Exception as exc:  # not a torch file, truncated, ...
        raise ConvertError(f"could not read {path} as a PyTorch checkpoint: {type(exc).__name__}: {exc}") from None
    if not isinstance(ckpt, Mapping):
        raise ConvertError(
            f"{path} holds a {type(ckpt).__name__}; expected a dict with 'ema_model' (pytorch-ddpm format)"
        )
    return dict(ckpt)


def pick_state_dict(ckpt: Mapping[str, Any], weights: str = "ema") -> dict[str, torch.Tensor]:
    """The ``ema_model`` (``weights="ema"``, what the papers attack) or ``net_model`` state dict,
    with a ``module.`` prefix (``--parallel`` training) stripped. A bare state dict (keys like
    ``head.weight``) is accepted as it is, whatever ``weights`` says."""
    if weights not in ("ema", "net"):
        raise ConvertError(f"weights must be 'ema' or 'net', got {weights!r}")
    if "head.weight" in ckpt or "module.head.weight" in ckpt:
        state = ckpt
    else:
        key = f"{weights}_model"
        if key not in ckpt:
            raise ConvertError(
                f"the checkpoint has no {key!r} entry (it has {sorted(ckpt)[:8]}); expected the pytorch-ddpm "
                "format {'net_model', 'ema_model', 'sched', 'optim', 'step', 'x_T'}"
            )
        state = ckpt[key]
    if not isinstance(state, Mapping):
        raise ConvertError(f"the checkpoint's state dict is a {type(state).__name__}, not a dict of tensors")
    out = {}
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise ConvertError(f"state-dict entry {name!r} is a {type(value).__name__}, not a tensor")
        out[name[len("module.") :] if name.startswith("module.") else name] = value.float()
    if "head.weight" not in out:
        raise ConvertError(
            f"not a pytorch-ddpm UNet: no 'head.weight' among {len(out)} keys (first: {sorted(out)[:3]}); "
            "this converter reads the SecMI / PIA (pytorch-ddpm) layout only"
        )
    return out


def _levels(state: Mapping[str, torch.Tensor], prefix: str) -> dict[int, set[str]]:
    blocks: dict[int, set[str]] = {}
    pattern = re.compile(rf"^{prefix}\.(\d+)\.(.+)$")
    for key in state:
        m = pattern.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(m.group(2))
    return blocks


def infer_architecture(
    state: Mapping[str, torch.Tensor],
    *,
    x_T: torch.Tensor | None = None,
    ch: int | None = None,
    ch_mult: tuple[int, ...] | None = None,
    attn: tuple[int, ...] | None = None,
    num_res_blocks: int | None = None,
    dropout: float | None = None,
    resolution: int | None = None,
    num_timesteps: int | None = None,
) -> DDPMArchitecture:
    """Read the hyper-parameters from the tensors' shapes; check any the user gave against them."""
    head = state["head.weight"]
    found_ch, in_channels = int(head.shape[0]), int(head.shape[1])
    down = _levels(state, "downblocks")
    if not down:
        raise ConvertError("no downblocks.* keys: not a pytorch-ddpm UNet")
    n_down = max(down) + 1
    mains = sorted(i for i, names in down.items() if "main.weight" in names)
    found_nrb = mains[0] if mains else n_down
    n_levels = len(mains) + 1
    if n_down != n_levels * found_nrb + len(mains):
        raise ConvertError(f"downblocks do not fit the pytorch-ddpm layout: {n_down} blocks, down-sampling at {mains}")
    mult, attn_levels = [], []
    for level in range(n_levels):
        first = level * (found_nrb + 1)
        out_ch = int(state[f"downblocks.{first}.block1.2.weight"].shape[0])
        if out_ch % found_ch:
            raise ConvertError(f"level {level} has {out_ch} channels, not a multiple of ch={found_ch}")
        mult.append(out_ch // found_ch)
        if any(n.startswith("attn.") for n in down[first]):
            attn_levels.append(level)
    table = state.get("time_embedding.timembedding.0.weight")
    if table is None:
        raise ConvertError("no time_embedding.timembedding.0.weight (the sinusoidal table): not a pytorch-ddpm UNet")
    found_T = int(table.shape[0])
    found_res = int(x_T.shape[-1]) if isinstance(x_T, torch.Tensor) and x_T.ndim == 4 else None
    found = {
        "ch": found_ch,
        "ch_mult": tuple(mult),
        "attn": tuple(attn_levels),
        "num_res_blocks": found_nrb,
        "num_timesteps": found_T,
    }
    given = {
        "ch": ch,
        "ch_mult": None if ch_mult is None else tuple(ch_mult),
        "attn": None if attn is None else tuple(sorted(attn)),
        "num_res_blocks": num_res_blocks,
        "num_timesteps": num_timesteps,
    }
    for name, value in given.items():
        if value is not None and value != found[name]:
            flag = {"num_timesteps": "T"}.get(name, name)
            raise ConvertError(
                f"{flag}={_show(value)} was given, but the checkpoint's tensors say {flag}={_show(found[name])}; "
                f"drop the flag or pass the checkpoint it belongs to"
            )
    if resolution is not None and found_res is not None and resolution != found_res:
        raise ConvertError(f"resolution={resolution} was given, but the checkpoint's x_T is {found_res}x{found_res}")
    res = resolution or found_res
    if res is None:
        raise ConvertError(
            "the checkpoint has no x_T to read the image size from: pass the resolution (--resolution 32)"
        )
    if res % (2 ** (n_levels - 1)):
        raise ConvertError(f"resolution {res} is not divisible by 2^{n_levels - 1} (the UNet's down-sampling)")
    out_channels = int(state["tail.2.weight"].shape[0])
    drop = PAPER_DEFAULTS["dropout"] if dropout is None else float(dropout)
    if not 0.0 <= drop < 1.0:
        raise ConvertError(f"dropout must be in [0, 1), got {dropout!r}")
    arch = DDPMArchitecture(
        found_ch, tuple(mult), tuple(attn_levels), found_nrb, drop, in_channels, out_channels, res, found_T
    )
    return arch


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def sinusoidal_table(num_timesteps: int, dim: int) -> torch.Tensor:
    """pytorch-ddpm's ``TimeEmbedding`` table: (T, dim), row t = [sin(t w_0), cos(t w_0), sin(t w_1), ...]
    with w_i = 10000^(-2i / dim) (interleaved, float32 as the authors compute it)."""
    freqs = torch.exp(-torch.arange(0, dim, step=2, dtype=torch.float32) / dim * math.log(10000))
    args = torch.arange(num_timesteps, dtype=torch.float32)[:, None] * freqs[None, :]
    return torch.stack([torch.sin(args), torch.cos(args)], dim=-1).view(num_timesteps, dim)


TIME_TABLES = ("auto", "formula", "checkpoint")


def time_table_deviation(state: Mapping[str, torch.Tensor], arch: DDPMArchitecture) -> float:
    """max |stored table - pytorch-ddpm's sin/cos formula| over the (T, ch) time table."""
    table = state["time_embedding.timembedding.0.weight"]
    return float((table - sinusoidal_table(arch.num_timesteps, arch.ch)).abs().max())


def choose_time_embedding(state: Mapping[str, torch.Tensor], arch: DDPMArchitecture, time_table: str = "auto") -> str:
    """``"positional"`` (diffusers computes the sin/cos table: real-valued t works) or ``"learned"``
    (the checkpoint's own table as an ``nn.Embedding``: exact, integer t only).

    pytorch-ddpm stores its table as a frozen ``nn.Embedding`` buffer, so in a trained checkpoint
    it equals the formula (deviation ~1e-7) and ``"auto"`` picks ``"positional"``. A table that
    differs (a modified or randomised checkpoint, such as the shared test fixture, where it is off by
    0.1) is kept as it is under ``"auto"``: dropping it would change the outputs (by 7.6e-3 on
    the fixture). ``"formula"`` / ``"checkpoint"`` force one or the other.
    """
    if time_table not in TIME_TABLES:
        raise ConvertError(f"time_table must be one of {TIME_TABLES}, got {time_table!r}")
    if time_table == "formula":
        return "positional"
    if time_table == "checkpoint":
        return "learned"
    return "positional" if time_table_deviation(state, arch) <= TABLE_ATOL else "learned"


#: A stored table within this of the formula is the formula (float32 rounding of sin/cos and of the EMA).
TABLE_ATOL = 1e-4


# -- the map -------------------------------------------------------------------------------------


def unet_config(arch: DDPMArchitecture, time_embedding: str = "positional") -> dict[str, Any]:
    """The diffusers ``UNet2DModel`` config that computes what pytorch-ddpm's UNet computes.

    ``time_embedding``: ``"positional"`` or ``"learned"`` (see :func:`choose_time_embedding`).
    """
    if time_embedding not in ("positional", "learned"):
        raise ConvertError(f"time_embedding must be 'positional' or 'learned', got {time_embedding!r}")
    n = len(arch.ch_mult)
    extra = {"num_train_timesteps": arch.num_timesteps} if time_embedding == "learned" else {}
    return dict(
        sample_size=arch.resolution,
        in_channels=arch.in_channels,
        out_channels=arch.out_channels,
        layers_per_block=arch.num_res_blocks,
        block_out_channels=tuple(arch.ch * m for m in arch.ch_mult),
        down_block_types=tuple("AttnDownBlock2D" if i in arch.attn else "DownBlock2D" for i in range(n)),
        up_block_types=tuple("AttnUpBlock2D" if (n - 1 - k) in arch.attn else "UpBlock2D" for k in range(n)),
        time_embedding_type=time_embedding,
        flip_sin_to_cos=False,
        freq_shift=0,
        downsample_padding=1,
        mid_block_scale_factor=1,
        norm_num_groups=32,
        norm_eps=1e-5,
        act_fn="silu",
        attention_head_dim=None,
        dropout=arch.dropout,
        **extra,
    )


_RES = {
    "block1.0": "norm1",
    "block1.2": "conv1",
    "temb_proj.1": "time_emb_proj",
    "block2.0": "norm2",
    "block2.3": "conv2",
    "shortcut": "conv_shortcut",
}
_ATTN = {"group_norm": "group_norm", "proj_q": "to_q", "proj_k": "to_k", "proj_v": "to_v", "proj": "to_out.0"}


def _map_block(src: str, res_dst: str, attn_dst: str, name: str) -> tuple[str, bool] | None:
    """(diffusers key, is a 1x1 attention conv) for ``src.name`` inside one ResBlock, or None."""
    if name.startswith("attn."):
        sub, _, leaf = name[len("attn.") :].rpartition(".")
        if sub in _ATTN:
            return f"{attn_dst}.{_ATTN[sub]}.{leaf}", sub != "group_norm"
        return None
    sub, _, leaf = name.rpartition(".")
    if sub in _RES:
        return f"{res_dst}.{_RES[sub]}.{leaf}", False
    return None


def convert_state_dict(
    state: Mapping[str, torch.Tensor], arch: DDPMArchitecture, time_embedding: str = "positional"
) -> dict[str, torch.Tensor]:
    """Map every pytorch-ddpm key onto its diffusers key (see the module docstring).

    With ``time_embedding="learned"`` the stored sin/cos table becomes ``time_proj.weight``, its
    columns permuted like ``linear_1``'s (so both layouts agree); with ``"positional"`` it is dropped.

    Raises :class:`ConvertError` naming any key that has no place in the map.
    """
    nrb, n = arch.num_res_blocks, len(arch.ch_mult)
    blocks: dict[str, tuple[str, str]] = {}  # pytorch-ddpm ResBlock prefix -> (resnet, attention) prefixes
    plain: dict[str, str] = {  # whole-module prefixes
        "head": "conv_in",
        "tail.0": "conv_norm_out",
        "tail.2": "conv_out",
        "time_embedding.timembedding.1": "time_embedding.linear_1",
        "time_embedding.timembedding.3": "time_embedding.linear_2",
    }
    for i in range(n):
        for j in range(nrb):
            blocks[f"downblocks.{i * (nrb + 1) + j}"] = (
                f"down_blocks.{i}.resnets.{j}",
                f"down_blocks.{i}.attentions.{j}",
            )
        if i < n - 1:
            plain[f"downblocks.{i * (nrb + 1) + nrb}.main"] = f"down_blocks.{i}.downsamplers.0.conv"
    blocks["middleblocks.0"] = ("mid_block.resnets.0", "mid_block.attentions.0")
    blocks["middleblocks.1"] = ("mid_block.resnets.1", "mid_block.attentions.1")
    for k in range(n):
        for j in range(nrb + 1):
            blocks[f"upblocks.{k * (nrb + 2) + j}"] = (f"up_blocks.{k}.resnets.{j}", f"up_blocks.{k}.attentions.{j}")
        if k < n - 1:
            plain[f"upblocks.{k * (nrb + 2) + nrb + 1}.main"] = f"up_blocks.{k}.upsamplers.0.conv"

    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if key == "time_embedding.timembedding.0.weight":
            if time_embedding == "learned":  # rows = timesteps; interleaved -> concatenated columns
                out["time_proj.weight"] = torch.cat([value[:, 0::2], value[:, 1::2]], dim=1)
            continue  # positional: diffusers computes the table itself
        head, _, leaf = key.rpartition(".")
        if head in plain:
            dst = f"{plain[head]}.{leaf}"
            if head == "time_embedding.timembedding.1" and leaf == "weight":
                # interleaved [sin0, cos0, sin1, cos1, ...] -> concatenated [sin..., cos...]
                value = torch.cat([value[:, 0::2], value[:, 1::2]], dim=1)
            out[dst] = value
            continue
        m = re.match(r"^((?:down|middle|up)blocks\.\d+)\.(.+)$", key)
        mapped = _map_block(m.group(1), *blocks[m.group(1)], m.group(2)) if m and m.group(1) in blocks else None
        if mapped is None:
            unmapped.append(key)
            continue
        dst, is_conv1x1 = mapped
        out[dst] = value[:, :, 0, 0] if is_conv1x1 and leaf == "weight" and value.ndim == 4 else value
    if unmapped:
        raise ConvertError(f"{len(unmapped)} checkpoint key(s) have no place in the diffusers UNet: {unmapped[:5]}")
    return out


def build_unet(state: Mapping[str, torch.Tensor], arch: DDPMArchitecture, time_embedding: str = "positional") -> Any:
    """A diffusers ``UNet2DModel`` holding the converted weights; every parameter must be filled."""
    from .lazy import MODEL_BUILD_LOCK, diffusers_class

    UNet2DModel = diffusers_class("UNet2DModel")
    with MODEL_BUILD_LOCK:
        unet = UNet2DModel(**unet_config(arch, time_embedding))
    converted = convert_state_dict(state, arch, time_embedding)
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing or extra:
        raise ConvertError(
            f"the key map does not fit the diffusers UNet: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(converted[k].shape)]
    if bad:
        k = bad[0]
        raise ConvertError(
            f"shape mismatch at {k}: diffusers {tuple(expected[k].shape)}, checkpoint "
            f"{tuple(converted[k].shape)} ({len(bad)} such)"
        )
    unet.load_state_dict(converted, strict=True)
    return unet.eval()


# -- the whole conversion ------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    """What :func:`convert_checkpoint` did (also written to ``OUT/conversion.json``)."""

    source: str
    sha256: str
    weights: str
    step: int | None
    architecture: DDPMArchitecture
    n_parameters: int
    n_tensors: int
    scheduler: dict[str, Any]
    out: str
    time_embedding: str = "positional"
    time_table_deviation: float = 0.0

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["architecture"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in d["architecture"].items()}
        return d

    def summary(self) -> str:
        return (
            f"converted {self.weights.upper()} weights of {Path(self.source).name}"
            f"{f' (step {self.step})' if self.step is not None else ''}: {self.architecture.describe()}, "
            f"{self.n_parameters:,} parameters from {self.n_tensors} tensors; linear betas "
            f"{self.scheduler['beta_start']:g}..{self.scheduler['beta_end']:g}, epsilon prediction; "
            f"{self.time_embedding_text()}"
        )

    def time_embedding_text(self) -> str:
        if self.time_embedding == "positional":
            return (
                f"sin/cos time embedding computed by diffusers (the stored table matches it to "
                f"{self.time_table_deviation:.1e})"
            )
        return (
            f"the checkpoint's own time table kept as a lookup (it differs from the sin/cos formula by up to "
            f"{self.time_table_deviation:.3g}): integer timesteps only"
        )


def scheduler_config(beta_1: float, beta_T: float, num_timesteps: int) -> dict[str, Any]:
    """The papers' schedule as a diffusers ``DDPMScheduler`` config (linear betas, epsilon prediction).

    ``variance_type="fixed_large"``: pytorch-ddpm's CIFAR-10 config samples with ``var_type
    fixedlarge``; ``clip_sample=False``: its sampler does not clip the predicted x_0 (only the final
    image is clipped).
    """
    if not (0 < beta_1 < 1 and 0 < beta_T < 1 and beta_1 <= beta_T):
        raise ConvertError(f"need 0 < beta_1 <= beta_T < 1, got beta_1={beta_1!r}, beta_T={beta_T!r}")
    return {
        "_class_name": "DDPMScheduler",
        "num_train_timesteps": int(num_timesteps),
        "beta_start": float(beta_1),
        "beta_end": float(beta_T),
        "beta_schedule": "linear",
        "prediction_type": "epsilon",
        "variance_type": "fixed_large",
        "clip_sample": False,
    }


def convert_checkpoint(
    path: str | Path,
    out: str | Path,
    *,
    weights: str = "ema",
    ch: int | None = None,
    ch_mult: tuple[int, ...] | None = None,
    attn: tuple[int, ...] | None = None,
    num_res_blocks: int | None = None,
    dropout: float | None = None,
    resolution: int | None = None,
    beta_1: float | None = None,
    beta_T: float | None = None,
    T: int | None = None,
    time_table: str = "auto",
    overwrite: bool = False,
) -> Conversion:
    """Convert ``path`` (pytorch-ddpm ``.pt``) into the diffusers folder ``out``.

    Writes ``out/unet`` (config.json + diffusion_pytorch_model.safetensors), ``out/scheduler``
    (scheduler_config.json), ``out/model_index.json`` (DDPMPipeline) and ``out/conversion.json``
    (what was converted and how). ``T`` defaults to the rows of the checkpoint's time table (the
    papers: 1000); a ``T`` that disagrees with it is an error. ``beta_1`` / ``beta_T`` left None are
    the papers' (:data:`PAPER_DEFAULTS`). ``time_table``: see
    :func:`choose_time_embedding`.
    """
    if time_table not in TIME_TABLES:
        raise ConvertError(f"time_table must be one of {TIME_TABLES}, got {time_table!r}")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConvertError(f"output folder {str(out)!r} exists and is not empty; choose another --out or delete it")
    path = Path(path).expanduser()
    ckpt = load_checkpoint(path)
    state = pick_state_dict(ckpt, weights)
    arch = infer_architecture(
        state,
        x_T=ckpt.get("x_T"),
        ch=ch,
        ch_mult=ch_mult,
        attn=attn,
        num_res_blocks=num_res_blocks,
        dropout=dropout,
        resolution=resolution,
        num_timesteps=T,
    )
    sched = scheduler_config(
        PAPER_DEFAULTS["beta_1"] if beta_1 is None else beta_1,
        PAPER_DEFAULTS["beta_T"] if beta_T is None else beta_T,
        arch.num_timesteps,
    )
    embedding = choose_time_embedding(state, arch, time_table)
    unet = build_unet(state, arch, embedding)

    from .lazy import diffusers_class

    (out / "unet").mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler = diffusers_class("DDPMScheduler").from_config(sched)
    scheduler.save_pretrained(out / "scheduler")
    import diffusers

    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMPipeline",
                "_diffusers_version": diffusers.__version__,
                "scheduler": ["diffusers", "DDPMScheduler"],
                "unet": ["diffusers", "UNet2DModel"],
            },
            indent=2,
        )
    )
    step = ckpt.get("step")
    result = Conversion(
        source=str(path),
        sha256=_sha256(path),
        weights=weights if "head.weight" not in ckpt else "bare state dict",
        step=int(step) if isinstance(step, int) else None,
        architecture=arch,
        n_parameters=sum(p.numel() for p in unet.parameters()),
        n_tensors=len(state),
        scheduler=sched,
        out=str(out),
        time_embedding=embedding,
        time_table_deviation=time_table_deviation(state, arch),
    )
    (out / CONVERSION_FILE).write_text(json.dumps(result.to_json_dict(), indent=1))
    return result


def read_conversion(folder: str | Path) -> dict[str, Any] | None:
    """``conversion.json`` of a converted folder (None when the folder was not made by this module)."""
    path = Path(folder) / CONVERSION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
