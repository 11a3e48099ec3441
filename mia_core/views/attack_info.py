"""One table of what the pages say about each attack: short name, colour, access level, explanation.

Every legend, table, slide and sentence that names an attack reads it here::

    info = attack_info("secmi")
    info.short        "SecMI"        legends, bars, table rows
    info.title        "SecMI-stat (t-error)"   the registry's longer title
    info.color        "#D55E00"      the same colour on every chart (:mod:`mia_core.views.style`)
    info.access       "gray"         one of ACCESS_ORDER, read from the attack class (``Attack.access``)
    info.needs        ()             extra resources beyond the target (``Attack.needs``)
    info.explanation  one line: what the attack measures

Access level and needs are *read* from the attack classes (the engine states them); only the short
names and the one-line explanations are written here. An attack registered later without an entry
here still displays: its short name is the registry title up to `` (``, its explanation the
class's ``score_label``. Names that are not registered at all (an old stored result) get the name
itself, a fallback colour, and access ``"unknown"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from mia_core.attacks import ACCESS_LEVELS, REGISTRY, access_label
from mia_core.views.style import attack_color

__all__ = [
    "ACCESS_ORDER",
    "AttackInfo",
    "SHORT_NAMES",
    "EXPLANATIONS",
    "attack_info",
    "short_name",
    "all_attack_info",
    "access_text",
    "choice_label",
    "THREAT_MODEL_TEXT",
    "threat_models",
]

#: Threat models, weakest access first (the order of :data:`mia_core.attacks.ACCESS_LEVELS`).
ACCESS_ORDER: tuple[str, ...] = tuple(ACCESS_LEVELS)

#: Short display names (legends, bars, table rows); the registry's ``title`` is longer.
SHORT_NAMES: dict[str, str] = {
    "loss": "Loss",
    "secmi": "SecMI",
    "pia": "PIA",
    "pian": "PIAN",
    "sima": "SimA",
    "secmi_nn": "SecMI-NN",
    "qr": "QR",
    "likelihood": "Likelihood",
    "elbo": "ELBO",
    "rediffuse": "ReDiffuse",
    "gan_leaks": "GAN-Leaks",
    "mc_set": "Monte-Carlo set",
    "gsa1": "GSA1",
    "gsa2": "GSA2",
    "clid": "CLiD",
}

#: One line per attack: what it measures, in words a newcomer follows.
EXPLANATIONS: dict[str, str] = {
    "loss": "the denoising error sum (eps - eps_theta(x_t, t))^2 at one t (the training loss): "
    "members are denoised better",
    "secmi": "the t-error: invert the image with deterministic DDIM steps to t_sec - k, step up and back down once, "
    "and measure how far it lands from where it started",
    "pia": "noise the image with the model's own noise guess eps_theta(x0, 0) and check the model predicts that "
    "same noise back at t: members get consistent predictions",
    "pian": "PIA with eps_theta(x0, 0) rescaled to the size of Gaussian noise",
    "sima": "the size of the predicted noise eps_theta(x0, t) on the clean image: a memorised image sits at a "
    "peak of the learned density, so the model sees little noise in it",
    "secmi_nn": "a small CNN trained on labelled members and non-members reads SecMI's whole t-error map "
    "|x~ - x''| instead of its sum",
    "qr": "regressors trained on public non-members predict, per image, how low a non-member's SecMI t-error "
    "would be; an image far below its own prediction is flagged",
    "likelihood": "the image's likelihood (bits/dim) under the model's probability-flow ODE: members are more likely",
    "elbo": "the DDPM's variational bound on the image's bits/dim, summed over every timestep: members get "
    "a tighter bound",
    "rediffuse": "ask for n variations of the image (noise it to t, let the model denoise it back), average them "
    "and measure how far the average lands from the image: members come back closer",
    "gan_leaks": "the distance from the image to the nearest of many images the model generated",
    "mc_set": "the share of the model's generated images that fall within a small distance of the image",
    "gsa1": "the size of the loss gradient in every weight tensor, fed to a classifier trained on shadow models: "
    "a memorised image barely moves the weights",
    "gsa2": "as GSA1, with one gradient per timestep, their sizes averaged",
    "clid": "for text-to-image models: how much more the image's own caption helps the model denoise it than "
    "the caption with its main words removed or the empty prompt; a training image's caption helps most",
}

#: What the attacker has under each threat model, in plain words (keys: ACCESS_LEVELS).
THREAT_MODEL_TEXT: dict[str, str] = {
    "black": "Only what a public API returns: images the model generated, or variations of an image it was sent. "
    "Nothing about the model's insides.",
    "gray": "The model's noise prediction eps_theta(x_t, t) for any image and timestep it chooses (a hosted "
    "model that exposes its denoiser), but no weights.",
    "white": "The weights themselves: it can backpropagate through the model and read every gradient. Some "
    "attacks also train shadow models like the target to learn what members look like.",
}


@dataclass(frozen=True)
class AttackInfo:
    """What the pages show about one attack (see the module docstring).

    Attributes
    ----------
    name : registry key ("secmi").
    short : short display name ("SecMI").
    title : the registry's title ("SecMI-stat (t-error)"); ``name`` for an unregistered attack.
    color : hex colour of its lines and bars.
    access : "black", "gray" or "white" (:data:`ACCESS_ORDER`), "unknown" when not registered.
    needs : extra resources beyond the target, in plain words (empty = none).
    explanation : one line, what the attack measures.
    paper : where it was published ("" when unknown).
    """

    name: str
    short: str
    title: str
    color: str
    access: str
    needs: tuple[str, ...]
    explanation: str
    paper: str = ""

    @property
    def access_text(self) -> str:
        """The access level in words, e.g. "gray box: the model's noise predictions at chosen timesteps"."""
        return access_text(self.access)

    @property
    def access_rank(self) -> int:
        """Position in :data:`ACCESS_ORDER` (0 = weakest access); unknown levels sort last."""
        return ACCESS_ORDER.index(self.access) if self.access in ACCESS_ORDER else len(ACCESS_ORDER)


def access_text(access: str) -> str:
    """An access level in words (:data:`mia_core.attacks.ACCESS_LEVELS`); "unknown access" otherwise."""
    return ACCESS_LEVELS.get(access, "unknown access")


def _conditioning_label(parts: list[str]) -> str:
    """The conditioning parts of a run id (``cond=fixed``, ``prompt=a%20seven``, ``guidance=3``;
    :mod:`mia_core.lab.run_specs`) in words, as ``Conditioning.label`` says them; "" for none."""
    from urllib.parse import unquote

    from mia_core.attacks import Conditioning

    fields = dict(p.partition("=")[::2] for p in parts)
    if "cond" not in fields:
        return ""
    try:
        return Conditioning(
            mode=fields["cond"],
            prompt=unquote(fields.get("prompt", "")),
            guidance_scale=float(fields.get("guidance", 1.0)),
        ).label()
    except ValueError:  # not a valid conditioning: shown as written
        return ", ".join(parts)


def attack_info(name: str) -> AttackInfo:
    """The :class:`AttackInfo` of an attack name (registered or not; see the module docstring).

    A run id (:mod:`mia_core.lab.run_specs`, ``"loss:timesteps=100"``: an attack with non-default
    parameters) is its attack's info with the parameters in the names (``"Loss timesteps=100"``)
    and a colour of its own, so two runs of one attack are told apart in every legend.
    """
    base, sep, params = name.partition(":")
    if sep and base in REGISTRY:
        info = attack_info(base)
        parts = [p for p in params.split(",") if p]
        plain = [p for p in parts if p.partition("=")[0] not in ("cond", "prompt", "guidance")]
        said = ", ".join(p + "none" if p.endswith("=") else p for p in plain)
        cond = _conditioning_label([p for p in parts if p not in plain])
        if cond:  # a text-to-image run: its prompts in words ("own caption", 'prompt "a seven"', guidance)
            said = f"{said} · {cond}" if said else cond
        said = said or "defaults"
        return dataclasses.replace(
            info, name=name, short=f"{info.short} {said}", title=f"{info.title} ({said})", color=attack_color(name)
        )
    cls = REGISTRY.get(name)
    if cls is None:
        return AttackInfo(
            name=name,
            short=SHORT_NAMES.get(name, name),
            title=name,
            color=attack_color(name),
            access="unknown",
            needs=(),
            explanation=EXPLANATIONS.get(name, ""),
            paper="",
        )
    title = cls.title or name
    return AttackInfo(
        name=name,
        short=SHORT_NAMES.get(name) or title.split(" (")[0],
        title=title,
        color=attack_color(name),
        access=str(cls.access),
        needs=tuple(cls.needs),
        explanation=EXPLANATIONS.get(name) or cls.score_label or title,
        paper=cls.paper,
    )


def threat_models() -> list[dict[str, str]]:
    """One row per threat model, weakest access first: its name, what the attacker has, its attacks' short names."""
    from mia_core.attacks import attacks_by_access

    return [
        {
            "threat model": f"{level} box",
            "the attacker has": THREAT_MODEL_TEXT[level],
            "attacks": ", ".join(short_name(n) for n in names) or "none yet",
            "level": level,
            "short": ACCESS_LEVELS[level],
        }
        for level, names in attacks_by_access().items()
    ]


