"""The attacked model: a diffusers ``UNet2DModel`` plus its noise schedule, on a device.

A :class:`Target` comes from

* ``"default"``: the embedded model shipped in ``assets/default_target`` (works offline, on a CPU);
* a local folder in diffusers format: a bare UNet folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``) or a DDPM/DDIM pipeline folder (``unet/`` + ``scheduler/``);
* a Hugging Face Hub id such as ``google/ddpm-cifar10-32``, taken from the local cache or
  downloaded when the machine is online.

Weights are read from safetensors only: a folder whose weights are pickles (``.bin``, ``.pt``,
``.ckpt``, ``.pth``) is refused and never unpickled. The model runs in float32 on the CPU; on a
GPU the UNet runs under bf16 autocast and every error / distance is reduced in float32 by the
attacks (``eps`` returns float32).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from .paths import DEFAULT_TARGET_DIR
from .schedule import NoiseSchedule

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class TargetLoadError(ValueError):
    """A target could not be loaded; the message says why and what to do."""


def pick_device(requested: str | None = None) -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; ``"cpu"`` or ``"cuda[:i]"`` as asked."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TargetLoadError(f"device {requested!r} asked for, but torch sees no CUDA device")
    return device


@dataclass(eq=False)
class Target:
    """A UNet that predicts eps_theta(x_t, t), its schedule and its device.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
        Put in ``eval()`` mode (dropout off) and moved to ``device`` here.
    schedule : NoiseSchedule
    source : str
        Where it came from (``"default"``, a path or a Hub id), for display and for the run store.
    fingerprint : str
        16 hex digits identifying config + weights + schedule (computed when not given).
    precision : str
        ``"auto"`` (float32 on a CPU, bf16 autocast on a GPU), ``"fp32"`` (TF32 matmuls on a GPU),
        ``"bf16-autocast"`` (float32 weights, bf16 compute) or ``"bf16"`` (bf16 weights, GPU only).
        Whatever the precision, ``eps`` returns float32 and attacks reduce in float32.
    compile : bool
        Run the UNet through ``torch.compile``. Batches are padded to a power of two so only a
        few shapes are compiled. Off by default: compiling takes a minute.
    """

    unet: Any
    schedule: NoiseSchedule
    source: str = "in-memory"
    device: torch.device = field(default_factory=pick_device)
    fingerprint: str = ""
    notes: tuple[str, ...] = ()
    precision: str = "auto"
    compile: bool = False
    #: what kind of model this is, for ``Attack.applies_to``: "ddpm" (eps_theta(x_t, t) on a discrete
    #: abar schedule); mia_core.score_sde.ScoreTarget is "ve-sde".
    kind: ClassVar[str] = "ddpm"

    def __post_init__(self) -> None:
        if next(self.unet.parameters()).dtype != torch.float32:
            self.unet = self.unet.float()
        self.unet = self.unet.to(self.device).eval()
        self.unet.requires_grad_(False)
        if not self.fingerprint:  # always of the float32 weights, whatever runs later
            self.fingerprint = fingerprint_module(self.unet, self.schedule)
        if self.precision == "auto":
            self.precision = "bf16-autocast" if self.device.type == "cuda" else "fp32"
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision.startswith("bf16") and self.device.type != "cuda":
            raise ValueError(f"precision {self.precision!r} needs a CUDA device; use 'fp32' on {self.device}")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True  # fp32 mode: TF32 tensor cores
            torch.backends.cudnn.allow_tf32 = True
        if self.precision == "bf16":
            self.unet = self.unet.to(torch.bfloat16)
        self._forward = torch.compile(self.unet, dynamic=False) if self.compile else self.unet
        self._full_precision = False

    @contextlib.contextmanager
    def full_precision(self) -> Iterator[None]:
        """Run the UNet without bf16 autocast inside this block (for attacks whose statistic is a
        small difference of large quantities, such as SecMI's t-error). Bf16 *weights* cannot be
        undone here; that precision is a benchmark option."""
        previous, self._full_precision = self._full_precision, True
        try:
            yield
        finally:
            self._full_precision = previous

    # -- what the model is -----------------------------------------------------------------

    @property
    def resolution(self) -> int:
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    @property
    def uses_bf16(self) -> bool:
        return self.precision.startswith("bf16")

    def card(self) -> dict[str, Any]:
        """A model card: plain values for display and for JSON."""
        cfg = self.unet.config
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "parameters": self.n_parameters,
            "resolution": self.resolution,
            "channels": self.channels,
            "block_out_channels": list(cfg.block_out_channels),
            "schedule": self.schedule.description,
            "timesteps": self.schedule.num_timesteps,
            "device": str(self.device),
            "precision": PRECISION_TEXT[self.precision] + (", torch.compile" if self.compile else ""),
            "notes": list(self.notes),
        }

    # -- the one thing attacks need ----------------------------------------------------------

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t) for a batch.

        Parameters
        ----------
        x_t : (N, C, H, W) float tensor, any device (moved to the target's device).
        t : int, or (N,) integer tensor of 0-based timesteps.

        Returns
        -------
        (N, C, H, W) float32 tensor on the target's device.
        """
        n = x_t.shape[0]
        if isinstance(t, int) or t.device.type == "cpu":  # a device tensor is not checked: no sync
            self.schedule.check_timesteps(t)
        if isinstance(t, int):
            t = torch.full((n,), t, dtype=torch.long, device=self.device)
        x = x_t.to(self.device, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32, non_blocking=True)
        t = t.to(self.device, dtype=torch.long, non_blocking=True)
        if self.compile:
            x, t = _pad_batch(x, t)
        autocast = self.precision == "bf16-autocast" and not self._full_precision
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            out = self._forward(x, t).sample
        return out[:n].float()

    def eps_float_t(self, x_t: torch.Tensor, t: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """eps_theta(x_t, t) at real-valued timesteps, optionally differentiable in x_t.

        For the likelihood attack's probability-flow ODE, which needs the UNet between the integer
        timesteps it was trained on (diffusers' sinusoidal embedding takes float timesteps) and a
        vector-Jacobian product through it.

        Parameters
        ----------
        x_t : (N, C, H, W) float tensor, any device (moved to the target's device; the move is
            differentiable, so a gradient reaches a CPU ``x_t`` that requires grad).
        t : (N,) float tensor of 0-based timesteps; clamped to [0, T-1] before the UNet sees them.
        grad : build the autograd graph (no ``torch.inference_mode``), so that
            ``torch.autograd.grad(out, x_t, v)`` gives v^T d eps / d x_t. Call it outside
            ``inference_mode``.

        Returns
        -------
        (N, C, H, W) float32 tensor on the target's device.

        Precision: float32 without bf16 autocast, whatever ``precision`` says (TF32 matmuls stay
        on on a GPU: on the default target at rtol 1e-5 they changed the ODE's evaluations from
        414 to 418 per image and its bits/dim by <= 4e-3, the solver's own error), and never
        through ``torch.compile`` (float timesteps and autograd would recompile it). Bf16
        *weights* (precision "bf16") cannot be undone here: the input is then cast to bf16.
        """
        n = x_t.shape[0]
        t = torch.as_tensor(t)
        if t.ndim != 1 or t.shape[0] != n or not t.is_floating_point():
            raise ValueError(f"t must be a float tensor of shape ({n},), got {t.dtype} of shape {tuple(t.shape)}")
        if grad and torch.is_inference_mode_enabled():
            raise RuntimeError("eps_float_t(grad=True) was called inside torch.inference_mode(); call it outside")
        t = t.to(self.device, torch.float32).clamp(0.0, float(self.schedule.num_timesteps - 1))
        x = x_t.to(self.device, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32)
        with torch.enable_grad() if grad else torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            out = self.unet(x, t).sample
        return out.float()


PRECISIONS = ("fp32", "bf16-autocast", "bf16")
PRECISION_TEXT = {
    "fp32": "float32",
    "bf16-autocast": "bf16 autocast, float32 reductions",
    "bf16": "bf16 weights, float32 reductions",
}


def _pad_batch(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to the next power of two (>= 8) by repeating its last row: few compiled shapes."""
    n = x.shape[0]
    size = max(8, 1 << (n - 1).bit_length())
    if size == n:
        return x, t
    extra = size - n
    return torch.cat([x, x[-1:].expand(extra, *x.shape[1:])]), torch.cat([t, t[-1:].expand(extra)])


# -- fingerprints ------------------------------------------------------------------------------


def fingerprint_module(unet: Any, schedule: NoiseSchedule) -> str:
    """sha256 over the UNet config, every weight tensor and the schedule; 16 hex digits."""
    h = hashlib.sha256()
    h.update(json.dumps(_plain_config(unet.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(schedule.alphas_cumprod.numpy().tobytes())
    return h.hexdigest()[:16]


def _plain_config(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


# -- loading -----------------------------------------------------------------------------------


def load_target(spec: str = "default", *, device: str | None = None, **options: Any) -> Target:
    """Load a target from ``"default"``, a local diffusers folder, or a Hub id (see module doc).

    ``options`` go to :class:`Target` (``precision``, ``compile``).
    """
    dev = pick_device(device)
    if spec in ("", "default"):
        if not (DEFAULT_TARGET_DIR / "unet" / WEIGHTS_NAME).exists():
            raise TargetLoadError(f"the embedded default target is missing from {DEFAULT_TARGET_DIR}")
        return load_folder(DEFAULT_TARGET_DIR, device=dev, source="default", **options)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TargetLoadError(
                f"{spec!r} is a file; a target is a diffusers folder (config.json + {WEIGHTS_NAME}, "
                "or unet/ + scheduler/), a Hub id, or 'default'"
            )
        return load_folder(path, device=dev, source=str(path), **options)
    _refuse_missing_local_path(spec, path)
    if HUB_ID_PATTERN.match(spec):
        return load_folder(_hub_snapshot(spec), device=dev, source=spec, **options)
    raise TargetLoadError(f"target {spec!r} is neither an existing folder nor a Hub id like 'google/ddpm-cifar10-32'")


def load_folder(folder: Path, *, device: torch.device | str | None = None, source: str | None = None,
                **options: Any) -> Target:
    """Load a bare UNet folder or a pipeline folder with ``unet/`` and ``scheduler/``."""
    from .lazy import MODEL_BUILD_LOCK, diffusers_class

    UNet2DModel = diffusers_class("UNet2DModel")

    folder = Path(folder)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    unet_dir, scheduler_config, notes = _locate(folder)
    config = _read_json(unet_dir / "config.json")
    _check_config(unet_dir / "config.json", config, dev)
    cls_name = config.get("_class_name", "UNet2DModel")
    if cls_name != "UNet2DModel":
        raise TargetLoadError(
            f"{unet_dir} holds a {cls_name}; only unconditional UNet2DModel targets are supported"
        )
    _require_safetensors(unet_dir)
    _check_weights(unet_dir / WEIGHTS_NAME)
    with MODEL_BUILD_LOCK:  # construction draws random initial weights (then overwritten): see lazy.py
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, low_cpu_mem_usage=False)
    ve_config = _read_json(scheduler_config) if scheduler_config is not None else {}
    if isinstance(ve_config, dict) and ve_config.get("_class_name") == "ScoreSdeVeScheduler":  # a score-based (VE-SDE) model, not a DDPM
        from .score_sde import ScoreTarget

        return ScoreTarget.from_scheduler_config(unet, ve_config, source=source or str(folder), device=dev,
                                                 notes=tuple(notes), **options)
    if scheduler_config is not None:
        schedule = _schedule_from(scheduler_config)
    else:
        schedule = NoiseSchedule.linear()
        notes.append("no scheduler config found: assumed linear betas 1e-4..0.02, T=1000")
    return Target(unet, schedule, source=source or str(folder), device=dev, notes=tuple(notes), **options)


def _locate(folder: Path) -> tuple[Path, Path | None, list[str]]:
    """Find the UNet folder and the scheduler config inside ``folder``."""
    if not folder.is_dir():
        raise TargetLoadError(f"{folder} is not a folder")
    if (folder / "unet" / "config.json").exists():
        sched = folder / "scheduler" / "scheduler_config.json"
        return folder / "unet", (sched if sched.exists() else None), []
    if (folder / "config.json").exists():
        sched = folder / "scheduler_config.json"
        return folder, (sched if sched.exists() else None), []
    pickles = _pickle_names(folder)
    if pickles:
        raise TargetLoadError(
            f"{folder} holds only pickle checkpoints ({', '.join(pickles[:3])}) and no diffusers config; "
            "pickles are never loaded: convert the weights to a diffusers folder with safetensors"
        )
    raise TargetLoadError(
        f"{folder} has no diffusers model: expected config.json + {WEIGHTS_NAME}, or unet/ and scheduler/ subfolders"
    )


def _require_safetensors(unet_dir: Path) -> None:
    if (unet_dir / WEIGHTS_NAME).exists():
        return
    pickles = sorted(p.name for p in unet_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise TargetLoadError(
            f"refusing to load {unet_dir / pickles[0]}: pickle weights can run arbitrary code and are never "
            f"unpickled. Save the model with safetensors (model.save_pretrained(folder, safe_serialization=True))"
        )
    raise TargetLoadError(f"{unet_dir} has config.json but no weights file ({WEIGHTS_NAME})")


def _hub_snapshot(repo_id: str) -> Path:
    """A local snapshot of a Hub repo (config + safetensors only); the cache first, then the network."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not cached: try the network below
        pass
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as exc:
        raise TargetLoadError(
            f"could not get {repo_id!r} from the Hugging Face Hub: not in the local cache and the download failed "
            f"({type(exc).__name__}). Save it with save_pretrained on an online machine and pass the folder instead"
        ) from exc


# -- checks before building: one-line messages naming the file and the bad value ----------------
#
# Called from the load path above; each raises TargetLoadError. Kept apart from the loading logic.

#: refuse a target when one image's largest feature map alone needs more than this share of memory.
ACTIVATION_MEMORY_SHARE = 0.25


def _read_json(path: Path) -> Any:
    """JSON from ``path``; invalid JSON or an unreadable file is a TargetLoadError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise TargetLoadError(f"{path} is not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise TargetLoadError(f"{path} is not valid JSON: {exc}") from None


def _check_config(path: Path, config: Any, device: torch.device) -> None:
    """The UNet config's types and sizes, and the memory one image's activations need."""
    if not isinstance(config, dict):
        raise TargetLoadError(f"{path} is a {type(config).__name__}, not an object of UNet settings")

    def bad(key: str, what: str) -> TargetLoadError:
        return TargetLoadError(f"{path}: {key}={config[key]!r} is not {what}")

    def positive_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    for key in ("in_channels", "out_channels", "layers_per_block", "norm_num_groups"):
        if key in config and not positive_int(config[key]):
            raise bad(key, "an integer >= 1")
    if "block_out_channels" in config:
        value = config["block_out_channels"]
        if not isinstance(value, (list, tuple)) or not value or not all(positive_int(v) for v in value):
            raise bad("block_out_channels", "a list of integers >= 1")
    for key in ("down_block_types", "up_block_types"):
        value = config.get(key)
        if value is not None and (not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value)):
            raise bad(key, "a list of block names")
    if "sample_size" not in config:
        return
    size = config["sample_size"]
    sides = size if isinstance(size, (list, tuple)) else [size]
    if len(sides) not in (1, 2) or not all(positive_int(v) for v in sides):
        raise bad("sample_size", "an image side in pixels (an integer >= 1, or [height, width])")
    channels = (config.get("block_out_channels") or [64])[0]
    need = 4 * sides[0] * sides[-1] * channels  # float32: the first block's feature map, at full resolution
    available = _memory_bytes(device)
    if need > ACTIVATION_MEMORY_SHARE * available:
        raise TargetLoadError(
            f"{path}: sample_size={size!r} is too large for this machine: one image's activations need at least "
            f"{need / 2**30:,.1f} GiB ({sides[0]}x{sides[-1]} pixels x {channels} channels x 4 bytes, for one "
            f"feature map) of the {available / 2**30:,.1f} GiB of {device.type} memory")


def _memory_bytes(device: torch.device) -> int:
    """Total memory of ``device``: the GPU's, or the machine's physical memory for the CPU."""
    import os

    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _check_weights(path: Path) -> None:
    """A safetensors file whose header parses and whose size covers every tensor it lists."""
    import struct

    size = path.stat().st_size
    problem = ""
    try:
        with open(path, "rb") as f:
            if size < 8:
                raise ValueError(f"{size} bytes")
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, 100 * 2**20):
                raise ValueError(f"a header of {n} bytes in a file of {size}")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not an object")
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + n + end > size:
            problem = f"truncated: its tensors need {8 + n + end:,} bytes, the file has {size:,}"
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        problem = f"corrupt: its header cannot be read ({exc})"
    if problem:
        raise TargetLoadError(f"{path} is {problem}; save the weights again")


def _schedule_from(path: Path) -> NoiseSchedule:
    """The noise schedule of a scheduler config; an unknown or bad setting names the file and value."""
    config = _read_json(path)
    if not isinstance(config, dict):
        raise TargetLoadError(f"{path} is a {type(config).__name__}, not an object of scheduler settings")
    try:
        return NoiseSchedule.from_scheduler_config(config)
    except (NotImplementedError, ValueError, TypeError, KeyError) as exc:
        values = {k: config[k] for k in ("beta_schedule", "num_train_timesteps", "beta_start", "beta_end")
                  if k in config}
        raise TargetLoadError(f"{path}: the noise schedule cannot be built from {values} "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def _pickle_names(folder: Path, limit: int = 1000) -> list[str]:
    """Pickle checkpoints in ``folder`` and its direct sub-folders (never a recursive walk of a tree)."""
    found: list[str] = []
    seen = 0
    for entry in _listdir(folder):
        seen += 1
        if entry.suffix in PICKLE_SUFFIXES and entry.is_file():
            found.append(entry.name)
        elif entry.is_dir() and not entry.is_symlink():
            for inner in _listdir(entry):
                seen += 1
                if inner.suffix in PICKLE_SUFFIXES:
                    found.append(f"{entry.name}/{inner.name}")
                if seen > limit:
                    break
        if seen > limit:
            break
    return sorted(found)


def _listdir(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _refuse_missing_local_path(spec: str, path: Path) -> None:
    """A spec that looks local (starts with . / ~, has a backslash, or its first part is a local
    folder) but does not exist is a missing folder: it is never sent to the Hub."""
    first = Path(spec).parts[0] if Path(spec).parts else ""
    looks_local = spec.startswith((".", "/", "~")) or "\\" in spec or (first and Path(first).is_dir())
    if looks_local:
        raise TargetLoadError(f"target {spec!r} is neither an existing folder nor a Hub id: no folder "
                              f"{path.resolve()} exists (a local path, so the Hugging Face Hub was not asked)")

