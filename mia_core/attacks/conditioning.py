"""What a text-to-image target is conditioned on during one attack run.

A run on a text-to-image target (``Target.kind == "t2i"``, :class:`mia_core.target.TextToImageTarget`)
chooses its prompt per image with a :class:`Conditioning`:

    mode      prompt for image i                      c_i
    caption   the image's own caption (its data)      E(caption_i)
    empty     ""                                      c_empty = E("")   (the unconditional model)
    fixed     one prompt for every image              E(prompt)

with E the target's text encoder (:meth:`TextToImageTarget.embed`, once per distinct prompt), and a
classifier-free guidance scale w: eps~ = eps(., c_empty) + w (eps(., c_i) - eps(., c_empty)); w = 1
(the default, as SecMI-LDM, CopyMark and CLiD run) is eps(., c_i) alone. With w != 1 every UNet call
is two forward passes, so an attack's cost (``Attack.unet_calls``) doubles.

The conditioning is part of the attack's parameters (``Attack.params_dict()["conditioning"]``) and
so of the result-store key. In mode "caption" the key also holds a digest of the captions
(:meth:`Conditioning.with_captions`): new captions are a new run. Pixel and unconditional latent
targets take no conditioning.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

MODES = ("caption", "empty", "fixed")
MODE_TEXT = {
    "caption": "each image's own caption",
    "empty": 'the empty prompt ""',
    "fixed": "one fixed prompt for every image",
}


def captions_digest(captions: Sequence[str]) -> str:
    """sha256 of the captions in order (one per image), 16 hex digits."""
    return hashlib.sha256("\n\x00".join(str(c) for c in captions).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Conditioning:
    """mode: "caption", "empty" or "fixed"; prompt: the prompt of mode "fixed"; guidance_scale: the
    classifier-free guidance scale w (1 = off); captions: the digest of the captions a "caption" run
    uses (:func:`captions_digest`; "" = not recorded)."""

    mode: str = "caption"
    prompt: str = ""
    guidance_scale: float = 1.0
    captions: str = ""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"conditioning mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.prompt, str):
            raise ValueError(f"the prompt must be a string, got {self.prompt!r}")
        if self.mode == "fixed" and not self.prompt.strip():
            raise ValueError('conditioning "fixed" needs a non-empty prompt (use mode "empty" for the empty prompt)')
        if self.mode != "fixed" and self.prompt:
            raise ValueError(f'a prompt ({self.prompt!r}) is only used with conditioning "fixed", not {self.mode!r}')
        w = self.guidance_scale
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"guidance_scale must be a finite number >= 0 (1 = off), got {w!r}")
        object.__setattr__(self, "guidance_scale", float(w))
        if self.mode != "caption" and self.captions:
            raise ValueError(f"a captions digest is recorded only in mode 'caption', not {self.mode!r}")

    @property
    def guided(self) -> bool:
        return self.guidance_scale != 1.0

    @property
    def cost_factor(self) -> int:
        """Forward passes per UNet call: 2 with guidance (conditional and empty-prompt halves), else 1."""
        return 2 if self.guided else 1

    def label(self) -> str:
        """A few words for a result's label: 'own caption', 'empty prompt', 'prompt "a seven"', + guidance."""
        text = {"caption": "own caption", "empty": "empty prompt", "fixed": f'prompt "{self.prompt}"'}[self.mode]
        return text + (f", guidance {self.guidance_scale:g}" if self.guided else "")

    def describe(self) -> str:
        """One sentence: the mode in words and the guidance with its cost."""
        text = MODE_TEXT[self.mode] + (f' ("{self.prompt}")' if self.mode == "fixed" else "")
        if self.guided:
            return f"{text}; classifier-free guidance scale {self.guidance_scale:g} (every UNet call costs 2 passes)"
        return f"{text}; no guidance (scale 1)"

    def with_captions(self, captions: Sequence[str] | None) -> Conditioning:
        """This conditioning with the digest of ``captions`` recorded (mode "caption" only; else unchanged)."""
        if self.mode != "caption" or captions is None:
            return self
        return replace(self, captions=captions_digest(captions))

    def prompts(self, n: int, captions: Sequence[str] | None) -> list[str]:
        """The N prompts of a run over N images (``captions``: one per image, needed in mode "caption")."""
        if self.mode == "empty":
            return [""] * n
        if self.mode == "fixed":
            return [self.prompt] * n
        if captions is None:
            raise ValueError(
                "conditioning 'caption' needs one caption per image, and these images have none: give captions "
                "(an .npz 'captions' array, an image folder's metadata.jsonl) or choose conditioning 'empty' or 'fixed'"
            )
        captions = [str(c) for c in captions]
        if len(captions) != n:
            raise ValueError(f"got {len(captions)} captions for {n} images: conditioning 'caption' needs one per image")
        if self.captions and captions_digest(captions) != self.captions:
            raise ValueError(
                f"the captions given (digest {captions_digest(captions)}) are not those this run was keyed "
                f"with ({self.captions}); build the conditioning with with_captions() on these captions"
            )
        return captions

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for parameters, run keys and metrics.json (empty fields left out)."""
        out = asdict(self)
        if not out["captions"]:
            del out["captions"]
        if not out["prompt"]:
            del out["prompt"]
        return out

    @classmethod
    def from_value(cls, value: Conditioning | Mapping[str, Any] | str | None) -> Conditioning | None:
        """A Conditioning from itself, a mapping of its fields, a mode name, or None."""
        if value is None or isinstance(value, Conditioning):
            return value
        if isinstance(value, str):
            return cls(mode=value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"mode", "prompt", "guidance_scale", "captions"})
            if unknown:
                raise ValueError(f"unknown conditioning field(s) {unknown}; known: mode, prompt, guidance_scale")
            return cls(**dict(value))
        raise ValueError(f"conditioning must be a mode name or a mapping, got {value!r}")


def is_text_to_image(target: Any) -> bool:
    """True for a target conditioned on text (``kind == "t2i"``)."""
    return getattr(target, "kind", "ddpm") == "t2i"