def short_name(name: str) -> str:
    """Short display name of an attack: ``"secmi"`` -> ``"SecMI"`` (``attack_info(name).short``)."""
    return attack_info(name).short


def all_attack_info() -> list[AttackInfo]:
    """One :class:`AttackInfo` per registered attack, in registry order."""
    return [attack_info(name) for name in REGISTRY]


def choice_label(name: str, cost: str = "") -> str:
    """A pick-list label: short name — paper · threat model · cost, e.g.
    "PIA — Kong et al., ICLR 2024 · gray box · 2 UNet calls/image".

    ``cost`` is the text of :func:`mia_core.lab.plan.cost_text` (left out when empty).
    """
    info = attack_info(name)
    parts = f"{info.short} — {info.paper}" if info.paper else info.short
    if name in REGISTRY:
        parts += f" · {access_label(name)}"
    return f"{parts} · {cost}" if cost else parts


def by_reason(reasons: Mapping[str, str]) -> list[tuple[list[str], str]]:
    """Attack name -> why it does not apply, grouped: ([names sharing a reason], the reason), in first-seen
    order; so a list names each reason once (``{"a": "r", "b": "r"}`` -> ``[(["a", "b"], "r")]``)."""
    out: dict[str, list[str]] = {}
    for name, reason in reasons.items():
        out.setdefault(str(reason), []).append(name)
    return [(names, reason) for reason, names in out.items()]
