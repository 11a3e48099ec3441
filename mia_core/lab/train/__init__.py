"""Training a target DDPM on the member part of a split, with augmentation, DP-SGD and resuming.

Modules: ``config`` (TrainConfig, schedules, augmentations, model-size presets), ``loop`` (the
training loop, the UNet, augmentation, speed and denoising loss), ``dp`` (DP-SGD through Opacus,
the accountant) and ``checkpoint`` (the saved model folder, its log, the command, checkpoints) and ``latent`` (a latent
target: a small AutoencoderKL, then the same loop on its latents).
Everything public is re-exported here: ``from mia_core.lab.train import TrainConfig, train``.

Notation: the DDPM objective (Ho et al. 2020, eq. 14, "L_simple"):

    t ~ U{0, ..., T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    loss = mean (eps - eps_theta(x_t, t))^2           (mean over the batch and C, H, W)

DP-SGD (Abadi et al. 2016, Algorithm 1), through Opacus:

    q         sample rate = batch_size / N: each member joins a step's batch with probability q
              (Poisson sampling, the sampling the privacy accountant assumes)
    C         dp_max_grad_norm: every per-sample gradient g_i is clipped to g_i * min(1, C / |g_i|)
    sigma     noise multiplier: g = (sum_i clip(g_i) + N(0, sigma^2 C^2 I)) / batch_size
    (eps, delta)  the guarantee after ``steps`` such steps; sigma is the smallest one for which
              Opacus' accountant gives eps <= dp_epsilon, and the achieved eps is reported.

Adam(W) with a linear warm-up, gradient clipping (DP-SGD: per-sample clipping instead), and an
exponential moving average (EMA) of the weights; the **EMA weights** are what gets saved and
attacked, as in SecMI / PIA / SimA. The learning rate is constant after the warm-up, so a
snapshot at step s is the model a run of s steps would have given (bit for bit without DP; with
DP the noise multiplier was set for the whole run).

Output: a diffusers pipeline folder (``unet/`` with safetensors, ``scheduler/``,
``model_index.json``) plus ``split.json`` (what it was trained on) and ``train_log.json`` (the
command, config, loss curve and, with DP, the privacy guarantee). With ``checkpoint_every`` a
training checkpoint (safetensors + JSON, no pickles) goes to ``out_dir/checkpoint`` and
``train(..., resume_from=...)`` continues from it exactly.

DP and the UNet: Opacus computes per-sample gradients layer by layer. Its default hook rules
(``grad_sample_mode="hooks"``) cover every layer type of diffusers' ``UNet2DModel`` (Conv2d,
Linear, GroupNorm) but give WRONG gradients for some of its convolutions: Opacus' ``unfold2d``
assumes a contiguous (N, C, H, W) input, and the tensors leaving an attention block are laid out
channels-last (Opacus 1.6; the mid block's and the first up block's convolutions are hit; a test
compares every per-sample gradient with autograd on the sample alone). We therefore use
Opacus' functorch mode (``GradSampleModule(..., force_functorch=True)``: ``torch.func`` vmap of
each layer's own forward), which is exact for every layer, attention included, at about 1.6x
the cost of the hooks on a CPU. ``attention=False`` only makes DP training cheaper.

EMA: ``ema <- decay * ema + (1 - decay) * theta`` after every optimizer step (:func:`ema_update`).
"""

from mia_core.lab.train.checkpoint import (
    CHECKPOINT_DIR,
    CHECKPOINT_FORMAT,
    read_train_log,
    save_pipeline,
    train_command,
)
from mia_core.lab.train.config import (
    AUGMENT_LABELS,
    AUGMENTS,
    DP_ACCOUNTANTS,
    PRESETS,
    SCHEDULES,
    TrainConfig,
    preset_config,
)
from mia_core.lab.train.dp import DPState, make_grad_sample_module
from mia_core.lab.train.latent import VAEConfig, VAEResult, build_vae, train_latent, train_vae
from mia_core.lab.train.loop import (
    TrainResult,
    augment_batch,
    build_unet,
    denoising_loss,
    ema_update,
    measure_steps_per_second,
    shift_reflect,
    train,
)

__all__ = [
    "AUGMENTS",
    "AUGMENT_LABELS",
    "CHECKPOINT_DIR",
    "CHECKPOINT_FORMAT",
    "DPState",
    "DP_ACCOUNTANTS",
    "PRESETS",
    "SCHEDULES",
    "TrainConfig",
    "TrainResult",
    "VAEConfig",
    "VAEResult",
    "augment_batch",
    "build_unet",
    "build_vae",
    "denoising_loss",
    "ema_update",
    "make_grad_sample_module",
    "measure_steps_per_second",
    "preset_config",
    "read_train_log",
    "save_pipeline",
    "shift_reflect",
    "train",
    "train_command",
    "train_latent",
    "train_vae",
]
