"""The one interface every attack follows, and the batching engine they share.

An attack is a class with

* ``name`` (registry key), ``title``, ``paper``, and ``Params``: a frozen dataclass holding the
  published defaults, validated in ``__post_init__``;
* ``compute(target, x0, noise)``: the math on one batch of images, (B, C, H, W) in [-1, 1] on the
  target's device, returning ``{"score": (B,), "trace": (B, K), ...}`` as float32 tensors;
* ``unet_calls(trace)``: the UNet evaluations it spends per image, with or without its trace.

``Attack.run`` feeds the images through ``compute`` in batches, halves the batch on a CUDA
out-of-memory error and retries it (finished batches are kept), reports progress, and returns an
:class:`AttackResult`.

Attacks that learn (:class:`LearnedAttack`: SecMI-NN, quantile regression) also need labels or
public data. They have no ``run``; ``fit_score(target, x0, ids, is_member, seed=...)`` partitions
the ids into a part they train on and a disjoint part they score, and returns scores for the
evaluation part only (``AttackResult.train_ids`` records the other part). Scores follow one
convention: **higher = more member-like** (errors and distances are negated). Traces hold the
attack's raw per-timestep statistic (an error or a distance, so **lower = more member-like**),
which is what the error-curve plots draw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ..data.images import UnitRangeView
from ..noise import per_image_noise
from ..target import Target
from .conditioning import Conditioning, is_text_to_image

#: The default sweep over timesteps for per-timestep traces (0-based indices).
DEFAULT_SWEEP: tuple[int, ...] = tuple(range(0, 501, 50))

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class AttackResult:
    """Per-sample output of one attack on N images.

    Attributes
    ----------
    attack : str
        Registry name of the attack.
    ids : tuple of str, length N
    scores : (N,) float64, higher = member.
    trace_timesteps : (K,) int64, the 0-based timesteps of the trace (K = 0 when there is none).
    trace : (N, K) float64, the raw statistic at each timestep (lower = member).
    trace_label : str, what the trace holds (axis label).
    unet_calls_per_image : int
    seconds : float, wall-clock time of the run.
    params : dict, the attack's parameters as plain values.
    train_ids : tuple of str, the ids a learned attack was fitted on (labels or public data); never
        in ``ids``. Empty for attacks that learn nothing.
    evaluated_on : str, in plain words, which images the scores cover ("" = all images given).
    extras : dict of name -> (N, ...) array aligned with ``ids``: per-sample outputs worth showing
        (quantile regression's own threshold per image, its vote fraction; ``keep=`` outputs).
    info : dict of JSON-able metadata (training loss curve, part sizes, an exact operating point).
    """

    attack: str
    ids: tuple[str, ...]
    scores: np.ndarray
    trace_timesteps: np.ndarray
    trace: np.ndarray
    trace_label: str
    unet_calls_per_image: int
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    train_ids: tuple[str, ...] = ()
    evaluated_on: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def trace_scores(self) -> np.ndarray:
        """The trace in score convention (higher = member): (N, K)."""
        return -self.trace


#: Kinds of target (``Target.kind``) in plain words, for the reasons ``Attack.applies_to`` gives.
TARGET_KINDS: dict[str, str] = {
    "ddpm": "a DDPM (noise prediction eps_theta(x_t, t) on a discrete abar schedule)",
    "ve-sde": "a score-based VE-SDE / SMLD model (score s_theta(x, sigma) at continuous noise levels, "
    "no discrete abar schedule)",
    "t2i": "a text-to-image latent diffusion model (eps_theta(z_t, t, c) on VAE latents, c a text embedding)",
}


def target_kind(target: Any) -> str:
    """``target.kind`` (see :data:`TARGET_KINDS`); "ddpm" for objects without one (duck-typed test targets)."""
    return getattr(target, "kind", "ddpm")


class NotApplicable(ValueError):
    """An attack was run on a target its math is not defined for (the message says why)."""


#: Threat models, weakest access first: what the attacker may query (see ``Attack.access``).
ACCESS_LEVELS: dict[str, str] = {
    "black": "black box: generated or varied images only",
    "gray": "gray box: the model's noise predictions at chosen timesteps",
    "white": "white box: the weights and their gradients",
}


class Attack:
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    score_label: ClassVar[str] = ""
    trace_label: ClassVar[str] = ""
    Params: ClassVar[type] = object
    #: how many noise draws per image ``compute`` needs (0 = deterministic attack).
    noise_draws: ClassVar[int] = 0
    #: run without bf16 autocast: the statistic is a small difference of large quantities.
    needs_full_precision: ClassVar[bool] = False
    #: True for attacks that train on labelled / public data (:class:`LearnedAttack`).
    learns: ClassVar[bool] = False
    #: the attacker's access to the target (one of :data:`ACCESS_LEVELS`): "black" = generated
    #: or varied images only, "gray" = noise predictions at chosen timesteps, "white" = weights
    #: and gradients. Most diffusion-specific attacks are gray box.
    access: ClassVar[str] = "gray"
    #: extra resources beyond the target, in plain words (empty = none), e.g.
    #: ("labelled member / non-member data",) or ("shadow models",).
    needs: ClassVar[tuple[str, ...]] = ()
    #: the kinds of target (``Target.kind``, see :data:`TARGET_KINDS`) the attack's math is
    #: defined for. Most attacks need the DDPM / DDIM parameterisation (x_t, eps_theta, abar_t).
    target_kinds: ClassVar[tuple[str, ...]] = ("ddpm",)
    #: True for attacks that score images against samples the target generated (the GAN-era
    #: baselines): their ``run`` also takes ``sample_dirs``, the sample cache beside the result store.
    generates_samples: ClassVar[bool] = False
    #: True for attacks whose ``fit_score`` also takes ``shadows`` (GSA): models trained like the target
    #: on data disjoint from its members, made by ``mia_core.lab.shadow`` (the engine never trains them).
    uses_shadow_models: ClassVar[bool] = False

    def __init__(self, params: Any = None, *, conditioning: Any = None, **overrides: Any) -> None:
        if params is None:
            params = self.Params(**overrides)
        elif overrides:
            params = dataclasses.replace(params, **overrides)
        if not isinstance(params, self.Params):
            raise TypeError(f"{self.name} expects {self.Params.__name__}, got {type(params).__name__}")
        self.params = params
        #: the text conditioning of a run on a text-to-image target (None: not set; such a target then
        #: uses ``Conditioning()``, each image's own caption). Part of ``params_dict`` and the run key.
        self.conditioning: Conditioning | None = Conditioning.from_value(conditioning)

    def __repr__(self) -> str:
        cond = f", conditioning={self.conditioning}" if self.conditioning is not None else ""
        return f"{type(self).__name__}({self.params}{cond})"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every ``unet_calls`` counts forward passes: with classifier-free guidance on (a text-to-image run
        with ``guidance_scale != 1``) each UNet call is two passes, so the count doubles."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("unet_calls")
        if own is not None and not getattr(own, "_counts_guidance", False):

            @functools.wraps(own)
            def unet_calls(self: Attack, trace: bool = True) -> int:
                return own(self, trace) * self.guidance_factor

            unet_calls._counts_guidance = True  # type: ignore[attr-defined]
            cls.unet_calls = unet_calls  # type: ignore[method-assign]

    @property
    def guidance_factor(self) -> int:
        """Forward passes per UNet call: 2 when the conditioning sets classifier-free guidance, else 1."""
        return self.conditioning.cost_factor if self.conditioning is not None else 1

    def with_conditioning(self, conditioning: Any) -> Attack:
        """A copy of this attack (same parameters) with ``conditioning`` (a :class:`Conditioning`, a mode
        name, a mapping of its fields, or None)."""
        return type(self)(self.params, conditioning=conditioning)

    def conditioning_for(self, target: Any) -> Conditioning | None:
        """The conditioning a run on ``target`` uses: None for a target without text conditioning (and a
        ValueError when one was set for it), else the attack's own or the default (each image's caption)."""
        if not is_text_to_image(target):
            if self.conditioning is not None:
                raise ValueError(
                    f"{self.name}: a conditioning ({self.conditioning.label()}) was given, but "
                    f"{getattr(target, 'source', 'this target')} is not a text-to-image target"
                )
            return None
        return self.conditioning if self.conditioning is not None else Conditioning()

    def conditioned(self, target: Any, prompts: Sequence[str] | None, start: int, stop: int) -> Any:
        """Context for scoring images ``start:stop`` of a run: the target conditioned on their prompts
        (a text-to-image target), else nothing."""
        if prompts is None:
            return contextlib.nullcontext()
        cond = self.conditioning_for(target)
        return target.conditioned(prompts[start:stop], cond.guidance_scale)

    def run_prompts(self, target: Any, n: int, captions: Sequence[str] | None) -> list[str] | None:
        """The N prompts of a run on ``target`` (None for a target without text conditioning)."""
        cond = self.conditioning_for(target)
        return None if cond is None else cond.prompts(n, captions)

    def applies_to(self, target: Target) -> str | None:
        """None when the attack runs on ``target``; otherwise why not, in plain words (for the CLI,
        the app and metrics.json). Attacks with further conditions override this and call super()."""
        kind = target_kind(target)
        if kind in self.target_kinds:
            return None
        wants = " or ".join(TARGET_KINDS.get(k, k) for k in self.target_kinds)
        return f"needs {wants}; this target is {TARGET_KINDS.get(kind, kind)}"

    def check_applies(self, target: Target) -> None:
        """Raise :class:`NotApplicable` when :meth:`applies_to` gives a reason."""
        reason = self.applies_to(target)
        if reason:
            raise NotApplicable(f"{self.name} does not apply to {getattr(target, 'source', 'this target')}: {reason}")

    # -- to be provided by each attack ---------------------------------------------------------

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def unet_calls(self, trace: bool = True) -> int:
        raise NotImplementedError

    def trace_timesteps(self) -> tuple[int, ...]:
        return ()

    def setup_unet_calls(self) -> int:
        """UNet calls spent once per target and seed whatever the images (generated samples); 0 for most."""
        return 0

    def inputs_per_image(self) -> int:
        """UNet inputs per image in the largest single forward pass (sweeps stack their timesteps)."""
        return self.unet_calls(trace=True)

    def default_batch_size(self, target: Target) -> int:
        """Images per ``compute`` call when none is given: the largest power of two that keeps a
        forward pass within ``max_unet_batch(target)`` UNet inputs (sharded runs use the same batches)."""
        return floor_power_of_two(max_unet_batch(target) // max(1, self.inputs_per_image()))

    # -- shared machinery ------------------------------------------------------------------------

    def params_dict(self) -> dict[str, Any]:
        """The parameters as plain values; with a conditioning set, its fields under "conditioning"."""
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.params).items()}
        if self.conditioning is not None:
            out["conditioning"] = self.conditioning.as_dict()
        return out

    def run_params(self, target: Any) -> dict[str, Any]:
        """:meth:`params_dict` with the conditioning a run on ``target`` actually uses (the default one
        recorded when none was set)."""
        out = self.params_dict()
        cond = self.conditioning_for(target)
        if cond is not None:
            out["conditioning"] = cond.as_dict()
        return out

    def run(
        self,
        target: Target,
        x0: np.ndarray | torch.Tensor,
        *,
        ids: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
        keep: Sequence[str] = (),
        captions: Sequence[str] | None = None,
    ) -> AttackResult:
        """Score N images.

        Parameters
        ----------
        target : Target
        x0 : (N, C, H, W) float array in [-1, 1] at the target's resolution and channels, or a
            :class:`~mia_core.data.images.UnitRangeView` of uint8 images (``Experiment.x0``): its shape is
            checked first, then each batch is converted (and range-checked) only when it is scored, so
            memory holds one batch of float32 images, not N. The results are the same either way.
        ids : N stable ids; they seed each image's noise, so an image gets the same noise (and
            score) whatever batch or subset it is run in. Defaults to "0" .. "N-1".
        seed : int, the run's seed (mixed with each id).
        batch_size : images per ``compute`` call; default: the largest power of two that keeps a
            forward pass within ``max_unet_batch(target)`` UNet inputs. Halved and retried on CUDA
            out-of-memory.
        progress : called as ``progress(done, total)`` after each batch.
        keep : names of further outputs of ``compute`` (e.g. SecMI's "x_tilde", "x_recon") to
            return in ``result.extras`` as float32 arrays, copied to the CPU batch by batch.
        captions : N captions, one per image (a text-to-image target in conditioning mode "caption").
            Each batch of B images is scored inside ``target.conditioned(their B prompts)``: every
            forward pass of ``compute`` stacks whole blocks of the B images, so row r uses prompt r mod B.
        """
        self.check_applies(target)
        if isinstance(x0, UnitRangeView):
            check_image_shape(target, x0.shape)  # the pixels: batch by batch, as they are converted
        else:
            x0 = check_images(target, x0)
        n = x0.shape[0]
        ids = tuple(str(i) for i in range(n)) if ids is None else tuple(str(i) for i in ids)
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} ids for {n} images")
        prompts = self.run_prompts(target, n, captions)
        bs = batch_size or self.default_batch_size(target)
        start_time = time.perf_counter()
        # Outputs stay on the device until the end: no sync per batch, so the CPU prepares the
        # next batch (noise, copies) while the GPU still computes this one.
        chunks: list[dict[str, torch.Tensor]] = []
        start = 0
        if isinstance(x0, torch.Tensor) and x0.device.type == "cpu" and target.device.type == "cuda":
            x0 = x0.pin_memory()  # lets the host-to-device copy overlap with compute
        while start < n:
            stop = min(n, start + bs)
            xb = to_model_space(target, _batch_on_device(x0, start, stop, target.device))  # latents: encoded once
            noise = None
            if self.noise_draws:
                noise = per_image_noise(ids[start:stop], seed, self.noise_draws, model_shape(target), target.device)
            try:
                with target.full_precision() if self.needs_full_precision else contextlib.nullcontext():
                    with self.conditioned(target, prompts, start, stop):
                        out = self.compute(target, xb, noise)
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise
                bs = max(1, bs // 2)  # retry the same images with a smaller batch; nothing is lost
                torch.cuda.empty_cache()
                continue
            missing = sorted(set(keep) - set(out))
            if missing:
                raise ValueError(f"{self.name} has no output(s) {missing} to keep; it returns {sorted(out)}")
            chunk = {k: v.detach() for k, v in out.items() if k in ("score", "trace")}
            # Kept images are large: to the CPU now, so device memory holds one batch of them.
            chunk.update({f"keep:{k}": out[k].detach().to("cpu", torch.float32) for k in keep})
            chunks.append(chunk)
            start = stop
            if progress is not None:
                progress(start, n)
        scores = torch.cat([c["score"] for c in chunks]).to("cpu", torch.float64).numpy()
        timesteps = np.asarray(self.trace_timesteps(), dtype=np.int64)
        if "trace" in chunks[0]:
            trace = torch.cat([c["trace"] for c in chunks]).to("cpu", torch.float64).numpy()
        else:
            trace = np.zeros((n, 0))
        return AttackResult(
            attack=self.name,
            ids=ids,
            scores=scores,
            trace_timesteps=timesteps,
            trace=trace,
            trace_label=self.trace_label,
            unet_calls_per_image=self.unet_calls(trace=True),
            seconds=time.perf_counter() - start_time,
            params=self.run_params(target),
            extras={k: torch.cat([c[f"keep:{k}"] for c in chunks]).numpy() for k in keep},
            info=latent_cost_info(target),
        )


def _batch_on_device(x0: torch.Tensor | UnitRangeView, start: int, stop: int, device: torch.device) -> torch.Tensor:
    """Rows start..stop of ``x0`` as float32 on ``device``: a slice of a checked tensor, or a view's rows
    converted now and range-checked (through pinned memory to a GPU, so the copy overlaps with compute)."""
    if isinstance(x0, torch.Tensor):
        return x0[start:stop].to(device, non_blocking=True)
    batch = x0[start:stop]
    check_image_range(batch)  # on the numpy array: far quicker than torch's CPU min / max on a batch
    x = torch.from_numpy(batch)
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


@dataclass(frozen=True)
class LearnedInputs:
    """What every learned attack starts from (built once by :meth:`LearnedAttack.fit_score`).

    x0 : (N, C, H, W) float32 tensor in [-1, 1], checked against the target
    ids : N ids (str); labels : (N,) bool, True = member
    train_ids, eval_ids : the attack's partition (disjoint, input order)
    train_rows, eval_rows : their positions in ``ids``, (len,) int64
    seed, batch_size, progress : as passed to ``fit_score``
    started : ``time.perf_counter()`` when ``fit_score`` was called (the result's ``seconds`` count from it)
    """

    x0: torch.Tensor
    ids: tuple[str, ...]
    labels: np.ndarray
    train_ids: tuple[str, ...]
    eval_ids: tuple[str, ...]
    train_rows: np.ndarray
    eval_rows: np.ndarray
    seed: int
    batch_size: int | None
    progress: ProgressFn | None
    started: float
    #: N captions aligned with ``ids`` (a text-to-image target in conditioning mode "caption"), else None.
    captions: tuple[str, ...] | None = None
    #: the run's parameters as recorded (``Attack.run_params``: with the conditioning used).
    params: dict[str, Any] = field(default_factory=dict)

    def counts(self, rows: np.ndarray) -> tuple[int, int]:
        """(members, non-members) among ``rows``."""
        part = self.labels[rows]
        return int(part.sum()), int((~part).sum())


class LearnedAttack(Attack):
    """An attack that fits a model on part of the labelled (or public) data and scores the rest.

    Subclasses provide ``partition`` (which ids train, which are scored; disjoint, deterministic,
    independent of the input order) and ``fit_and_score(target, data)``, which gets the checked
    :class:`LearnedInputs` from :meth:`fit_score` and returns (usually through :meth:`learned_result`)
    an :class:`AttackResult` whose ``ids`` are the evaluation part only, with ``train_ids``,
    ``evaluated_on`` and ``info`` filled. Nothing is ever fitted, selected or calibrated on the
    evaluation part.
    """

    learns = True
    needs = ("labelled member / non-member data",)
    #: what labelled / public data the attack trains on, in plain words (shown in the app).
    training_data: ClassVar[str] = ""

    def run(self, target: Target, x0: np.ndarray | torch.Tensor, **kwargs: Any) -> AttackResult:
        raise TypeError(
            f"{self.name} learns from labelled data ({self.training_data}); it needs membership labels: "
            f"call fit_score(target, x0, ids, is_member, seed=...) or run_attacks(..., is_member=...)"
        )

    def partition(
        self, ids: Sequence[str], is_member: np.ndarray, seed: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(train_ids, eval_ids), disjoint, each in input order."""
        raise NotImplementedError

    def fit_score(
        self,
        target: Target,
        x0: np.ndarray | torch.Tensor,
        ids: Sequence[str],
        is_member: np.ndarray,
        *,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
        captions: Sequence[str] | None = None,
        **resources: Any,
    ) -> AttackResult:
        """Fit on the training part, score the evaluation part.

        x0 : (N, C, H, W) in [-1, 1] (a :class:`~mia_core.data.images.UnitRangeView` is converted whole here:
        a learned attack trains on, and scores, rows drawn from all of it); ids : N unique ids; is_member : (N,) bool.
        Checks the images, partitions the ids (:meth:`partition`) and hands that to :meth:`fit_and_score`,
        with any extra ``resources`` the attack declares (GSA's ``shadows``).
        """
        from .learned import index_of

        started = time.perf_counter()
        self.check_applies(target)
        x = check_images(target, x0)
        ids = tuple(str(i) for i in ids)
        labels = np.asarray(is_member, dtype=bool)
        self.run_prompts(target, len(ids), captions)  # a missing / misaligned caption fails here, before any work
        train_ids, eval_ids = self.partition(ids, labels, seed)
        data = LearnedInputs(
            x,
            ids,
            labels,
            train_ids,
            eval_ids,
            index_of(ids, train_ids),
            index_of(ids, eval_ids),
            seed,
            batch_size,
            progress,
            started,
            captions=None if captions is None else tuple(str(c) for c in captions),
            params=self.run_params(target),
        )
        return self.fit_and_score(target, data, **resources)

    def fit_and_score(self, target: Target, data: LearnedInputs, **resources: Any) -> AttackResult:
        """The attack itself, on the inputs :meth:`fit_score` prepared."""
        raise NotImplementedError

    def learned_result(
        self,
        data: LearnedInputs,
        scores: np.ndarray,
        *,
        evaluated_on: str,
        extras: Mapping[str, np.ndarray],
        info: Mapping[str, Any],
    ) -> AttackResult:
        """The AttackResult of a learned attack: scores (len(eval_ids),) of the evaluation part, no trace."""
        return AttackResult(
            attack=self.name,
            ids=data.eval_ids,
            scores=scores,
            trace_timesteps=np.zeros(0, dtype=np.int64),
            trace=np.zeros((len(data.eval_ids), 0)),
            trace_label=self.trace_label,
            unet_calls_per_image=self.unet_calls(),
            seconds=time.perf_counter() - data.started,
            params=data.params or self.params_dict(),
            train_ids=data.train_ids,
            evaluated_on=evaluated_on,
            extras=dict(extras),
            info=dict(info),
        )


# -- helpers used by several attacks --------------------------------------------------------------


def check_images(target: Target, x0: np.ndarray | torch.Tensor | UnitRangeView) -> torch.Tensor:
    """Validate a batch of images (pixels in [-1, 1], also for a latent target, which encodes them
    itself) and return it as a float32 CPU/GPU tensor. A :class:`UnitRangeView` is converted whole here
    (4 bytes per pixel): ``Attack.run`` reads one batch at a time instead (:func:`check_image_shape`)."""
    if isinstance(x0, UnitRangeView):
        check_image_shape(target, x0.shape)  # before converting anything
    x = as_float_tensor(x0)
    check_image_shape(target, tuple(x.shape))
    check_image_range(x)
    return x


def as_float_tensor(x0: np.ndarray | torch.Tensor | UnitRangeView) -> torch.Tensor:
    """Images as a float32 tensor: an array or tensor as ``torch.as_tensor`` makes it (no copy when it already
    is float32), a :class:`UnitRangeView` converted whole (``torch.as_tensor`` would read it row by row)."""
    return torch.as_tensor(np.asarray(x0) if isinstance(x0, UnitRangeView) else x0, dtype=torch.float32)


def check_image_shape(target: Target, shape: Sequence[int]) -> None:
    """``shape`` must be (N, C, H, W) with N >= 1 at the target's channels and resolution; ValueError naming it."""
    shape = tuple(int(d) for d in shape)
    expected = (target.channels, target.resolution, target.resolution)
    if len(shape) != 4 or shape[1:] != expected:
        raise ValueError(
            f"images must have shape (N, {expected[0]}, {expected[1]}, {expected[2]}) for this target, "
            f"got {shape}; convert them first (mia_core.data.convert_images)"
        )
    if shape[0] == 0:
        raise ValueError("no images to attack")


def check_image_range(x: torch.Tensor | np.ndarray) -> None:
    """Pixels must lie in [-1, 1] (0.001 of slack); ValueError naming the range found."""
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"images must be in [-1, 1], got values in [{lo:.3f}, {hi:.3f}] (uint8 / 127.5 - 1)")


def model_shape(target: Target) -> tuple[int, int, int]:
    """(C, H, W) of what the UNet denoises (``Target.model_shape``; the images' shape for a
    target-like object without one)."""
    shape = getattr(target, "model_shape", None)
    return tuple(shape) if shape is not None else (target.channels, target.resolution, target.resolution)


def to_model_space(target: Target, x: torch.Tensor) -> torch.Tensor:
    """Images -> what the UNet denoises: ``target.encode`` for a latent target, else the images."""
    return target.encode(x) if getattr(target, "latent", False) else x


def latent_cost_info(target: Target, decodes: int = 0) -> dict[str, Any]:
    """What a run on a latent target spends besides the UNet: {} for a pixel target, else the VAE
    passes per image (one encode; ``decodes`` decodes for display) and the VAE's parameter count."""
    if not getattr(target, "latent", False):
        return {}
    return {
        "vae_encodes_per_image": 1,
        "vae_decodes_per_image": int(decodes),
        "vae_parameters": target.n_vae_parameters,
        "space": f"latent {'x'.join(map(str, target.model_shape))} (images encoded by the VAE)",
    }


def floor_power_of_two(n: int) -> int:
    """The largest power of two <= n (1 for n < 2)."""
    return 1 << max(0, int(n).bit_length() - 1)


def max_unet_batch(target: Target) -> int:
    """UNet inputs per forward pass: 2^16 input pixels on a CPU (larger batches run slower there),
    2^24 on a GPU (4,096 CIFAR-sized images); a power of two, so compiled shapes need no padding."""
    pixels = math.prod(model_shape(target))
    budget = 2**24 if target.device.type == "cuda" else 2**16
    return floor_power_of_two(max(1, budget // pixels))


def sum_power(diff: torch.Tensor, p: float) -> torch.Tensor:
    """sum over C, H, W of |diff|^p in float32: (B, C, H, W) -> (B,). No root, as in the official codes."""
    diff = diff.float()
    if p == 2:
        return diff.square().flatten(1).sum(1)
    return diff.abs().pow(p).flatten(1).sum(1)


def stack_timesteps(x: torch.Tensor, timesteps: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat a batch (B, ...) once per timestep: (K*B, ...) and the matching (K*B,) timestep tensor.

    Row k*B + i holds image i at timesteps[k], so a whole sweep over t is one forward pass.
    """
    k, b = len(timesteps), x.shape[0]
    t = torch.as_tensor(timesteps, dtype=torch.long, device=x.device).repeat_interleave(b)
    return x.repeat(k, *([1] * (x.ndim - 1))), t


def sweep_with(score_t: int, sweep: Sequence[int]) -> tuple[int, ...]:
    """The sorted union of the sweep and the score's own timestep (it is then read off the sweep)."""
    return tuple(sorted(set(int(s) for s in sweep) | {int(score_t)}))


def validate_timestep(name: str, value: int, upper: int = 10_000) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= upper:
        raise ValueError(f"{name} must be an integer timestep >= 0, got {value!r}")


def validate_power(p: float) -> None:
    if not (isinstance(p, (int, float)) and math.isfinite(p) and p > 0):
        raise ValueError(f"p must be a positive number, got {p!r}")


def params_from_mapping(cls: type, values: Mapping[str, Any]) -> Any:
    """Build a Params dataclass from plain values (lists become tuples), rejecting unknown names."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {cls.__name__}; known: {sorted(names)}")
    return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
