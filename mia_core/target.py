"""The attacked model: a diffusers ``UNet2DModel`` (or a text-to-image ``UNet2DConditionModel``) plus its
noise schedule, on a device.

A :class:`Target` comes from

* ``"default"``: the embedded model shipped in ``assets/default_target`` (works offline, on a CPU);
* a local folder in diffusers format: a bare UNet folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``) or a DDPM/DDIM pipeline folder (``unet/`` + ``scheduler/``);
* a Hugging Face Hub id such as ``google/ddpm-cifar10-32``, taken from the local cache or
  downloaded when the machine is online.

What the network outputs is read from the scheduler config (``prediction_type``) and converted to
eps in ONE place, :meth:`Target.eps` (every attack, the sampler's checks and the Learn views call it):

    prediction_type   network output                              eps
    epsilon           eps_theta(x_t, t)                           out
    v_prediction      v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0  sqrt(abar_t) out + sqrt(1 - abar_t) x_t
    sample            x0_hat                                      (x_t - sqrt(abar_t) out) / sqrt(1 - abar_t)

(from x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; v is Salimans & Ho 2022, eq. in their App. D).
With ``variance_type`` "learned" or "learned_range" the UNet returns 2C channels, the prediction
then the variance; the first C are the prediction. The variance is read only by a bound that needs
it (the ELBO, which supports the fixed variances and refuses the learned ones by name).

Latent diffusion (a pipeline folder with ``unet/``, ``scheduler/`` and ``vqvae/`` (VQModel) or ``vae/``
(AutoencoderKL)): the diffusion runs on latents, images are encoded once per attack run and every
attack works on the latents; whatever is shown as an image is decoded first.

    encode   z_0 = kappa (E(x_0) - s)   E = the posterior MEAN of an AutoencoderKL (deterministic: the
                                         same latent for every attack and run, no extra noise on top of
                                         the diffusion's; the papers' code draws latent_dist.sample()),
                                         or a VQModel's pre-quantisation encoder output (what
                                         LDMPipeline's decode quantises); kappa = vae.config.scaling_factor,
                                         s = vae.config.shift_factor (0 when absent)
    decode   x = D(z / kappa + s)        (VQModel: quantised inside decode, as LDMPipeline does)

Text-to-image (a Stable Diffusion pipeline folder or Hub id: ``model_index.json`` naming a
``StableDiffusionPipeline``, ``unet/`` UNet2DConditionModel, ``vae/`` AutoencoderKL, ``text_encoder/``
CLIPTextModel and ``tokenizer/`` CLIPTokenizer via transformers, ``scheduler/``): a
:class:`TextToImageTarget`, a latent target (the same encode / decode as above) whose UNet also takes
a text embedding c; which prompt conditions which image is chosen per attack run
(``mia_core.attacks.Conditioning``), see the class docstring. The safety checker and feature
extractor are never loaded.

Weights are read from safetensors only: a folder whose weights are pickles (``.bin``, ``.pt``,
``.ckpt``, ``.pth``) is refused and never unpickled. The model runs in float32 on the CPU; on a
GPU the UNet runs under bf16 autocast and every error / distance is reduced in float32 by the
attacks (``eps`` returns float32).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .paths import DEFAULT_TARGET_DIR
from .schedule import NoiseSchedule

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class TargetLoadError(ValueError):
    """A target could not be loaded; the message says why and what to do."""


def cpu_supports_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX-512 BF16 or AMX, as oneDNN reports it): bf16 autocast
    can then run the UNet faster than float32; elsewhere it is emulated and slower."""
    try:
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    except (AttributeError, RuntimeError):
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
        ``"bf16-autocast"`` (float32 weights, bf16 compute; on a CPU opt-in, fast where
        :func:`cpu_supports_bf16`) or ``"bf16"`` (bf16 weights, GPU only).
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
    prediction_type: str = "epsilon"
    variance_type: str | None = None
    scheduler_config: dict[str, Any] | None = field(default=None, repr=False)
    vae: Any = None

    def __post_init__(self) -> None:
        check_parameterisation(self.unet.config, self.schedule, self.prediction_type, self.variance_type)
        if next(self.unet.parameters()).dtype != torch.float32:
            self.unet = self.unet.float()
        self.unet = self.unet.to(self.device).eval()
        self.unet.requires_grad_(False)
        if not self.fingerprint:  # always of the float32 weights, whatever runs later
            self.fingerprint = fingerprint_module(self.unet, self.schedule, self._meaning(), self.vae)
        if self.precision == "auto":
            self.precision = "bf16-autocast" if self.device.type == "cuda" else "fp32"
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "bf16" and self.device.type != "cuda":
            raise ValueError(f"precision {self.precision!r} needs a CUDA device; use 'fp32' on {self.device}")
        if self.precision == "bf16-autocast" and self.device.type == "cpu" and not cpu_supports_bf16():
            self.notes = (
                *self.notes,
                "bf16 autocast on a CPU without native bf16 (AVX-512 BF16 / AMX): emulated, slower",
            )
        if self.vae is not None:
            check_vae(self.vae, self.unet.config)
            self.vae = self.vae.float().to(self.device).eval()
            self.vae.requires_grad_(False)
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
    def latent(self) -> bool:
        """True for latent diffusion: the UNet runs on ``encode(images)``."""
        return self.vae is not None

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the UNet denoises: the latents of a latent target, else the images."""
        size = self.unet.config.sample_size
        side = int(size if isinstance(size, int) else size[0])
        return int(self.unet.config.in_channels), side, side

    @property
    def resolution(self) -> int:
        """Side of the images the attacks take (pixels; the VAE's input for a latent target)."""
        side = self.model_shape[1]
        return side * vae_downsampling(self.vae) if self.latent else side

    @property
    def channels(self) -> int:
        """Channels of the images the attacks take (the VAE's input channels for a latent target)."""
        return int(self.vae.config.in_channels) if self.latent else self.model_shape[0]

    @property
    def scaling_factor(self) -> float | None:
        return float(self.vae.config.scaling_factor) if self.latent else None

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    @property
    def n_vae_parameters(self) -> int:
        return sum(p.numel() for p in self.vae.parameters()) if self.latent else 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] -> what the UNet denoises, (N, *model_shape) float32 on the
        target's device (module notation; the images themselves for a pixel target)."""
        if not self.latent:
            return x
        x = x.to(self.device, torch.float32)
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            if vae_kind(self.vae) == "kl":
                h = self.vae.encode(x).latent_dist.mean
            else:
                h = self.vae.encode(x).latents
        shift = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        return ((h - shift) * float(self.vae.config.scaling_factor)).float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode` for display: (N, *model_shape) -> images (N, C, H, W), float32
        on the target's device, not clipped (the identity for a pixel target)."""
        if not self.latent:
            return z
        shift = float(getattr(self.vae.config, "shift_factor", None) or 0.0)
        z = z.to(self.device, torch.float32) / float(self.vae.config.scaling_factor) + shift
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            return self.vae.decode(z).sample.float()

    @property
    def learned_variance(self) -> bool:
        return self.variance_type in LEARNED_VARIANCES

    def _meaning(self) -> dict[str, str]:
        """What changes the outputs' meaning beyond weights and schedule (empty for an eps-DDPM: the
        fingerprints of such targets are those of earlier versions)."""
        out = {}
        if self.prediction_type != "epsilon":
            out["prediction_type"] = self.prediction_type
        if self.learned_variance:
            out["variance_type"] = str(self.variance_type)
        return out

    def to_epsilon(self, out: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
        """The network's output converted to eps (module notation). All (N, C, H, W) float32 but
        ``abar``, broadcastable against them ((N, 1, 1, 1) or ()). The epsilon case returns ``out``."""
        if self.learned_variance:
            out = out[:, : x_t.shape[1]]
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":
            return abar.sqrt() * out + (1.0 - abar).sqrt() * x_t
        return (x_t - abar.sqrt() * out) / (1.0 - abar).sqrt()  # "sample"

    @property
    def uses_bf16(self) -> bool:
        return self.precision.startswith("bf16")

    def card(self) -> dict[str, Any]:
        """A model card: plain values for display and for JSON."""
        return {**self.card_basics(), **self.card_reading()}

    def card_basics(self) -> dict[str, Any]:
        """The model card's first part, the same for every kind of target: where it came from, its size,
        schedule, device and precision, the loader's notes, and which attacks do not apply (with why)."""
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "parameters": self.n_parameters,
            "resolution": self.resolution,
            "channels": self.channels,
            "block_out_channels": list(self.unet.config.block_out_channels),
            "schedule": self.schedule.description,
            "timesteps": self.schedule.num_timesteps,
            "device": str(self.device),
            "precision": PRECISION_TEXT[self.precision] + (", torch.compile" if self.compile else ""),
            "notes": list(self.notes),
            "not_applicable": not_applicable_attacks(self),
        }

    def card_reading(self) -> dict[str, Any]:
        """What was read from the model's configs and how it is used (the model card's second part):
        parameterisation, schedule with abar at a few t, pixel or latent space, what is converted,
        what the sampler does, and which attacks do not apply (with the reason)."""
        sched = self.schedule
        last = sched.num_timesteps - 1
        ts = sorted({0, min(100, last), min(200, last), sched.num_timesteps // 2, last})
        conversions = [PREDICTION_TEXT[self.prediction_type]]
        if self.learned_variance:
            conversions.append(
                f"variance_type {self.variance_type}: the UNet's last {self.model_shape[0]} output "
                "channels (the variance) are dropped"
            )
        if self.latent:
            kind = vae_kind(self.vae)
            how = (
                "posterior mean of the AutoencoderKL" if kind == "kl" else "VQModel encoder output before quantisation"
            )
            shift = getattr(self.vae.config, "shift_factor", None)
            conversions.append(
                f"images -> latents: {how}, times the scaling factor {self.scaling_factor:g}"
                + (f" after subtracting shift_factor {shift:g}" if shift else "")
                + "; images shown are decoded"
            )
        cfg = self.scheduler_config or {}
        space = (
            f"latent {'x'.join(map(str, self.model_shape))} ({type(self.vae).__name__}, "
            f"{self.n_vae_parameters:,} parameters; images {self.channels}x{self.resolution}x{self.resolution})"
            if self.latent
            else "pixel"
        )
        return {
            "parameterisation": self.prediction_type,
            "variance_type": self.variance_type or "not stated (the ELBO uses fixed_large)",
            "abar_at_t": {str(t): float(f"{float(sched.alphas_cumprod[t]):.6g}") for t in ts},
            "zero_terminal_snr": sched.zero_terminal_snr,
            "space": space,
            "vae_scaling_factor": self.scaling_factor,
            "converted": conversions,
            "scheduler_config": (
                f"{cfg.get('_class_name', 'DDPMScheduler')}"
                + "".join(f", {k}={cfg[k]}" for k in SAMPLING_ONLY_KEYS if k in cfg)
                if cfg
                else "none (schedule given in code)"
            ),
            "not_applicable": not_applicable_attacks(self),
        }

    # -- the one thing attacks need ----------------------------------------------------------

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor, *, raw: bool = False) -> torch.Tensor:
        """eps_theta(x_t, t) for a batch (``raw``: the network's output unconverted, see :meth:`model_output`).

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
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = self._net(self._forward, x, t, n)
            if raw:
                return out[:n, : x.shape[1]].float()
            if self.prediction_type == "epsilon" and not self.learned_variance:
                return out[:n].float()
            x_n = x[:n].float()
            return self.to_epsilon(out[:n].float(), x_n, self.schedule.abar(t[:n], x_n))

    def model_output(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The network's own output (eps, v or x0_hat as ``prediction_type`` says; a learned variance's
        channels dropped), for diffusers' scheduler in the sampler, which converts it itself.
        Shapes and devices as :meth:`eps`."""
        return self.eps(x_t, t, raw=True)

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
            out = self._net(self.unet, x, t, n)
            if self.prediction_type == "epsilon" and not self.learned_variance:
                return out.float()
            return self.to_epsilon(out.float(), x.float(), self.schedule.abar_between(t).view(-1, 1, 1, 1))

    def _net(self, module: Any, x: torch.Tensor, t: torch.Tensor, n: int) -> torch.Tensor:
        """One forward pass of ``module`` (the UNet or its compiled form): (M, C, H, W), (M,) -> the raw
        output (M, C_out, H, W). ``n`` <= M is the number of real rows (the rest pads a compiled batch).
        A text-to-image target adds its conditioning here (:class:`TextToImageTarget`)."""
        return module(x, t).sample


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


def fingerprint_module(
    unet: Any, schedule: NoiseSchedule, meaning: dict[str, str] | None = None, vae: Any = None
) -> str:
    """sha256 over the UNet config, every weight tensor, the schedule, ``meaning`` (what the
    output is, when not eps: see ``Target._meaning``) and a latent target's VAE; 16 hex digits."""
    h = hashlib.sha256()
    if meaning:
        h.update(json.dumps(meaning, sort_keys=True).encode())
    if vae is not None:
        h.update(json.dumps(_plain_config(vae.config), sort_keys=True, default=str).encode())
        for name, tensor in sorted(vae.state_dict().items()):
            h.update(b"vae." + name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(json.dumps(_plain_config(unet.config), sort_keys=True, default=str).encode())
    for name, tensor in sorted(unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(schedule.alphas_cumprod.numpy().tobytes())
    return h.hexdigest()[:16]


def _plain_config(config: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


# -- parameterisation --------------------------------------------------------------------------

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
PREDICTION_TEXT = {
    "epsilon": "epsilon-prediction: the network's output is eps, used as is",
    "v_prediction": "v-prediction: eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t",
    "sample": "sample-prediction: eps = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)",
}


def not_applicable_attacks(target: Target) -> dict[str, str]:
    """attack name -> why it does not apply to ``target``, for every registered attack that does not."""
    from .attacks import REGISTRY, not_applicable  # the attacks import this module

    return not_applicable([cls() for cls in REGISTRY.values()], target)


#: diffusers' variance_type values (DDPMScheduler); the ELBO reads them (see mia_core.attacks.likelihood).
VARIANCE_TYPES = ("fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log", "learned", "learned_range")
LEARNED_VARIANCES = ("learned", "learned_range")
#: scheduler-config keys that matter only for generating images: honoured by the sampler
#: (mia_core.sampling builds diffusers' scheduler from the config), irrelevant to scoring.
SAMPLING_ONLY_KEYS = (
    "clip_sample",
    "clip_sample_range",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "timestep_spacing",
    "steps_offset",
    "set_alpha_to_one",
)


def read_parameterisation(scheduler_config: dict[str, Any] | None) -> dict[str, Any]:
    """``prediction_type`` and ``variance_type`` from a scheduler config, refusing unknown values by name.

    A DDPMScheduler config without ``variance_type`` means diffusers' default "fixed_small"; other
    schedulers (DDIM, PNDM, ...) have no such key: None (the ELBO then uses "fixed_large", Ho et al.'s
    choice for the bound, and says so).
    """
    config = scheduler_config or {}
    prediction = config.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise TargetLoadError(
            f"prediction_type {prediction!r} is not supported; the lab converts {', '.join(PREDICTION_TYPES)} to eps"
        )
    variance = config.get("variance_type")
    if (
        variance is None
        and scheduler_config is not None
        and config.get("_class_name", "DDPMScheduler") == "DDPMScheduler"
    ):
        variance = "fixed_small"
    if variance is not None and variance not in VARIANCE_TYPES:
        raise TargetLoadError(f"variance_type {variance!r} is not one diffusers defines ({', '.join(VARIANCE_TYPES)})")
    return {"prediction_type": prediction, "variance_type": variance}


def check_parameterisation(
    unet_config: Any, schedule: NoiseSchedule, prediction_type: str, variance_type: str | None
) -> None:
    """Refuse, by name, a parameterisation whose conversion to eps would be undefined or unread."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
    if variance_type is not None and variance_type not in VARIANCE_TYPES:
        raise ValueError(f"variance_type must be one of {VARIANCE_TYPES} or None, got {variance_type!r}")
    if prediction_type == "sample" and float(schedule.alphas_cumprod[0]) >= 1.0:
        raise ValueError(
            "prediction_type 'sample' with abar_0 = 1 (beta_0 = 0): eps = (x_t - sqrt(abar) x0_hat) / "
            "sqrt(1 - abar) is undefined at t = 0"
        )
    if prediction_type == "epsilon" and getattr(schedule, "zero_terminal_snr", False):
        pass  # eps at t = T-1 is fine; only x0_hat there is undefined (NoiseSchedule.check_invertible)
    c_in, c_out = int(unet_config.in_channels), int(unet_config.out_channels)
    expected = 2 * c_in if variance_type in LEARNED_VARIANCES else c_in
    if c_out != expected:
        raise ValueError(
            f"the UNet has {c_in} input and {c_out} output channels, but variance_type "
            f"{variance_type!r} needs {expected} output channels"
        )


# -- latent diffusion ------------------------------------------------------------------------

#: VAE class -> kind, and the pipeline subfolder diffusers names it.
VAE_CLASSES = {"AutoencoderKL": "kl", "VQModel": "vq"}
VAE_FOLDERS = ("vqvae", "vae")


def vae_kind(vae: Any) -> str:
    name = type(vae).__name__
    if name not in VAE_CLASSES:
        raise ValueError(f"a {name} is not a supported VAE; supported: {', '.join(VAE_CLASSES)}")
    return VAE_CLASSES[name]


def vae_downsampling(vae: Any) -> int:
    """Image side / latent side: 2 per encoder level after the first."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def check_vae(vae: Any, unet_config: Any) -> None:
    """Refuse, by name, a VAE that does not fit the UNet or whose latent normalisation is not honoured."""
    vae_kind(vae)
    cfg = vae.config
    if getattr(cfg, "latents_mean", None) is not None or getattr(cfg, "latents_std", None) is not None:
        raise ValueError(
            "the VAE config sets latents_mean / latents_std (a per-channel latent normalisation); "
            "only scaling_factor and shift_factor are supported"
        )
    if getattr(cfg, "scaling_factor", None) in (None, 0):
        raise ValueError(f"the VAE's scaling_factor is {getattr(cfg, 'scaling_factor', None)!r}; it must be a number")
    if int(cfg.latent_channels) != int(unet_config.in_channels):
        raise ValueError(
            f"the VAE makes {cfg.latent_channels}-channel latents but the UNet takes {unet_config.in_channels} channels"
        )


# -- text-to-image (Stable Diffusion) -------------------------------------------------------------

#: text-to-image pipelines the lab attacks, and the components it loads from each (the safety checker,
#: feature extractor and image encoder are never loaded).
T2I_PIPELINES = {"StableDiffusionPipeline": ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
#: the text encoders and tokenizers it loads (transformers classes).
T2I_TEXT_ENCODERS = ("CLIPTextModel",)
T2I_TOKENIZERS = ("CLIPTokenizer", "CLIPTokenizerFast")
#: transformers' safetensors names: (single file, shard index, shard glob) for a variant or none.
TEXT_WEIGHTS_NAME = "model.safetensors"
#: the text embeddings kept in memory per target (an SD-1.x embedding is 77 x 768 float32 = 236 KB).
EMBEDDING_CACHE_BYTES = 256 * 2**20


def text_weight_names(variant: str | None = None) -> tuple[str, str, str]:
    """(single file, shard index, shard glob) of a transformers model's safetensors, as transformers names them."""
    if variant:
        return (
            f"model.{variant}.safetensors",
            f"model.safetensors.index.{variant}.json",
            f"model.{variant}-*-of-*.safetensors",
        )
    return TEXT_WEIGHTS_NAME, "model.safetensors.index.json", "model-*-of-*.safetensors"


@dataclass(eq=False)
class TextToImageTarget(Target):
    """A text-conditioned latent diffusion model (a Stable Diffusion pipeline): eps_theta(z_t, t, c).

    Latents are what :meth:`Target.encode` makes (the AutoencoderKL's posterior mean times
    ``scaling_factor``), exactly as for an unconditional latent target. The condition c is the
    text encoder's last hidden state for a prompt, (L, D) with L the tokenizer's maximum length
    (77 for SD 1.x) and D the UNet's ``cross_attention_dim``; prompts are padded to L, as diffusers'
    pipeline does, and each distinct prompt is encoded once (:meth:`embed`, cached).

    Which prompt conditions which image is set per batch by :meth:`conditioned` (the attacks do it,
    see ``mia_core.attacks.conditioning``); outside it every call is conditioned on the empty prompt
    "" (c_empty: the unconditional model of classifier-free guidance). Inside it, with B prompts, a
    forward pass of M = K * B rows uses prompt ``r mod B`` for row r: the attacks stack their
    evaluations as K blocks of the B images (``stack_timesteps``, ``torch.cat`` of per-timestep
    batches), and a pass whose row count is not a multiple of B is refused.

    Classifier-free guidance with scale w (``conditioned(..., guidance_scale=w)``): the output is
    out(c_empty) + w (out(c) - out(c_empty)), both halves in one forward pass of 2M rows, so a UNet
    call costs twice. w = 1 (the default) is the conditional output alone, one pass.
    """

    text_encoder: Any = None
    tokenizer: Any = None
    kind: ClassVar[str] = "t2i"

    def __post_init__(self) -> None:
        if self.text_encoder is None or self.tokenizer is None:
            raise ValueError("a text-to-image target needs a text_encoder and a tokenizer")
        if self.vae is None:
            raise ValueError("a text-to-image target needs its VAE: the lab attacks latent text-to-image models only")
        width = int(getattr(self.text_encoder.config, "hidden_size", 0))
        cross = self.unet.config.cross_attention_dim
        cross = int(cross if isinstance(cross, int) else cross[0])
        if width != cross:
            raise ValueError(
                f"the text encoder makes {width}-wide embeddings but the UNet's cross_attention_dim is {cross}"
            )
        if not self.fingerprint:
            self.fingerprint = fingerprint_t2i(
                self.unet, self.schedule, self._meaning(), self.vae, self.text_encoder, self.tokenizer
            )
        super().__post_init__()
        self.text_encoder = self.text_encoder.float().to(self.device).eval()
        self.text_encoder.requires_grad_(False)
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cond: torch.Tensor | None = None
        self._guidance = 1.0
        self._prompts: tuple[str, ...] | None = None

    # -- what the model is -----------------------------------------------------------------

    @property
    def max_tokens(self) -> int:
        """L, the tokens per prompt (the tokenizer's maximum length, at most the encoder's positions)."""
        positions = int(getattr(self.text_encoder.config, "max_position_embeddings", 77))
        return min(int(self.tokenizer.model_max_length), positions)

    @property
    def n_text_parameters(self) -> int:
        return sum(p.numel() for p in self.text_encoder.parameters())

    def card_reading(self) -> dict[str, Any]:
        out = super().card_reading()
        cfg = self.text_encoder.config
        out["components"] = {
            "unet": f"{type(self.unet).__name__}, {self.n_parameters:,} parameters",
            "vae": f"{type(self.vae).__name__}, {self.n_vae_parameters:,} parameters",
            "text_encoder": (
                f"{type(self.text_encoder).__name__}, {self.n_text_parameters:,} parameters, "
                f"{cfg.num_hidden_layers} layers, width {cfg.hidden_size}"
            ),
            "tokenizer": f"{type(self.tokenizer).__name__}, {len(self.tokenizer):,} tokens, {self.max_tokens} per prompt",
        }
        out["conditioning"] = (
            f"text: the {type(self.text_encoder).__name__}'s last hidden state ({self.max_tokens} x "
            f"{cfg.hidden_size}) by cross-attention; each run chooses the prompt (the image's own caption, the "
            "empty prompt, or one fixed prompt); classifier-free guidance off (scale 1) unless a run sets it, "
            "which doubles every UNet call"
        )
        return out

    # -- text ------------------------------------------------------------------------------

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings of N prompts: (N, L, D) float32 on the target's device.

        Each distinct prompt is tokenized (padded / truncated to L tokens) and encoded once; the
        results are cached (least recently used first out beyond ``EMBEDDING_CACHE_BYTES``).
        """
        prompts = [str(p) for p in prompts]
        missing = [p for p in dict.fromkeys(prompts) if p not in self._embeddings]
        for start in range(0, len(missing), 64):
            chunk = missing[start : start + 64]
            ids = self.tokenizer(
                chunk, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt"
            ).input_ids.to(self.device)
            with torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
                hidden = self.text_encoder(ids)[0].float()
            for prompt, row in zip(chunk, hidden):
                self._embeddings[prompt] = row.clone()
        rows = []
        for p in prompts:
            self._embeddings.move_to_end(p)
            rows.append(self._embeddings[p])
        out = torch.stack(rows) if rows else torch.zeros(0, self.max_tokens, int(self.text_encoder.config.hidden_size))
        per = max(1, rows[0].numel() * 4) if rows else 1
        while len(self._embeddings) > max(len(set(prompts)), EMBEDDING_CACHE_BYTES // per):
            self._embeddings.popitem(last=False)
        return out

    @contextlib.contextmanager
    def conditioned(self, prompts: Sequence[str], guidance_scale: float = 1.0) -> Iterator[None]:
        """Inside this block the UNet is conditioned on ``prompts`` (B of them, one per image of the batch
        being scored; row r of a forward pass uses prompt r mod B), with classifier-free guidance scale
        ``guidance_scale`` (1 = off)."""
        if not prompts:
            raise ValueError("conditioned() needs at least one prompt")
        if not (isinstance(guidance_scale, (int, float)) and math.isfinite(guidance_scale)):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        previous = (self._cond, self._guidance, self._prompts)
        self._cond, self._guidance = self.embed(prompts), float(guidance_scale)
        self._prompts = tuple(str(p) for p in prompts)
        try:
            yield
        finally:
            self._cond, self._guidance, self._prompts = previous

    @property
    def current_prompts(self) -> tuple[str, ...] | None:
        """The B prompts of the innermost :meth:`conditioned` block (None outside one: the empty prompt)."""
        return self._prompts

    @property
    def guidance_scale(self) -> float:
        """The classifier-free guidance scale in force (1 = off)."""
        return self._guidance

    def condition_rows(self, m: int, n: int | None = None) -> torch.Tensor:
        """The embeddings of a forward pass of ``m`` rows, of which the first ``n`` (default m) are real
        (the rest pad a compiled batch and repeat the last row): (m, L, D)."""
        n = m if n is None else n
        cond = self._cond if self._cond is not None else self.embed([""])
        b = cond.shape[0]
        if n % b:
            raise ValueError(
                f"a forward pass of {n} rows cannot be conditioned on {b} prompts: the rows must be whole "
                f"blocks of the {b} images (row r uses prompt r mod {b})"
            )
        rows = cond.repeat(n // b, 1, 1)
        if m > n:
            rows = torch.cat([rows, rows[-1:].expand(m - n, *rows.shape[1:])])
        return rows

    def _net(self, module: Any, x: torch.Tensor, t: torch.Tensor, n: int) -> torch.Tensor:
        m = x.shape[0]
        cond = self.condition_rows(m, n).to(x.dtype)
        if self._guidance == 1.0:
            return module(x, t, encoder_hidden_states=cond).sample
        empty = self.embed([""]).to(x.dtype).expand(m, -1, -1)
        out = module(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([empty, cond])).sample
        uncond, cond_out = out.chunk(2)
        return uncond + self._guidance * (cond_out - uncond)


def fingerprint_t2i(
    unet: Any, schedule: NoiseSchedule, meaning: dict[str, str], vae: Any, text_encoder: Any, tokenizer: Any
) -> str:
    """:func:`fingerprint_module` extended with the text encoder's config and weights and the tokenizer's
    vocabulary (a different text side means a different model); 16 hex digits."""
    h = hashlib.sha256(fingerprint_module(unet, schedule, meaning, vae).encode())
    h.update(json.dumps(_plain_config(text_encoder.config.to_dict()), sort_keys=True, default=str).encode())
    for name, tensor in sorted(text_encoder.state_dict().items()):
        h.update(b"text." + name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), default=str).encode())
    h.update(str(int(tokenizer.model_max_length)).encode())
    return h.hexdigest()[:16]


# -- loading -----------------------------------------------------------------------------------


def load_target(
    spec: str = "default",
    *,
    device: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
    **options: Any,
) -> Target:
    """Load a target from ``"default"``, a local diffusers folder, or a Hub id (see module doc).

    ``revision`` (a branch, tag or commit of a Hub repo) and ``variant`` (weights saved as
    ``diffusion_pytorch_model.<variant>.safetensors``, e.g. "fp16"; the model still runs in float32)
    are diffusers' options of the same names. ``options`` go to :class:`Target` (``precision``, ``compile``).
    """
    if revision is not None and not HUB_ID_PATTERN.match(spec or ""):
        raise TargetLoadError(f"revision={revision!r} applies to a Hub id, not to {spec!r}")
    dev = pick_device(device)
    if spec in ("", "default"):
        if not (DEFAULT_TARGET_DIR / "unet" / WEIGHTS_NAME).exists():
            raise TargetLoadError(f"the embedded default target is missing from {DEFAULT_TARGET_DIR}")
        return load_folder(DEFAULT_TARGET_DIR, device=dev, source="default", variant=variant, **options)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TargetLoadError(
                f"{spec!r} is a file; a target is a diffusers folder (config.json + {WEIGHTS_NAME}, "
                "or unet/ + scheduler/), a Hub id, or 'default'"
            )
        return load_folder(path, device=dev, source=str(path), variant=variant, **options)
    _refuse_missing_local_path(spec, path)
    if HUB_ID_PATTERN.match(spec):
        source = spec if revision is None else f"{spec}@{revision}"
        return load_folder(
            hub_snapshot(spec, revision=revision, variant=variant),
            device=dev,
            source=source,
            variant=variant,
            **options,
        )
    raise TargetLoadError(f"target {spec!r} is neither an existing folder nor a Hub id like 'google/ddpm-cifar10-32'")


def load_folder(
    folder: Path,
    *,
    device: torch.device | str | None = None,
    source: str | None = None,
    variant: str | None = None,
    **options: Any,
) -> Target:
    """Load a bare UNet folder or a pipeline folder with ``unet/`` and ``scheduler/`` (and ``vae/`` or
    ``vqvae/`` for latent diffusion); single-file or sharded safetensors, optionally a ``variant``."""
    from .lazy import MODEL_BUILD_LOCK, diffusers_class

    UNet2DModel = diffusers_class("UNet2DModel")

    folder = Path(folder)
    dev = device if isinstance(device, torch.device) else pick_device(device)
    unet_dir, scheduler_config, notes = _locate(folder)
    vae = _load_vae(folder, variant) if unet_dir != folder else None
    config = _read_json(unet_dir / "config.json")
    _check_config(unet_dir / "config.json", config, dev)
    cls_name = config.get("_class_name", "UNet2DModel")
    if cls_name == "UNet2DConditionModel" and unet_dir != folder:
        return _load_t2i(folder, unet_dir, config, scheduler_config, notes, dev, source, variant, **options)
    if cls_name != "UNet2DModel":
        raise TargetLoadError(f"{unet_dir} holds a {cls_name}; only unconditional UNet2DModel targets are supported")
    if config.get("num_class_embeds") or config.get("class_embed_type"):
        raise TargetLoadError(
            f"{unet_dir}: a class-conditional UNet2DModel (num_class_embeds="
            f"{config.get('num_class_embeds')!r}, class_embed_type={config.get('class_embed_type')!r}) "
            "needs class labels; only unconditional targets are supported"
        )
    _require_safetensors(unet_dir, variant)
    single = unet_dir / weight_names(variant)[0]
    if single.exists():  # sharded weights are checked by safetensors itself as they load
        _check_weights(single)
    with MODEL_BUILD_LOCK:  # construction draws random initial weights (then overwritten): see lazy.py
        unet = UNet2DModel.from_pretrained(unet_dir, use_safetensors=True, low_cpu_mem_usage=False, variant=variant)
    sched_cfg = _read_json(scheduler_config) if scheduler_config is not None else None
    if sched_cfg is not None and not isinstance(sched_cfg, dict):
        raise TargetLoadError(
            f"{scheduler_config} is a {type(sched_cfg).__name__}, not an object of scheduler settings"
        )
    if sched_cfg is not None and sched_cfg.get("_class_name") == "ScoreSdeVeScheduler":  # score-based (VE-SDE)
        from .score_sde import ScoreTarget

        return ScoreTarget.from_scheduler_config(
            unet,
            sched_cfg,
            source=source or str(folder),
            device=dev,
            notes=tuple(notes),
            scheduler_config=sched_cfg,
            **options,
        )
    if sched_cfg is not None:
        schedule = _schedule_from(scheduler_config)
    else:
        schedule = NoiseSchedule.linear()
        notes.append("no scheduler config found: assumed linear betas 1e-4..0.02, T=1000, eps-prediction")
    param = read_parameterisation(sched_cfg)
    try:
        return Target(
            unet,
            schedule,
            source=source or str(folder),
            device=dev,
            notes=tuple(notes),
            scheduler_config=sched_cfg,
            vae=vae,
            **param,
            **options,
        )
    except ValueError as exc:
        raise TargetLoadError(str(exc)) from None


def _load_t2i(
    folder: Path,
    unet_dir: Path,
    config: dict[str, Any],
    scheduler_config: Path | None,
    notes: list[str],
    dev: torch.device,
    source: str | None,
    variant: str | None,
    **options: Any,
) -> TextToImageTarget:
    """A Stable Diffusion pipeline folder (``model_index.json``, ``unet/`` UNet2DConditionModel, ``vae/``,
    ``text_encoder/`` + ``tokenizer/`` (CLIP), ``scheduler/``) as a :class:`TextToImageTarget`: safetensors
    only, float32 weights (bf16 autocast on a GPU, as every target). What it cannot attack is refused by name."""
    from .lazy import MODEL_BUILD_LOCK, diffusers_class

    index_path = folder / "model_index.json"
    index = _read_json(index_path) if index_path.exists() else {}
    pipeline = str(index.get("_class_name", "")) if isinstance(index, dict) else ""
    if pipeline and pipeline not in T2I_PIPELINES:
        raise TargetLoadError(
            f"{index_path}: a {pipeline} with a UNet2DConditionModel; the lab attacks {', '.join(T2I_PIPELINES)} only"
        )
    for key in ("addition_embed_type", "class_embed_type", "encoder_hid_dim_type"):
        if config.get(key):
            raise TargetLoadError(
                f"{unet_dir / 'config.json'}: {key}={config[key]!r} needs inputs beyond a text embedding "
                "(an SDXL-style or image-conditioned UNet); only Stable Diffusion 1.x / 2.x-style UNets are supported"
            )
    for part in ("vae", "text_encoder", "tokenizer"):
        if not (folder / part).is_dir():
            raise TargetLoadError(
                f"{folder} has a text-conditioned UNet but no {part}/ folder (a StableDiffusionPipeline has one)"
            )
    if scheduler_config is None:
        raise TargetLoadError(f"{folder} has no scheduler/scheduler_config.json: the noise schedule is unknown")
    _require_safetensors(unet_dir, variant)
    single = unet_dir / weight_names(variant)[0]
    if single.exists():
        _check_weights(single)
    vae = _load_vae(folder, variant)
    text_encoder = _load_text_encoder(folder / "text_encoder", variant)
    tokenizer = _load_tokenizer(folder / "tokenizer")
    with MODEL_BUILD_LOCK:
        unet = diffusers_class("UNet2DConditionModel").from_pretrained(
            unet_dir, use_safetensors=True, low_cpu_mem_usage=False, variant=variant
        )
    sched_cfg = _read_json(scheduler_config)
    if not isinstance(sched_cfg, dict):
        raise TargetLoadError(
            f"{scheduler_config} is a {type(sched_cfg).__name__}, not an object of scheduler settings"
        )
    schedule = _schedule_from(scheduler_config)
    try:
        return TextToImageTarget(
            unet,
            schedule,
            source=source or str(folder),
            device=dev,
            notes=tuple(notes),
            scheduler_config=sched_cfg,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            **read_parameterisation(sched_cfg),
            **options,
        )
    except ValueError as exc:
        raise TargetLoadError(str(exc)) from None


def _load_text_encoder(text_dir: Path, variant: str | None = None) -> Any:
    """The CLIP text encoder of a pipeline folder, from safetensors only (transformers' file names)."""
    import transformers

    config = _read_json(text_dir / "config.json") if (text_dir / "config.json").exists() else None
    if not isinstance(config, dict):
        raise TargetLoadError(f"{text_dir} has no config.json of a text encoder")
    arch = (config.get("architectures") or [""])[0]
    if arch not in T2I_TEXT_ENCODERS:
        raise TargetLoadError(
            f"{text_dir / 'config.json'}: a {arch or 'model without architectures'}; text encoders supported: "
            f"{', '.join(T2I_TEXT_ENCODERS)}"
        )
    single, index, _ = text_weight_names(variant)
    if not (text_dir / single).exists() and not (text_dir / index).exists():
        pickles = sorted(p.name for p in text_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise TargetLoadError(
                f"refusing to load {text_dir / pickles[0]}: pickle weights can run arbitrary code and are never "
                "unpickled. Save the text encoder with safetensors (save_pretrained(folder, safe_serialization=True))"
            )
        raise TargetLoadError(f"{text_dir} has config.json but no weights file ({single}) nor a shard index ({index})")
    if (text_dir / single).exists():
        _check_weights(text_dir / single)
    from .lazy import MODEL_BUILD_LOCK

    with MODEL_BUILD_LOCK:
        return getattr(transformers, arch).from_pretrained(text_dir, use_safetensors=True, variant=variant)


def _load_tokenizer(tok_dir: Path) -> Any:
    """The CLIP tokenizer of a pipeline folder (vocab.json + merges.txt, or tokenizer.json: data, no code)."""
    from transformers import CLIPTokenizer

    files = {p.name for p in _listdir(tok_dir)}
    if not ({"vocab.json", "merges.txt"} <= files or "tokenizer.json" in files):
        raise TargetLoadError(f"{tok_dir} has no CLIP tokenizer files (vocab.json + merges.txt, or tokenizer.json)")
    config = _read_json(tok_dir / "tokenizer_config.json") if "tokenizer_config.json" in files else {}
    cls_name = str((config or {}).get("tokenizer_class", "CLIPTokenizer"))
    if cls_name not in T2I_TOKENIZERS:
        raise TargetLoadError(
            f"{tok_dir / 'tokenizer_config.json'}: tokenizer_class {cls_name!r}; supported: {', '.join(T2I_TOKENIZERS)}"
        )
    try:
        return CLIPTokenizer.from_pretrained(tok_dir)
    except Exception as exc:
        raise TargetLoadError(f"{tok_dir}: the tokenizer cannot be read ({type(exc).__name__}: {exc})") from None


def _load_vae(folder: Path, variant: str | None = None) -> Any:
    """The VAE of a latent pipeline folder (``vqvae/`` or ``vae/``), or None for a pixel pipeline."""
    from .lazy import MODEL_BUILD_LOCK, diffusers_class

    found = [folder / name for name in VAE_FOLDERS if (folder / name / "config.json").exists()]
    if not found:
        return None
    vae_dir = found[0]
    cls_name = json.loads((vae_dir / "config.json").read_text()).get("_class_name", "")
    if cls_name not in VAE_CLASSES:
        raise TargetLoadError(
            f"{vae_dir} holds a {cls_name or 'model without _class_name'}; latent targets need a "
            f"{' or '.join(VAE_CLASSES)}"
        )
    _require_safetensors(vae_dir, variant)
    with MODEL_BUILD_LOCK:
        return diffusers_class(cls_name).from_pretrained(
            vae_dir, use_safetensors=True, low_cpu_mem_usage=False, variant=variant
        )


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


def weight_names(variant: str | None = None) -> tuple[str, str, str]:
    """(single file, shard index, shard glob) of a diffusers model's safetensors, as diffusers names them."""
    if variant:
        return (
            f"diffusion_pytorch_model.{variant}.safetensors",
            f"diffusion_pytorch_model.safetensors.index.{variant}.json",
            f"diffusion_pytorch_model.{variant}-*-of-*.safetensors",
        )
    return WEIGHTS_NAME, "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model-*-of-*.safetensors"


def _require_safetensors(unet_dir: Path, variant: str | None = None) -> None:
    single, index, _ = weight_names(variant)
    if (unet_dir / single).exists() or (unet_dir / index).exists():
        return
    pickles = sorted(p.name for p in unet_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise TargetLoadError(
            f"refusing to load {unet_dir / pickles[0]}: pickle weights can run arbitrary code and are never "
            f"unpickled. Save the model with safetensors (model.save_pretrained(folder, safe_serialization=True))"
        )
    raise TargetLoadError(
        f"{unet_dir} has config.json but no weights file ({single}) nor a shard index ({index})"
        + (f" for variant {variant!r}" if variant else "")
    )


# -- the Hugging Face Hub ----------------------------------------------------------------------

#: unconditional pipelines the lab attacks, and the components it needs from each.
HUB_PIPELINES = {
    "DDPMPipeline": ("unet", "scheduler"),
    "DDIMPipeline": ("unet", "scheduler"),
    "PNDMPipeline": ("unet", "scheduler"),
    "LDMPipeline": ("unet", "vqvae", "scheduler"),
    "ScoreSdeVePipeline": ("unet", "scheduler"),
}
#: component -> the classes the lab can load there.
HUB_COMPONENT_CLASSES = {"unet": ("UNet2DModel",), "vqvae": tuple(VAE_CLASSES), "vae": tuple(VAE_CLASSES)}


def hub_plan(model_index: dict[str, Any] | None, unet_config: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The components to download for a Hub repo, from its ``model_index.json`` (None: a bare model
    repo, judged by its ``config.json``). Raises TargetLoadError, before any weight is downloaded,
    for what the lab cannot attack: a conditional UNet outside a Stable Diffusion pipeline, an unknown
    pipeline, an unknown component class."""
    if model_index is None:
        cls_name = (unet_config or {}).get("_class_name", "UNet2DModel")
        if cls_name != "UNet2DModel":
            raise TargetLoadError(f"the repo holds a {cls_name}; only unconditional UNet2DModel targets are supported")
        return ()
    pipeline = str(model_index.get("_class_name", ""))
    components = {k: v for k, v in model_index.items() if not k.startswith("_")}
    unet_cls = (components.get("unet") or [None, None])[-1]
    if pipeline in T2I_PIPELINES:
        wanted = T2I_PIPELINES[pipeline]
        missing = [c for c in wanted if not (components.get(c) or [None, None])[-1]]
        if missing:
            raise TargetLoadError(f"{pipeline} has no {', '.join(missing)} component(s) in model_index.json")
        if unet_cls != "UNet2DConditionModel":
            raise TargetLoadError(f"{pipeline}'s unet is a {unet_cls}; expected UNet2DConditionModel")
        if components["text_encoder"][-1] not in T2I_TEXT_ENCODERS:
            raise TargetLoadError(
                f"{pipeline}'s text_encoder is a {components['text_encoder'][-1]}; supported: {', '.join(T2I_TEXT_ENCODERS)}"
            )
        return wanted
    if unet_cls is not None and unet_cls != "UNet2DModel":
        raise TargetLoadError(
            f"{pipeline or 'the pipeline'} has a {unet_cls}: a conditional (e.g. text-to-image) "
            "target, which this lab does not attack yet; only unconditional UNet2DModel pipelines"
        )
    if pipeline not in HUB_PIPELINES:
        needed = [c for c in ("unet", "scheduler", "vqvae", "vae") if c in components]
        if "unet" not in components or "scheduler" not in components:
            raise TargetLoadError(
                f"unknown pipeline class {pipeline!r} with components {sorted(components)}; "
                f"supported: {', '.join(HUB_PIPELINES)}"
            )
        raise TargetLoadError(
            f"unknown pipeline class {pipeline!r} (components {', '.join(needed)}): its sampling "
            f"loop may not be a DDPM's; supported: {', '.join(HUB_PIPELINES)}"
        )
    wanted = HUB_PIPELINES[pipeline]
    for comp in wanted:
        entry = components.get(comp)
        if entry is None:
            raise TargetLoadError(f"{pipeline} has no {comp!r} component in model_index.json")
        allowed = HUB_COMPONENT_CLASSES.get(comp)
        if allowed and entry[-1] not in allowed:
            raise TargetLoadError(f"{pipeline}'s {comp} is a {entry[-1]}; supported: {', '.join(allowed)}")
    return wanted


def hub_patterns(components: tuple[str, ...], variant: str | None = None) -> list[str]:
    """allow_patterns for ``snapshot_download``: configs and the safetensors weights of the components only."""
    single, index, shards = weight_names(variant)
    if not components:  # a bare model repo
        return ["config.json", "scheduler_config.json", single, index, shards]
    out = ["model_index.json"]
    for comp in components:
        if comp == "scheduler":
            out.append("scheduler/scheduler_config.json")
        elif comp == "tokenizer":  # vocabulary files only: data, never code
            out += ["tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer.json"]
            out += ["tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json"]
        elif comp == "text_encoder":  # transformers names its safetensors model*.safetensors
            t_single, t_index, t_shards = text_weight_names(variant)
            out += [f"{comp}/config.json", f"{comp}/{t_single}", f"{comp}/{t_index}", f"{comp}/{t_shards}"]
        else:
            out += [f"{comp}/config.json", f"{comp}/{single}", f"{comp}/{index}", f"{comp}/{shards}"]
    return out


def _hub_json(repo_id: str, filename: str, revision: str | None) -> dict[str, Any] | None:
    """A small JSON file of a Hub repo (the cache first, then the network); None when the repo has none."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        return json.loads(
            Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True)).read_text()
        )
    except Exception:  # not cached: ask the Hub below
        pass
    try:
        return json.loads(Path(hf_hub_download(repo_id, filename, revision=revision)).read_text())
    except RemoteEntryNotFoundError:  # the Hub answered: no such file (offline is LocalEntryNotFoundError)
        return None
    except Exception as exc:
        raise TargetLoadError(
            f"could not get {repo_id!r} from the Hugging Face Hub: not in the local cache and the download failed "
            f"({type(exc).__name__}). Save it with save_pretrained on an online machine and pass the folder instead"
        ) from exc


def hub_snapshot(repo_id: str, *, revision: str | None = None, variant: str | None = None) -> Path:
    """A local snapshot of what the lab needs from a Hub repo, as diffusers would fetch it.

    ``model_index.json`` is read first to find the components (a repo without one is a bare model:
    its ``config.json`` is read); what cannot be attacked is refused before any weight is downloaded;
    then only the configs and safetensors weights (single-file or sharded, of ``variant`` when given)
    of the needed components are fetched, from the cache when they are there.
    """
    from huggingface_hub import snapshot_download

    model_index = _hub_json(repo_id, "model_index.json", revision)
    unet_config = _hub_json(repo_id, "config.json", revision) if model_index is None else None
    if model_index is None and unet_config is None:
        raise TargetLoadError(
            f"{repo_id!r} on the Hugging Face Hub has neither model_index.json nor config.json: not a diffusers model"
        )
    patterns = hub_patterns(hub_plan(model_index, unet_config), variant)
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=True))
    except Exception:  # not (fully) cached: download below
        pass
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:
        raise TargetLoadError(
            f"could not download {repo_id!r} ({', '.join(patterns)}) from the Hugging Face Hub "
            f"({type(exc).__name__}). Save it with save_pretrained on an online machine and pass the folder instead"
        ) from exc


def _hub_snapshot(repo_id: str) -> Path:
    """Kept for callers of the earlier name: :func:`hub_snapshot` without revision or variant."""
    return hub_snapshot(repo_id)


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
            f"feature map) of the {available / 2**30:,.1f} GiB of {device.type} memory"
        )


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
    except (NotImplementedError, ValueError) as exc:  # refusals that already name the key and value
        raise TargetLoadError(f"{path}: {exc}") from None
    except (TypeError, KeyError) as exc:
        values = {
            k: config[k] for k in ("beta_schedule", "num_train_timesteps", "beta_start", "beta_end") if k in config
        }
        raise TargetLoadError(
            f"{path}: the noise schedule cannot be built from {values} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


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
        raise TargetLoadError(
            f"target {spec!r} is neither an existing folder nor a Hub id: no folder "
            f"{path.resolve()} exists (a local path, so the Hugging Face Hub was not asked)"
        )
