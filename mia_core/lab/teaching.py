"""What the Learn page computes: forward noising, one-step denoising, member vs non-member errors.

Everything here runs the model (no Streamlit, no figures: those are in :mod:`mia_core.views.learn`),
on tiny batches, with fixed seeded noise so a view does not flicker when it reruns.

Notation (as in :mod:`mia_core.schedule`, 0-based timesteps):

    x0        an image in [-1, 1], (N, C, H, W)
    eps       Gaussian noise, (C, H, W) shared by every image, or (N, C, H, W)
    x_t       sqrt(abar_t) x0 + sqrt(1 - abar_t) eps                          (DDPM eq. 4)
    eps_pred  eps_theta(x_t, t), the UNet's guess of the noise
    x0_hat    (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t)                 (DDIM eq. 9)

Errors are *means* over pixels (per image), so their size does not depend on the resolution:

    eps error  mean (eps_pred - eps)^2          (the DDPM training loss, averaged not summed)
    x0 error   mean (x0_hat - x0)^2 = (1 - abar_t) / abar_t * eps error

At one t the two rank images identically; the x0 error is the "reconstruction" a person can see.

A score-based VE-SDE target (:mod:`mia_core.score_sde`) has no abar: the forward process adds noise
of standard deviation sigma(t) to the data x = (x0 + 1) / 2 in [0, 1], and the model's guess of the
noise comes from its score (Tweedie, ``ScoreTarget.denoise``):

    x_t       x + sigma z                                   z ~ N(0, I), sigma = sigma(t_i) of step i
    eps_pred  z_pred = -sigma s_theta(x_t, sigma)
    x0_hat    x_t - sigma z_pred = x_t + sigma^2 s_theta(x_t, sigma)
    eps error mean (z_pred - z)^2 = mean (sigma s_theta + z)^2    the DSM error (training loss, loss attack)
    x0 error  mean (x0_hat - x0)^2 = 4 sigma^2 * eps error         (in [-1, 1] image units)

Every function below returns x_t and x0_hat as images in [-1, 1] (2 x - 1), so the pages draw both
kinds of target the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mia_core.schedule import NoiseSchedule, predict_x0, q_sample
from mia_core.target import Target

if TYPE_CHECKING:  # pragma: no cover
    from mia_core.lab.experiment import Experiment

#: The cheap per-t sweep of the Learn page (10 timesteps, 0-based).
LEARN_SWEEP: tuple[int, ...] = (10, 50, 100, 200, 300, 400, 500, 600, 700, 850)
#: UNet inputs per forward pass when sweeping (kept modest for CPUs).
_MAX_BATCH_PIXELS = 2**16


# -- noise and the forward process ----------------------------------------------------------


def fixed_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Standard Gaussian noise of ``shape`` (CPU, float32) from ``torch.Generator().manual_seed(seed)``.

    The same (shape, seed) always gives the same tensor, whatever else ran before.
    """
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(tuple(int(s) for s in shape), generator=gen, dtype=torch.float32)


def is_score_sde(target: Any) -> bool:
    """True for a score-based VE-SDE target (``target.kind == "ve-sde"``)."""
    return getattr(target, "kind", "ddpm") == "ve-sde"


def ve_noise_level(schedule: Any, t: int) -> tuple[float, float]:
    """``(t_i, sigma(t_i))`` of integer step ``t`` on a VE-SDE schedule: its continuous time and noise level."""
    schedule.check_timesteps(int(t))
    return float(schedule.time_of_step(int(t))), float(schedule.sigma_of_step(int(t)))


