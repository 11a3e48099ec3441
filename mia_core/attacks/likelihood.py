"""Likelihood attacks (Hu & Pang, "Membership Inference of Diffusion Models", arXiv 2301.09956):
a member is more likely under the model, so its bits/dim are lower. Score = -bpd.

Two estimates of -log p_theta(x0), in bits per dimension:

* ``likelihood``: the exact log-likelihood of the probability-flow ODE (Song et al. 2021, appendix D.2;
  the official attack code ``HailongHuPri/MIDM: likelihood.py`` comes from score_sde_pytorch);
* ``elbo``: the discrete-time variational bound of the DDPM itself (Ho et al. 2020, eq. 5), as
  improved DDPM's ``calc_bpd_loop`` computes it.

Notation (code -> paper; 0-based timesteps t = 0 .. T-1 as everywhere in mia_core):

    abar[t]        abar_t = prod_{s<=t} (1 - beta_s);   alpha_t = 1 - beta_t
    u              continuous time: log abar(u) is a cubic spline through the knots
                   (u = -1, abar = 1: clean data) and (u = t, abar_t), t = 0 .. T-1
    beta(u)        -d log abar / du  (smooth; ~ -log(1 - beta_t) near u = t)
    sigma(u)       sqrt(1 - abar(u))
    f(x, u)        dx/du = -1/2 beta(u) [x - eps_theta(x, u) / sigma(u)]   (VP probability-flow ODE,
                   score_theta = -eps_theta / sigma); the UNet sees max(u, 0), and below u = 0 its
                   score is held at the t = 0 score (:func:`target_eps_fn`)
    div f          -1/2 beta(u) [D - tr(d eps_theta / dx) / sigma(u)];  tr(J) ~ v^T J v with
                   Rademacher probes v (Hutchinson), v^T J from one vector-Jacobian product
    log p(x0)      log N(x(T-1); 0, I) + int_{u0}^{T-1} div f du,  x(u0) = x0, u0 = -0.99
    bpd            -log p(x0) / (D ln 2) + 7   (score_sde's offset 7 - inverse_scaler(-1): data in
                   [-1, 1] made of 256 levels; 7 = log2(256 / 2), bins of width 2/256)

    ELBO (Ho et al. eq. 5, 0-based):  L = L_prior + sum_{t=1}^{T-1} L_t + L_dec
    L_prior        KL(q(x_{T-1} | x0) || N(0, I))                                   (closed form)
    L_t            KL(q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t)), x_t = q_sample(x0, t, eps)
                   q: mean mu~_t(x_t, x0), variance beta~_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)
                   p: mean mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
                      (Ho eq. 11; no clipping of x0_hat, which improved DDPM's calc_bpd_loop does),
                      variance sigma_t^2 = beta_t at every t ("fixed_large", what our scheduler
                      configs say; improved DDPM's fixed_large uses beta~_1 at t = 0 instead)
                   L_t = 1/2 sum_dims [log(beta_t / beta~_t) + beta~_t / beta_t - 1]
                         + beta_t / (2 alpha_t (1 - abar_t)) ||eps - eps_theta(x_t, t)||^2   (Ho eq. 12)
                   The reverse variance is read from the scheduler's ``variance_type``: with
                   "fixed_small" (diffusers' DDPM default) sigma_t^2 = beta~_t, so the log term is 0
                   and the weight is beta_t^2 / (2 beta~_t alpha_t (1 - abar_t)); the decoder then
                   uses beta~_1 (Ho et al.'s clipped log-variance). "learned"/"learned_range" and a
                   zero-terminal-SNR schedule (alpha_{T-1} = 0) are refused by name.
    L_dec          -log p_theta(x0 | x_0): Gaussian N(mu_theta(x_0, 0), beta_0) integrated over the
                   256 bins of width 2/255 around x0, edge bins open (Ho et al. section 3.3;
                   improved DDPM's discretized_gaussian_log_likelihood, with exact normal CDFs)
    bpd            L / (D ln 2): already the discrete bits/dim of 8-bit data, no offset (the ODE's
                   bins are 2/256 wide, these 2/255: a difference of log2(256/255) = 0.0056 bpd)

Solving the ODE: each image has its own adaptive RK45 solve (scipy's algorithm, rtol = atol = 1e-5
as in MIDM, which solves one image at a time), run in lockstep so that all unfinished images share
each UNet call (:func:`solve_rk45_rows`). On the default target that takes ~400 evaluations per image
(most of them at large u, where the UNet's float-timestep embedding varies fastest) and the bits/dim
are within 3e-3 of a converged solve; rtol = atol = 1e-3 takes 74 evaluations, within 0.012.

Sampling of the sum over t (param ``n_timesteps`` = K, default 100): t = 1 .. T-1 is cut into K
strata whose bounds follow T^(k/K) (:func:`strata_bounds`); each image evaluates one uniformly
drawn t per stratum, weighted by the stratum's size, so every t counts with its true weight in
expectation (unbiased), and K >= T-1 is the exact sum (one noise draw per term). With K = 100 the
first 59 strata are single timesteps, where the terms are largest: on the default target they
fall like ~1/t (0.40 bits/dim at t = 1, 0.045 at t = 10, 0.005 at t = 50) and t <= 60 holds 82 %
of the KL mass. Equal strides (t in [1, 10] drawn once and weighted x10) made the estimate so
noisy that the AUC fell from 0.98 (exact) to 0.80 on 50 + 50 default images. The draws come from
the image's seeded noise, so they do not depend on the batch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..schedule import NoiseSchedule
from ..target import Target
from .base import Attack, AttackResult, max_unet_batch, target_kind

#: eps_fn(x, u): eps_theta at continuous times u ((B,) float32), differentiable in x (B, C, H, W).
ContinuousEpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: eps_fn(x_t, t): eps_theta at integer timesteps t ((B,) long), (B, C, H, W) float32.
DiscreteEpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: score_sde's bits/dim offset for data in [-1, 1] from 256 levels: 7 - inverse_scaler(-1) = 7.
BPD_OFFSET = 7.0
#: Half the width of one of the 256 decoder bins on [-1, 1] (improved DDPM: 1 / 255).
HALF_BIN = 1.0 / 255.0
#: Mean ODE evaluations (NFE) per image at rtol = atol = key, measured on the embedded default
#: target; only a cost estimate (interpolated in log tolerance, constant outside).
TYPICAL_NFE: dict[float, int] = {1e-3: 74, 1e-4: 127, 1e-5: 397, 1e-6: 970, 1e-7: 1879}


# -- continuous time for a discrete schedule ------------------------------------------------------


class ContinuousTime:
    """abar(u) and beta(u) on u in [-1, T-1] for a discrete schedule (see the module notation).

    log abar(u) is a natural cubic spline through the knots (u = -1, 0) and (u = t, log abar_t):
    it equals the discrete schedule at the integer timesteps the UNet was trained on, and
    beta(u) = -d log abar / du is smooth. (Linear pieces between the knots make beta a staircase:
    RK45's error control then misses the jumps, and on a Gaussian with the exact eps the ODE
    took 5x the evaluations and its error stayed ~7e-4 whatever the tolerance; with the spline the
    error follows the tolerance.) Where a spline would make abar increase somewhere (beta < 0),
    the monotone PCHIP interpolant is used instead.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        from scipy.interpolate import CubicSpline, PchipInterpolator

        self.num_timesteps = schedule.num_timesteps
        knots = np.arange(-1.0, self.num_timesteps)  # u = -1, 0, .., T-1
        log_abar = np.concatenate([[0.0], np.log(schedule.alphas_cumprod.numpy())])
        self.interpolant = "cubic spline"
        self._log_abar = CubicSpline(knots, log_abar, bc_type="natural")
        fine = np.linspace(-1.0, self.num_timesteps - 1.0, 8 * self.num_timesteps + 1)
        if not bool((self._log_abar.derivative()(fine) <= 0).all()):
            self.interpolant = "PCHIP"
            self._log_abar = PchipInterpolator(knots, log_abar)
        self._slope = self._log_abar.derivative()

    def log_abar_at(self, u: np.ndarray) -> np.ndarray:
        """log abar(u), float64, the shape of u."""
        return self._log_abar(self._check(u))

    def beta_at(self, u: np.ndarray) -> np.ndarray:
        """beta(u) = -d log abar / du, float64, the shape of u."""
        return -self._slope(self._check(u))

    def one_minus_abar_at(self, u: np.ndarray) -> np.ndarray:
        """1 - abar(u) = sigma(u)^2 without cancellation near u = -1."""
        return -np.expm1(self.log_abar_at(u))

    def _check(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if u.size and (u.min() < -1.0 or u.max() > self.num_timesteps - 1):
            raise ValueError(f"continuous time u must lie in [-1, {self.num_timesteps - 1}], got {u.min()}..{u.max()}")
        return u


# -- scipy's RK45, one adaptive solve per row -------------------------------------------------------

#: scipy.integrate's step-size control constants (scipy/integrate/_ivp/rk.py).
_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.0

#: fun(rows, t, y): the right-hand side for the rows ``rows`` ((M,) int) at their own times t
#: ((M,) float64) and states y ((M, n) float64); returns (M, n) float64.
RowsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _rms(x: np.ndarray) -> np.ndarray:
    """scipy's error norm, row by row: (M, n) -> (M,)."""
    return np.sqrt(np.mean(np.square(x), axis=1))


def solve_rk45_rows(
    fun: RowsFn, t0: float, t1: float, y0: np.ndarray, *, rtol: float, atol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate B independent ODEs dy/dt = fun(t, y) from t0 to t1, each with its own adaptive steps.

    This is ``scipy.integrate.solve_ivp(method="RK45")`` applied to each row alone (the same
    Dormand-Prince tableau, initial step selection, RMS error norm and step-size control), run in
    lockstep so that every stage is one call of ``fun`` on all unfinished rows: a row's result and
    evaluation count do not depend on which other rows share the batch. (One solve over the
    flattened batch, as score_sde does, shares the step sizes between images: on the default
    target an image's bits/dim then moved by up to 3e-3 with the batch it was run in.)

    y0 : (B, n) float64. Returns y(t1) (B, n) and the number of evaluations of each row (B,).
    """
    from scipy.integrate import RK45

    if not t1 > t0:
        raise ValueError(f"the ODE must run forward: t0={t0} >= t1={t1}")
    a, b, c, e = RK45.A, RK45.B, RK45.C, RK45.E
    n_stages, exponent = RK45.n_stages, -1.0 / (RK45.error_estimator_order + 1)
    y = np.array(y0, dtype=np.float64)
    n_rows = y.shape[0]
    every = np.arange(n_rows)
    t = np.full(n_rows, float(t0))
    f = fun(every, t, y)
    # 1. Initial step (scipy's select_initial_step; Hairer, Norsett & Wanner II.4), per row.
    scale = atol + np.abs(y) * rtol
    d0, d1 = _rms(y / scale), _rms(f / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = np.minimum(np.where(small, 1e-6, 0.01 * d0 / np.where(small, 1.0, d1)), t1 - t0)
    d2 = _rms((fun(every, t + h0, y + h0[:, None] * f) - f) / scale) / h0
    flat = (d1 <= 1e-15) & (d2 <= 1e-15)
    h1 = np.where(flat, np.maximum(1e-6, h0 * 1e-3), (0.01 / np.where(flat, 1.0, np.maximum(d1, d2))) ** -exponent)
    h_abs = np.minimum.reduce([100 * h0, h1, np.full(n_rows, t1 - t0)])
    nfev = np.full(n_rows, 2, dtype=np.int64)
    # 2. Steps: every unfinished row attempts one step per round; a rejected row retries smaller.
    active, retrying = np.ones(n_rows, dtype=bool), np.zeros(n_rows, dtype=bool)
    while active.any():
        rows = np.flatnonzero(active)
        tr, yr, retry = t[rows], y[rows], retrying[rows]
        min_step = 10 * np.abs(np.nextafter(tr, np.inf) - tr)
        if np.any(retry & (h_abs[rows] < min_step)):
            bad = rows[retry & (h_abs[rows] < min_step)][0]
            raise RuntimeError(f"the ODE step size fell below the float64 spacing at t={t[bad]:g} (row {bad})")
        t_new = np.minimum(tr + np.where(retry, h_abs[rows], np.maximum(h_abs[rows], min_step)), t1)
        h = (t_new - tr)[:, None]
        k = np.empty((n_stages + 1, len(rows), y.shape[1]))
        k[0] = f[rows]
        for s in range(1, n_stages):
            k[s] = fun(rows, tr + c[s] * h[:, 0], yr + np.tensordot(a[s, :s], k[:s], axes=1) * h)
        y_new = yr + h * np.tensordot(b, k[:-1], axes=1)
        k[-1] = fun(rows, t_new, y_new)
        nfev[rows] += n_stages
        scale = atol + np.maximum(np.abs(yr), np.abs(y_new)) * rtol
        error = _rms(np.tensordot(e, k, axes=1) * h / scale)
        if not np.isfinite(error).all():
            bad = rows[~np.isfinite(error)][0]
            raise RuntimeError(f"the ODE right-hand side is not finite near t={t[bad]:g} (row {bad})")
        accepted = error < 1
        with np.errstate(divide="ignore"):
            factor = _SAFETY * error**exponent  # inf where error == 0
        grow = np.minimum(_MAX_FACTOR, factor)
        grow = np.where(retry, np.minimum(1.0, grow), grow)  # no growth right after a rejection
        h_abs[rows] = h[:, 0] * np.where(accepted, grow, np.maximum(_MIN_FACTOR, factor))
        done = rows[accepted]
        t[done], y[done], f[done] = t_new[accepted], y_new[accepted], k[-1][accepted]
        retrying[rows] = ~accepted
        active[done[t[done] >= t1]] = False
    return y, nfev


# -- the probability-flow ODE likelihood -----------------------------------------------------------


def rademacher(noise: torch.Tensor) -> torch.Tensor:
    """Rademacher probes (+1 / -1, float32) from Gaussian noise: the sign of each element."""
    return torch.where(noise >= 0, 1.0, -1.0).to(torch.float32)


def probability_flow_bpd(
    eps_fn: ContinuousEpsFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    probes: torch.Tensor,
    *,
    u0: float = -0.99,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[torch.Tensor, np.ndarray]:
    """Bits/dim of x0 under the probability-flow ODE; each image has its own adaptive solve.

    Parameters
    ----------
    eps_fn : eps_theta(x, u) at continuous times, one u per image, differentiable in x
        (see ``ContinuousEpsFn``).
    schedule : the discrete schedule; u runs from ``u0`` to T-1.
    x0 : (B, C, H, W) float images (the ODE's state at u0), on the device eps_fn expects.
    probes : (B, P, C, H, W) Hutchinson probes (Rademacher), fixed along the whole path.
    u0, rtol, atol : start time and RK45 tolerances (see :func:`solve_rk45_rows`).

    Returns
    -------
    bpd : (B,) float64 tensor on the CPU.
    nfe : (B,) int, the ODE right-hand-side evaluations of each image (each 1 UNet forward + P
        vector-Jacobian products; evaluations of different images run in one batch).
    """
    time = ContinuousTime(schedule)
    t_end = float(time.num_timesteps - 1)
    if not -1.0 < u0 < t_end:
        raise ValueError(f"u0 must lie in (-1, {t_end:g}), got {u0}")
    if probes.ndim != x0.ndim + 1 or probes.shape[0] != x0.shape[0] or probes.shape[2:] != x0.shape[1:]:
        raise ValueError(
            f"probes must have shape (B, P, *x0.shape[1:]), got {tuple(probes.shape)} for x0 of shape {tuple(x0.shape)}"
        )
    image_shape, b = tuple(x0.shape[1:]), x0.shape[0]
    dims = math.prod(image_shape)
    device, n_probes = x0.device, probes.shape[1]

    def rhs(rows: np.ndarray, u: np.ndarray, state: np.ndarray) -> np.ndarray:
        """[f(x, u), div f(x, u)] for the given images: state (M, D + 1) -> (M, D + 1)."""
        x64 = torch.from_numpy(state[:, :dims]).view(len(rows), *image_shape)
        x = x64.to(device, torch.float32).requires_grad_(True)
        beta = torch.from_numpy(time.beta_at(u))
        sigma = torch.from_numpy(time.one_minus_abar_at(u)).sqrt()
        v_all = probes[torch.as_tensor(rows, device=device)]
        with torch.enable_grad():
            eps = eps_fn(x, torch.from_numpy(u).to(device, torch.float32))
            # Hutchinson: v^T (d eps / dx) v, averaged over the probes; one VJP per probe.
            trace = torch.zeros(len(rows), dtype=torch.float64, device=device)
            for p in range(n_probes):
                v = v_all[:, p]
                (vjp,) = torch.autograd.grad(eps, x, v, retain_graph=p < n_probes - 1)
                trace += (vjp * v).flatten(1).sum(1).double()
        eps64 = eps.detach().to("cpu", torch.float64).flatten(1)
        drift = -0.5 * beta[:, None] * (x64.flatten(1) - eps64 / sigma[:, None])
        div = -0.5 * beta * (dims - trace.cpu() / n_probes / sigma)
        return torch.cat([drift, div[:, None]], dim=1).numpy()

    start = np.concatenate([x0.detach().to("cpu", torch.float64).flatten(1).numpy(), np.zeros((b, 1))], axis=1)
    end, nfe = solve_rk45_rows(rhs, u0, t_end, start, rtol=rtol, atol=atol)
    end = torch.from_numpy(end)
    z, delta_logp = end[:, :dims], end[:, dims]
    prior_logp = -0.5 * dims * math.log(2 * math.pi) - 0.5 * z.square().sum(1)
    bpd = -(prior_logp + delta_logp) / (dims * math.log(2)) + BPD_OFFSET
    return bpd, nfe


#: score_sde's bits/dim offset for VE models, whose data lie in [0, 1]: 7 - inverse_scaler(-1) = 8.
VE_BPD_OFFSET = 8.0


def ve_probability_flow_bpd(
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: Any,
    x: torch.Tensor,
    probes: torch.Tensor,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[torch.Tensor, np.ndarray]:
    """Bits/dim of data-space x under a VE-SDE's probability-flow ODE (score_sde ``likelihood.py``).

    VE notation (:mod:`mia_core.score_sde`): sigma(t) = sigma_min (sigma_max / sigma_min)^t,
    g(t)^2 = d sigma^2 / dt = 2 sigma(t)^2 log(sigma_max / sigma_min), for t from eps (the schedule's
    ``sampling_eps``, 1e-5) to 1:

        f(x, t)     dx/dt = -1/2 g(t)^2 s_theta(x, sigma(t))     (the VE SDE has no drift)
        div f       -1/2 g(t)^2 tr(d s_theta / dx), tr by Hutchinson (v^T J v, Rademacher v)
        log p(x)    log N(x(1); 0, sigma_max^2 I) + int_eps^1 div f dt
        bpd         -log p(x) / (D ln 2) + 8   (data in [0, 1], 256 levels: log2(256) = 8)

    Parameters
    ----------
    score_fn : s_theta(x, sigma) with sigma (B,) float32, differentiable in x (B, C, H, W).
    schedule : a :class:`mia_core.score_sde.VESchedule`.
    x : (B, C, H, W) data in [0, 1] on score_fn's device. probes : (B, P, C, H, W).

    Returns bpd (B,) float64 on the CPU and the ODE evaluations of each image (B,).
    """
    image_shape, b = tuple(x.shape[1:]), x.shape[0]
    dims = math.prod(image_shape)
    device, n_probes = x.device, probes.shape[1]
    two_log_ratio = 2.0 * schedule.log_ratio()

    def rhs(rows: np.ndarray, t: np.ndarray, state: np.ndarray) -> np.ndarray:
        x64 = torch.from_numpy(state[:, :dims]).view(len(rows), *image_shape)
        xr = x64.to(device, torch.float32).requires_grad_(True)
        sigma = schedule.sigma(torch.from_numpy(t))  # float64 (M,)
        g2 = sigma.square() * two_log_ratio
        v_all = probes[torch.as_tensor(rows, device=device)]
        with torch.enable_grad():
            score = score_fn(xr, sigma.to(device, torch.float32))
            trace = torch.zeros(len(rows), dtype=torch.float64, device=device)
            for p in range(n_probes):
                v = v_all[:, p]
                (vjp,) = torch.autograd.grad(score, xr, v, retain_graph=p < n_probes - 1)
                trace += (vjp * v).flatten(1).sum(1).double()
        drift = -0.5 * g2[:, None] * score.detach().to("cpu", torch.float64).flatten(1)
        div = -0.5 * g2 * trace.cpu() / n_probes
        return torch.cat([drift, div[:, None]], dim=1).numpy()

    start = np.concatenate([x.detach().to("cpu", torch.float64).flatten(1).numpy(), np.zeros((b, 1))], axis=1)
    end, nfe = solve_rk45_rows(rhs, float(schedule.sampling_eps), 1.0, start, rtol=rtol, atol=atol)
    end = torch.from_numpy(end)
    z, delta_logp = end[:, :dims], end[:, dims]
    var = schedule.sigma_max**2
    prior_logp = -0.5 * dims * math.log(2 * math.pi * var) - 0.5 * z.square().sum(1) / var
    bpd = -(prior_logp + delta_logp) / (dims * math.log(2)) + VE_BPD_OFFSET
    return bpd, nfe


def target_eps_fn(target: Target) -> ContinuousEpsFn:
    """The target's UNet as a ``ContinuousEpsFn``: eps_theta(x, max(u, 0)) sigma(u) / sigma(max(u, 0)).

    Below u = 0 (noise under sigma_0 = sqrt(beta_0), 0.01 for the linear schedule) the UNet was
    never trained: it is run at t = 0 and its noise estimate rescaled, so that the score
    -eps / sigma(u) stays the model's score at t = 0 instead of growing like 1 / sigma(u) where
    the model knows nothing. score_sde does the same for discrete DDPM models (the std comes from
    the discrete table at the integer label).
    """
    time = ContinuousTime(target.schedule)
    sigma_0 = math.sqrt(float(time.one_minus_abar_at(np.zeros(1))[0]))

    def eps_fn(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        eps = target.eps_float_t(x, u, grad=True)
        u_np = u.detach().to("cpu", torch.float64).numpy()
        if (u_np < 0).any():
            ratio = np.where(u_np < 0, np.sqrt(time.one_minus_abar_at(np.minimum(u_np, 0.0))) / sigma_0, 1.0)
            eps = eps * torch.as_tensor(ratio, dtype=torch.float32, device=eps.device).view(-1, 1, 1, 1)
        return eps

    return eps_fn


#: why neither likelihood bound applies to a text-to-image target (Attack.applies_to).
T2I_REASON = (
    "text-to-image target: it is a latent model, and both bounds score 8-bit pixels, while its diffusion runs on "
    "continuous VAE latents whose decoder likelihood is not modelled; a latent bound would moreover be the "
    "conditional log p(z | c) under the run's prompt, which neither bound computes"
)


@dataclass(frozen=True)
class LikelihoodParams:
    """rtol, atol: RK45 tolerances; n_probes: Rademacher probes per image; u0: ODE start time.

    u0 = -0.99 puts 1 - abar(u0) at about 0.01 beta_0 (~1e-6 for the linear schedule), the noise
    level of score_sde's eps = 1e-5 on its [0, 1] time axis for the same DDPM schedule. Between u0
    and 0 the t = 0 score is integrated (see :func:`target_eps_fn`): starting at u0 = 0 instead
    gave ~0.14 higher bits/dim on the default target.
    """

    rtol: float = 1e-5
    atol: float = 1e-5
    n_probes: int = 1
    u0: float = -0.99

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.n_probes, int) or isinstance(self.n_probes, bool) or self.n_probes < 1:
            raise ValueError(f"n_probes must be an integer >= 1, got {self.n_probes!r}")
        if not (isinstance(self.u0, (int, float)) and math.isfinite(self.u0) and self.u0 > -1):
            raise ValueError(f"u0 must be a number > -1 (u = -1 is the clean data), got {self.u0!r}")


class Likelihood(Attack):
    name = "likelihood"
    title = "Likelihood (probability-flow ODE bits/dim)"
    paper = "Hu & Pang 2023; Song et al. 2021"
    score_label = "-bits/dim under the probability-flow ODE"
    trace_label = ""
    Params = LikelihoodParams
    target_kinds = ("ddpm", "ve-sde")
    # The ODE calls Target.eps_float_t, which runs in float32 whatever the target's precision.
    needs_full_precision = True

    def __init__(self, params: LikelihoodParams | None = None, **overrides: Any) -> None:
        super().__init__(params, **overrides)
        #: the ODE evaluations (NFE) each image scored by this object took, in order.
        self.nfe_per_image: list[int] = []

    @property
    def noise_draws(self) -> int:  # type: ignore[override]
        return self.params.n_probes

    def applies_to(self, target: Target) -> str | None:
        if target_kind(target) == "t2i":
            return T2I_REASON
        reason = super().applies_to(target)
        if reason is None and getattr(target.schedule, "zero_terminal_snr", False):
            return (
                "zero terminal SNR (abar_{T-1} = 0): the ODE's time change log abar(u) and its prior "
                "N(0, I) term are undefined at the last step"
            )
        if reason is None and getattr(target, "latent", False):
            return (
                "latent target: bits/dim here are those of 8-bit pixels in [-1, 1]; the latents are "
                "continuous and the VAE's own likelihood is not modelled"
            )
        config = getattr(getattr(target, "unet", None), "config", None)  # duck-typed test targets have none
        if reason is None and target_kind(target) == "ddpm" and getattr(config, "time_embedding_type", "") == "learned":
            return (
                "the UNet's time embedding is a lookup table (integer timesteps only; e.g. a converted checkpoint "
                "whose stored table was kept), and the probability-flow ODE needs eps_theta at real-valued t"
            )
        return reason

    def expected_nfe(self) -> int:
        """NFE per image expected before a run (measured on the embedded default target; the
        solver is adaptive, so other models and images take more or fewer)."""
        tol = math.log10(min(self.params.rtol, self.params.atol))
        known = sorted(TYPICAL_NFE)
        return int(round(np.interp(tol, [math.log10(k) for k in known], [TYPICAL_NFE[k] for k in known])))

    def unet_calls(self, trace: bool = True) -> int:
        """Estimated UNet calls per image: NFE x (1 forward + n_probes vector-Jacobian products)."""
        return self.expected_nfe() * (1 + self.params.n_probes)

    def inputs_per_image(self) -> int:
        """One input per image and evaluation, but the VJP keeps the activations: budget several."""
        return 16

    def mean_nfe(self) -> float:
        """Mean NFE per image over the images scored so far (nan before any)."""
        return float(np.mean(self.nfe_per_image)) if self.nfe_per_image else float("nan")

    def run(self, target: Target, x0: np.ndarray | torch.Tensor, **kwargs: Any) -> AttackResult:
        """``Attack.run``, with the measured cost: ``unet_calls_per_image`` from the mean NFE (not
        the estimate) and ``info`` = {"mean_nfe", "min_nfe", "max_nfe"} over this run's images."""
        first = len(self.nfe_per_image)
        result = super().run(target, x0, **kwargs)
        nfe = np.asarray(self.nfe_per_image[first:])
        info = {**result.info, "mean_nfe": float(nfe.mean()), "min_nfe": int(nfe.min()), "max_nfe": int(nfe.max())}
        calls = int(round(float(nfe.mean()) * (1 + self.params.n_probes)))
        return dataclasses.replace(result, unet_calls_per_image=calls, info=info)

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """x0 (B, C, H, W); noise (B, n_probes, C, H, W) -> score (B,) = -bpd, float32."""
        reason = self.applies_to(target)
        if reason:
            raise ValueError(f"likelihood does not apply to this target: {reason}")
        if noise is None or noise.shape[1] < self.params.n_probes:
            raise ValueError(f"likelihood needs noise of shape (B, {self.params.n_probes}, C, H, W) for its probes")
        probes = rademacher(noise[:, : self.params.n_probes])
        if target_kind(target) == "ve-sde":  # data in [0, 1], t from the schedule's eps to 1 (u0 is a DDPM setting)
            bpd, nfe = ve_probability_flow_bpd(
                lambda x, sigma: target.score(x, sigma, grad=True),
                target.schedule,
                target.to_data(x0),
                probes,
                rtol=self.params.rtol,
                atol=self.params.atol,
            )
            self.nfe_per_image.extend(int(n) for n in nfe)
            return {"score": (-bpd).to(x0.device, torch.float32)}
        bpd, nfe = probability_flow_bpd(
            target_eps_fn(target),
            target.schedule,
            x0,
            probes,
            u0=self.params.u0,
            rtol=self.params.rtol,
            atol=self.params.atol,
        )
        self.nfe_per_image.extend(int(n) for n in nfe)
        return {"score": (-bpd).to(x0.device, torch.float32)}


# -- the discrete ELBO ------------------------------------------------------------------------------


def _table(schedule: NoiseSchedule, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(abar, beta) as float64 tensors on ``device``, (T,) each."""
    abar = schedule.alphas_cumprod.to(device)
    prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return abar, 1.0 - abar / prev


def prior_kl_nats(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_prior = KL(N(sqrt(abar_{T-1}) x0, 1 - abar_{T-1}) || N(0, I)), summed over dims: (B,) float64."""
    a = float(schedule.alphas_cumprod[-1])
    per_dim = 0.5 * (a * x0.double().square() - a - math.log1p(-a))
    return per_dim.flatten(1).sum(1)


def posterior_kl_nats(
    schedule: NoiseSchedule, t: torch.Tensor, eps: torch.Tensor, eps_pred: torch.Tensor, variance: str = "fixed_large"
) -> torch.Tensor:
    """L_t for t >= 1 (Ho eq. 12 with variance beta_t and the exact variance terms), summed over dims.

    t : (N,) long, 1 .. T-1; eps : (N, C, H, W) the noise x_t was made with; eps_pred : eps_theta(x_t, t).
    Returns (N,) float64.
    """
    abar, beta = _table(schedule, eps.device)
    a_t, b_t, a_prev = abar[t], beta[t], abar[t - 1]
    var_q = b_t * (1.0 - a_prev) / (1.0 - a_t)  # beta~_t
    dims = math.prod(eps.shape[1:])
    sq = (eps.float() - eps_pred.float()).square().flatten(1).sum(1).double()
    if variance == "fixed_small":  # sigma_t^2 = beta~_t: the variance terms vanish
        return b_t * b_t / (2.0 * var_q * (1.0 - b_t) * (1.0 - a_t)) * sq
    variance_part = 0.5 * dims * (torch.log(b_t / var_q) + var_q / b_t - 1.0)
    return variance_part + b_t / (2.0 * (1.0 - b_t) * (1.0 - a_t)) * sq


def _log_normal_mass(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Phi(hi) - Phi(lo)) for lo < hi, from the tail nearer zero (no cancellation in one tail)."""
    upper = lo > 0  # both in the upper tail: use the symmetry Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    mass = torch.where(
        upper, torch.special.ndtr(-lo) - torch.special.ndtr(-hi), torch.special.ndtr(hi) - torch.special.ndtr(lo)
    )
    return torch.log(mass.clamp_min(1e-12))  # improved DDPM's floor: a hopeless decoder costs 27.6 nats


def decoder_nll_nats(
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    x_first: torch.Tensor,
    eps_pred: torch.Tensor,
    variance: str = "fixed_large",
) -> torch.Tensor:
    """L_dec = -log p_theta(x0 | x_0), the discretised Gaussian decoder, summed over dims: (B,) float64.

    x0 : (B, C, H, W) data on the 256-level grid of [-1, 1]; x_first : x_0 = q_sample(x0, 0, eps);
    eps_pred : eps_theta(x_0, 0).
    """
    abar, beta = _table(schedule, x0.device)
    b0 = beta[0]  # abar_0 = alpha_0 = 1 - beta_0
    mean = (x_first.double() - b0 / torch.sqrt(1.0 - abar[0]) * eps_pred.double()) / torch.sqrt(1.0 - b0)
    if variance == "fixed_small":  # beta~_1, Ho et al.'s clipped log-variance at t = 0
        inv_std = 1.0 / torch.sqrt(beta[1] * (1.0 - abar[0]) / (1.0 - abar[1]))
    else:
        inv_std = 1.0 / torch.sqrt(b0)
    x = x0.double()
    lo = (x - HALF_BIN - mean) * inv_std
    hi = (x + HALF_BIN - mean) * inv_std
    log_mass = torch.where(
        x < -0.999,
        torch.special.log_ndtr(hi),  # the first bin holds everything below it
        torch.where(x > 0.999, torch.special.log_ndtr(-lo), _log_normal_mass(lo, hi)),  # the last, above
    )
    return -log_mass.flatten(1).sum(1)


def strata_bounds(n_strata: int, num_timesteps: int) -> np.ndarray:
    """Boundaries of the strata of t = 1 .. T-1: (K + 1,) ints, stratum k = [bounds[k], bounds[k+1]).

    The boundaries follow the geometric sequence T^(k/K), kept at least one apart: the first
    strata are single timesteps (their terms, the largest, are exact) and the later ones widen
    by a constant ratio. K = min(n_strata, T - 1); K = T - 1 gives every t its own stratum.
    """
    k_total = min(int(n_strata), num_timesteps - 1)
    ideal = np.geomspace(1.0, num_timesteps, k_total + 1)
    bounds = [1]
    for k in range(1, k_total):
        # at least one step past the previous bound; leave one timestep for each stratum after it
        bounds.append(int(min(max(bounds[-1] + 1, round(ideal[k])), num_timesteps - (k_total - k))))
    bounds.append(num_timesteps)
    return np.asarray(bounds, dtype=np.int64)


def stratified_timesteps(uniform: torch.Tensor, bounds: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """One t per (stratum, image), uniform within the stratum, and its weight (the stratum's size).

    uniform : (B, K) in [0, 1). Returns t (K, B) long and weight (K, 1) float64.
    """
    start = torch.as_tensor(bounds[:-1], device=uniform.device)
    size = torch.as_tensor(np.diff(bounds), device=uniform.device)
    offset = (uniform.T.double() * size[:, None]).long().clamp_max(size[:, None] - 1)
    return start[:, None] + offset, size[:, None].double()


def stratum_uniforms(noise: torch.Tensor, n_strata: int) -> torch.Tensor:
    """(B, K) uniforms on [0, 1) from one N(0, I) draw per image: Phi of element k mod D for stratum k.

    Independent between strata while K <= D (64 for an 8x8 grayscale image; only the strata wider
    than one timestep use theirs); beyond that strata k and k + D share a uniform (still unbiased).
    """
    z = noise.flatten(1).double()
    index = torch.arange(n_strata, device=noise.device) % z.shape[1]
    return torch.special.ndtr(z[:, index]).clamp(0.0, 1.0 - 1e-12)


def elbo_bits(
    eps_fn: DiscreteEpsFn,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    noise: torch.Tensor,
    *,
    n_timesteps: int = 100,
    max_batch: int = 1024,
    variance: str = "fixed_large",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The DDPM bound in bits/dim and its per-timestep terms.

    Parameters
    ----------
    eps_fn : eps_theta(x_t, t) at integer timesteps (see ``DiscreteEpsFn``).
    x0 : (B, C, H, W) images in [-1, 1] on the 256-level grid.
    noise : (B, K + 2, C, H, W) N(0, I), K = min(n_timesteps, T - 1): draw 0 for the decoder's
        x_0, draw 1 + k for stratum k's x_t, the last draw for the t within each stratum.
    n_timesteps : K, KL terms evaluated per image (one per stratum, see :func:`strata_bounds`).
    max_batch : UNet inputs per forward pass; timesteps are stacked up to this many.
    variance : the reverse variance, "fixed_large" (beta_t) or "fixed_small" (beta~_t).

    Returns
    -------
    bpd : (B,) float64, L / (D ln 2).
    terms : (B, 1 + K) float64 bits/dim: L_dec, then L_t at each image's t in stratum k (unweighted).
    """
    b, dims = x0.shape[0], math.prod(x0.shape[1:])
    bounds = strata_bounds(n_timesteps, schedule.num_timesteps)
    n_strata = len(bounds) - 1
    if noise.shape[1] < n_strata + 2:
        raise ValueError(
            f"elbo with {n_strata} timesteps needs noise of shape (B, {n_strata + 2}, C, H, W), "
            f"got {tuple(noise.shape)}"
        )
    t_strata, weights = stratified_timesteps(stratum_uniforms(noise[:, n_strata + 1], n_strata), bounds)
    abar, _ = _table(schedule, x0.device)
    # Row group 0: the decoder at t = 0; group 1 + k: stratum k. Groups run stacked, max_batch inputs at a time.
    t_groups = torch.cat([torch.zeros(1, b, dtype=torch.long, device=x0.device), t_strata])  # (1 + K, B)
    nats = torch.empty(1 + n_strata, b, dtype=torch.float64, device=x0.device)
    per_pass = max(1, max_batch // b)
    for first in range(0, 1 + n_strata, per_pass):
        groups = range(first, min(1 + n_strata, first + per_pass))
        t = t_groups[first : groups.stop].reshape(-1)  # row j * B + i: image i in group first + j
        eps = noise[:, first : groups.stop].transpose(0, 1).reshape(-1, *x0.shape[1:])
        a = abar[t].float().view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0.repeat(len(groups), 1, 1, 1) + (1.0 - a).sqrt() * eps  # DDPM eq. 4
        eps_pred = eps_fn(x_t, t)
        for j, g in enumerate(groups):
            rows = slice(j * b, (j + 1) * b)
            if g == 0:
                nats[0] = decoder_nll_nats(schedule, x0, x_t[rows], eps_pred[rows], variance)
            else:
                nats[g] = posterior_kl_nats(schedule, t[rows], eps[rows], eps_pred[rows], variance)
    total = prior_kl_nats(schedule, x0) + nats[0] + (weights * nats[1:]).sum(0)
    to_bits = 1.0 / (dims * math.log(2))
    return total * to_bits, nats.T * to_bits


@dataclass(frozen=True)
class ELBOParams:
    """n_timesteps: KL terms evaluated per image, one per stratum of t (>= T - 1: the exact sum)."""

    n_timesteps: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.n_timesteps, int) or isinstance(self.n_timesteps, bool) or self.n_timesteps < 1:
            raise ValueError(f"n_timesteps must be an integer >= 1, got {self.n_timesteps!r}")


class ELBO(Attack):
    name = "elbo"
    title = "ELBO (DDPM variational bound, bits/dim)"
    paper = "Hu & Pang 2023; Ho et al. 2020"
    score_label = "-bits/dim of the DDPM variational bound"
    trace_label = "bound term (bits/dim): decoder -log p at t=0, KL L_t at t >= 1"
    Params = ELBOParams
    # A sum of ~1000 terms, each a scaled squared error: run the UNet in float32, not bf16.
    needs_full_precision = True

    #: the schedule length T the attack is set up for (noise draws and trace timesteps depend on
    #: it and are fixed before the target is seen); ``compute`` checks the target's.
    num_timesteps: int = 1000

    def _bounds(self) -> np.ndarray:
        return strata_bounds(self.params.n_timesteps, self.num_timesteps)

    @property
    def noise_draws(self) -> int:  # type: ignore[override]
        return len(self._bounds()) + 1  # decoder, one per stratum, the within-stratum uniforms

    def unet_calls(self, trace: bool = True) -> int:
        return len(self._bounds())  # decoder + one per stratum

    def trace_timesteps(self) -> tuple[int, ...]:
        """0 (decoder), then the first t of each stratum (each image's term lies in that stratum)."""
        return (0, *(int(t) for t in self._bounds()[:-1]))

    def applies_to(self, target: Target) -> str | None:
        if target_kind(target) == "t2i":
            return T2I_REASON
        reason = super().applies_to(target)  # the kind of target first (a VE-SDE schedule has no DDPM steps)
        if reason:
            return reason
        if target.schedule.num_timesteps != self.num_timesteps:
            return (
                f"elbo is set up for T={self.num_timesteps} timesteps, the target has {target.schedule.num_timesteps}"
            )
        if getattr(target.schedule, "zero_terminal_snr", False):
            return "zero terminal SNR (alpha_{T-1} = 0): the reverse mean divides by sqrt(alpha_{T-1})"
        if getattr(target, "latent", False):
            return "latent target: the bound's discretised decoder scores 8-bit pixels, not continuous latents"
        if getattr(target, "variance_type", None) in ("learned", "learned_range"):
            return (
                f"variance_type {target.variance_type!r}: the bound would need the model's learned variance, "
                "which is not implemented"
            )
        return None

    def reverse_variance(self, target: Target) -> str:
        """ "fixed_small" or "fixed_large" (also for the "_log" spellings and when the config does not say)."""
        return (
            "fixed_small"
            if getattr(target, "variance_type", None) in ("fixed_small", "fixed_small_log")
            else "fixed_large"
        )

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """x0 (B, C, H, W); noise (B, K + 2, C, H, W) -> score (B,) = -bpd, trace (B, 1 + K) bits/dim."""
        reason = self.applies_to(target)
        if reason:
            raise ValueError(f"elbo does not apply to this target: {reason}")
        if noise is None:
            raise ValueError(f"elbo needs noise of shape (B, {self.noise_draws}, C, H, W)")
        bpd, terms = elbo_bits(
            target.eps,
            target.schedule,
            x0,
            noise,
            n_timesteps=self.params.n_timesteps,
            max_batch=max_unet_batch(target),
            variance=self.reverse_variance(target),
        )
        return {"score": (-bpd).float(), "trace": terms.float()}