def ve_sigma_table(schedule: Any, points: int = 250) -> tuple[np.ndarray, np.ndarray]:
    """About ``points`` integer steps of a VE-SDE schedule (int64) and their sigma(t_i) (float64), for a chart."""
    steps = np.arange(0, schedule.num_timesteps, max(1, schedule.num_timesteps // points), dtype=np.int64)
    return steps, schedule.sigma_of_step(torch.as_tensor(steps)).numpy()


def signal_noise_weights(schedule: NoiseSchedule, t: int) -> tuple[float, float, float]:
    """``(abar_t, sqrt(abar_t), sqrt(1 - abar_t))``: how much image and how much noise x_t holds."""
    schedule.check_timesteps(int(t))
    abar = float(schedule.alphas_cumprod[int(t)])
    return abar, abar**0.5, (1.0 - abar) ** 0.5


def noised(x0: torch.Tensor, t: int, noise: torch.Tensor, schedule: NoiseSchedule) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (``q_sample``).

    Parameters
    ----------
    x0 : (N, C, H, W) or (C, H, W) float tensor in [-1, 1].
    t : int, 0-based timestep.
    noise : tensor broadcastable to ``x0`` ((C, H, W) shares one noise image across the batch).

    Returns
    -------
    Tensor of ``x0``'s shape, float32.
    """
    x0 = torch.as_tensor(x0, dtype=torch.float32)
    noise = torch.as_tensor(noise, dtype=torch.float32).to(x0.device)
    return q_sample(schedule, x0, int(t), noise.expand_as(x0))


def noise_shape(target: Target, image_shape: Sequence[int]) -> tuple[int, ...]:
    """The noise shape for images of ``image_shape`` ((C, H, W) or (N, C, H, W)): the latent's for a
    latent target (the diffusion runs there), else the images' own."""
    shape = tuple(int(v) for v in image_shape)
    return shape[:-3] + tuple(target.model_shape) if target.latent else shape


def one_step_denoise(
    target: Target, x0: torch.Tensor, t: int, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise ``x0`` to step ``t`` and let the model undo it in one step.

    Parameters
    ----------
    target : Target
    x0 : (N, C, H, W) float tensor in [-1, 1] at the target's resolution and channels
        ((C, H, W) is accepted and gives (C, H, W) outputs).
    t : int, 0-based timestep.
    noise : tensor broadcastable to ``x0``, or to its latent for a latent target (:func:`noise_shape`).
        A latent target works on ``target.encode(x0)`` and returns x_t and x0_hat decoded to images,
        eps_pred as a latent.

    Returns
    -------
    x_t : the noised image, x0's shape, float32 on the CPU.
    eps_pred : eps_theta(x_t, t), same shape.
    x0_hat : the one-step reconstruction (x_t - sqrt(1 - abar_t) eps_pred) / sqrt(abar_t), same shape.
    """
    x0 = torch.as_tensor(x0, dtype=torch.float32).cpu()
    single = x0.ndim == 3
    if single:
        x0 = x0.unsqueeze(0)
    if is_score_sde(target):  # x_t = x + sigma z in data space; shown in [-1, 1] (module doc)
        noise = torch.as_tensor(noise, dtype=torch.float32).cpu().expand_as(x0)
        sigma = torch.full((x0.shape[0],), float(target.schedule.sigma_of_step(int(t))))
        data_t = target.to_data(x0) + sigma.view(-1, 1, 1, 1) * noise
        eps_pred, data_hat = (v.cpu() for v in target.denoise(data_t, sigma))
        x_t, x0_hat = target.from_data(data_t), target.from_data(data_hat)
    elif target.latent:  # noise and denoise the latent; show the decoded images (eps_pred stays a latent)
        z0 = target.encode(x0).cpu()
        noise = torch.as_tensor(noise, dtype=torch.float32).cpu().expand_as(z0)
        z_t = noised(z0, t, noise, target.schedule)
        eps_pred = target.eps(z_t, int(t)).cpu()
        z0_hat = predict_x0(target.schedule, z_t, int(t), eps_pred)
        x_t, x0_hat = target.decode(z_t).cpu(), target.decode(z0_hat).cpu()
    else:
        noise = torch.as_tensor(noise, dtype=torch.float32).cpu().expand_as(x0)
        x_t = noised(x0, t, noise, target.schedule)
        eps_pred = target.eps(x_t, int(t)).cpu()
        x0_hat = predict_x0(target.schedule, x_t, int(t), eps_pred)
    if single:
        return x_t[0], eps_pred[0], x0_hat[0]
    return x_t, eps_pred, x0_hat


@dataclass(frozen=True)
class ErrorCurve:
    """Per-image, per-timestep reconstruction errors (means over pixels, averaged over noise draws).

    Attributes
    ----------
    timesteps : (K,) int64
    x0_error : (N, K) float64, mean (x0_hat - x0)^2
    eps_error : (N, K) float64, mean (eps_pred - eps)^2
    draws : int, noise draws averaged
    """

    timesteps: np.ndarray
    x0_error: np.ndarray
    eps_error: np.ndarray
    draws: int


def reconstruction_error_curve(
    target: Target,
    x0: torch.Tensor | np.ndarray,
    timesteps: Sequence[int] = LEARN_SWEEP,
    seed: int = 0,
    *,
    draws: int = 1,
) -> ErrorCurve:
    """Errors of the one-step reconstruction at each timestep, for each image.

    Draw ``d`` uses the noise ``fixed_noise((C, H, W), seed + d)`` for every image and every t,
    so images are compared on exactly the same noise (draw 0 is the Learn page's noise).
    All N * K * draws UNet inputs go through the model in a few stacked forward passes.

    Parameters
    ----------
    x0 : (N, C, H, W) float in [-1, 1].
    timesteps : K 0-based timesteps.
    draws : noise draws averaged per (image, t), >= 1.
    """
    x0 = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0, dtype=torch.float32).cpu()
    if x0.ndim != 4:
        raise ValueError(f"x0 must be (N, C, H, W), got shape {tuple(x0.shape)}")
    if target.latent:  # errors of the latent (what the UNet denoises), not of decoded images
        x0 = target.encode(x0).cpu()
    ts = [int(t) for t in timesteps]
    if not ts:
        raise ValueError("need at least one timestep")
    target.schedule.check_timesteps(torch.as_tensor(ts))
    if int(draws) < 1:
        raise ValueError(f"draws must be >= 1, got {draws!r}")
    n, k = x0.shape[0], len(ts)
    noises = torch.stack([fixed_noise(x0.shape[1:], seed + d) for d in range(int(draws))])  # (D, C, H, W)
    # Stack (draw, t, image) in that order: row = (d * K + j) * N + i.
    x0_all = x0.repeat(draws * k, 1, 1, 1)
    t_all = torch.as_tensor(ts, dtype=torch.long).repeat_interleave(n).repeat(draws)
    eps_all = noises.repeat_interleave(k * n, dim=0)
    per_call = max(1, _MAX_BATCH_PIXELS // int(np.prod(x0.shape[1:])))
    if is_score_sde(target):  # the DSM error at sigma(t_i) and Tweedie's x0_hat (module doc), in [-1, 1]
        sigma = target.schedule.sigma_of_step(t_all).to(torch.float32)
        data_t = target.to_data(x0_all) + sigma.view(-1, 1, 1, 1) * eps_all
        parts = [
            target.denoise(data_t[i : i + per_call], sigma[i : i + per_call])
            for i in range(0, data_t.shape[0], per_call)
        ]
        eps_pred = torch.cat([z.cpu() for z, _ in parts])
        x0_hat = target.from_data(torch.cat([x.cpu() for _, x in parts]))
    else:
        x_t = q_sample(target.schedule, x0_all, t_all, eps_all)
        eps_pred = torch.cat(
            [target.eps(x_t[i : i + per_call], t_all[i : i + per_call]).cpu() for i in range(0, x_t.shape[0], per_call)]
        )
        x0_hat = predict_x0(target.schedule, x_t, t_all, eps_pred)
    eps_err = (eps_pred - eps_all).double().pow(2).flatten(1).mean(1).view(draws, k, n).mean(0)
    x0_err = (x0_hat - x0_all).double().pow(2).flatten(1).mean(1).view(draws, k, n).mean(0)
    return ErrorCurve(np.asarray(ts, dtype=np.int64), x0_err.T.numpy(), eps_err.T.numpy(), int(draws))


# -- text-to-image: what the caption does ---------------------------------------------------

#: the three prompts of :func:`caption_error_curves`, in the order they are drawn.
CAPTION_CURVES = ("own caption", "empty prompt", "wrong caption")


def wrong_caption(caption: str, captions: Sequence[str], seed: int = 0) -> str:
    """A caption of the data set that is not ``caption`` (the seeded choice among the distinct others);
    ValueError when every caption is the same."""
    others = sorted({str(c) for c in captions} - {str(caption)})
    if not others:
        raise ValueError("every image has the same caption: there is no wrong caption to compare with")
    return others[int(np.random.default_rng(seed).integers(len(others)))]


def caption_error_curves(
    target: Target,
    x0: torch.Tensor | np.ndarray,
    caption: str,
    wrong: str,
    timesteps: Sequence[int] = LEARN_SWEEP,
    seed: int = 0,
    *,
    draws: int = 1,
) -> dict[str, ErrorCurve]:
    """The same image(s)' reconstruction error curves on a text-to-image target, conditioned on the image's
    own caption, on the empty prompt and on a wrong caption (keys :data:`CAPTION_CURVES`); the same noise
    for all three (:func:`reconstruction_error_curve`, errors of the latents). A training image's own
    caption lowers its error most: the gap to the empty prompt is what CLiD measures.

    x0 : (N, C, H, W) in [-1, 1]; every image is conditioned on the same prompt in each curve (N = 1: one image).
    """
    if getattr(target, "kind", "") != "t2i":
        raise ValueError(f"{target.source} is not a text-to-image target: it takes no caption")
    out = {}
    for label, prompt in zip(CAPTION_CURVES, (caption, "", wrong)):
        with target.conditioned([prompt]):
            out[label] = reconstruction_error_curve(target, x0, timesteps, seed, draws=draws)
    return out


# -- SecMI's round trip for one image ------------------------------------------------------


def secmi_round_trip(target: Target, x0, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """SecMI's inverted and re-denoised images for one image, recomputed (11 UNet calls by default).

    Parameters
    ----------
    target : Target.
    x0 : (C, H, W) or (1, C, H, W) float in [-1, 1] at the target's size.
    params : SecMI parameters (``t_sec``, ``k``; others are ignored); the published defaults when
        None. The trace is switched off: only the score's round trip is computed.

    Returns
    -------
    dict with (C, H, W) float32 CPU tensors ``x0``, ``x_tilde`` (x~ at t_sec - k, the deterministic
    DDIM inversion) and ``x_recon`` (x'' after one step up and one step down), and the numbers
    ``t_error`` (the sum of squares |x~ - x''|^2 = -score) and ``t`` (t_sec - k). The Sample
    explorer draws it with :func:`mia_core.views.results.secmi_panels`.
    """
    from mia_core.attacks import get_attack

    p = {k: v for k, v in dict(params or {}).items() if k in ("t_sec", "k")}
    p["trace"] = False
    attack = get_attack("secmi", p)
    x = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    with torch.inference_mode():
        out = attack.compute(target, target.encode(x.to(target.device)))
        # a latent target's states are latents: decoded for display (t_error stays the latent one)
        x_tilde, x_recon = target.decode(out["x_tilde"][:1])[0], target.decode(out["x_recon"][:1])[0]
    return {
        "x0": x[0].cpu(),
        "x_tilde": x_tilde.float().cpu(),
        "x_recon": x_recon.float().cpu(),
        "t_error": float(-out["score"][0]),
        "t": int(attack.params.t_sec - attack.params.k),
    }


# -- the experiment's images --------------------------------------------------------------


def images_x0(exp: Experiment, indices: Sequence[int]) -> torch.Tensor:
    """The experiment's images at ``indices`` as (len, C, H, W) float32 in [-1, 1] (only those converted)."""
    idx = np.asarray(list(indices), dtype=np.int64)
    pixels = exp.images.images[idx].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))


def index_of(exp: Experiment, image_id: str) -> int:
    """Position of ``image_id`` in ``exp.ids``; ValueError naming the id when absent."""
    try:
        return exp.ids.index(image_id)
    except ValueError:
        raise ValueError(f"image {image_id!r} is not in this experiment's split") from None


def member_vs_nonmember(
    exp: Experiment, member_id: str | None = None, nonmember_id: str | None = None
) -> tuple[int, int]:
    """Indices (into ``exp.ids``) of a member and a non-member to compare.

    Defaults: the first member and the first non-member of the split. Given ids are checked to
    be in the split and on the right side of it (ValueError otherwise).
    """
    members = np.flatnonzero(exp.is_member)
    nonmembers = np.flatnonzero(~exp.is_member)
    if not len(members) or not len(nonmembers):
        raise ValueError("the split needs at least one member and one non-member")
    m = int(members[0]) if member_id is None else index_of(exp, member_id)
    nm = int(nonmembers[0]) if nonmember_id is None else index_of(exp, nonmember_id)
    if not exp.is_member[m]:
        raise ValueError(f"{exp.ids[m]!r} is a non-member, not a member")
    if exp.is_member[nm]:
        raise ValueError(f"{exp.ids[nm]!r} is a member, not a non-member")
    return m, nm


def random_index(exp: Experiment, member: bool, rng: np.random.Generator) -> int:
    """A uniformly drawn member (``member=True``) or non-member index."""
    pool = np.flatnonzero(exp.is_member == bool(member))
    return int(rng.choice(pool))


def population_indices(exp: Experiment, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``n`` member and ``n`` non-member indices drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    members = np.flatnonzero(exp.is_member)
    nonmembers = np.flatnonzero(~exp.is_member)
    pick_m = rng.choice(members, size=min(n, len(members)), replace=False)
    pick_n = rng.choice(nonmembers, size=min(n, len(nonmembers)), replace=False)
    return np.sort(pick_m), np.sort(pick_n)


# -- the default target's training log -------------------------------------------------------
