"""The presenter deck's data: the default experiment's stored results, and the shipped defence study.

The deck (:mod:`mia_core.views.presenter`) is drawn from plain arrays, a :class:`DeckData`; this
module loads them (experiments, the result store, a study file) so the views never do. A talk
never waits on a computation: the default experiment's results ship precomputed in
``assets/demo_store`` (made by :data:`DEMO_COMMAND`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mia_core.attacks import DEFAULT_ATTACKS, AttackResult
from mia_core.paths import STUDIES_DIR

if TYPE_CHECKING:  # only for annotations: importing experiment pulls in torch and diffusers
    from mia_core.lab.experiment import Experiment
    from mia_core.lab.runs import ResultStore

__all__ = [
    "DEMO_COMMAND",
    "DEFENCE_STUDY",
    "DeckData",
    "deck_data",
    "missing_attacks",
    "not_applicable_on",
    "load_defence_study",
    "load_default_deck_data",
]

#: The command that (re)makes the precomputed results the deck reads on the default target.
DEMO_COMMAND = (
    "mia attack --target default --data default --attacks loss,secmi,pia,pian,sima "
    "--seed 0 --out runs/demo --store assets/demo_store"
)
#: The shipped study the defence slide shows: DP-SGD on the digits with 225 members (a clear no-DP leak).
DEFENCE_STUDY = STUDIES_DIR / "digits225_dp_epsilon" / "study.json"


@dataclass(frozen=True)
class DeckData:
    """Everything the deck is built from (plain arrays; no model needed).

    Attributes
    ----------
    ids : N sample ids
    images : (N, H, W, C) uint8
    is_member : (N,) bool
    results : attack name -> AttackResult on exactly these ids (may be empty)
    description : str, one line about the experiment (target and data)
    """

    ids: tuple[str, ...]
    images: np.ndarray
    is_member: np.ndarray
    results: Mapping[str, AttackResult]
    description: str = ""

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.shape[0] != n or np.shape(self.is_member) != (n,):
            raise ValueError(f"ids ({n}), images {self.images.shape} and is_member {np.shape(self.is_member)} disagree")
        for name, res in self.results.items():
            if tuple(res.ids) != tuple(self.ids):
                raise ValueError(f"the {name} result was computed on other images than the deck's")

    @property
    def n_members(self) -> int:
        return int(np.sum(self.is_member))

    @property
    def n_nonmembers(self) -> int:
        return int(len(self.ids) - np.sum(self.is_member))


def missing_attacks(results: Mapping[str, AttackResult], wanted: Sequence[str] = DEFAULT_ATTACKS) -> list[str]:
    """The names in ``wanted`` that have no result (their slides are left out)."""
    return [name for name in wanted if name not in results]


def not_applicable_on(target_spec: str, wanted: Sequence[str] = DEFAULT_ATTACKS) -> dict[str, str]:
    """The deck's attacks that do not apply to the session's target ``target_spec``, with why (attack name ->
    reason), read without loading the model: empty unless it is a local score-based VE-SDE folder
    (:func:`mia_core.score_sde.is_ve_folder`), on which only the attacks with a score-based form apply."""
    from mia_core.attacks import REGISTRY
    from mia_core.attacks.base import TARGET_KINDS
    from mia_core.score_sde import is_ve_folder

    if target_spec in ("", "default") or not is_ve_folder(target_spec):
        return {}
    out = {}
    for name in wanted:
        kinds = REGISTRY[name].target_kinds
        if "ve-sde" not in kinds:
            out[name] = f"needs {' or '.join(TARGET_KINDS.get(k, k) for k in kinds)}"
    return out


def deck_data(exp: Experiment, results: Mapping[str, AttackResult]) -> DeckData:
    """An experiment's images, membership and stored results (those on exactly its ids) as a :class:`DeckData`."""
    card = exp.target.card() if hasattr(exp.target, "card") else {}
    params = card.get("parameters") or card.get("n_parameters") or getattr(exp.target, "n_parameters", None)
    size = f"{exp.target.resolution}x{exp.target.resolution}"
    what = (
        f"a {params / 1e6:.1f} M-parameter diffusion model" if isinstance(params, (int, float)) else "a diffusion model"
    )
    description = f"{what} trained on {size} images of {exp.split.source or 'the data'}"
    return DeckData(
        tuple(exp.ids),
        exp.images.images,
        np.asarray(exp.is_member, dtype=bool),
        {n: r for n, r in results.items() if tuple(r.ids) == tuple(exp.ids)},
        description,
    )


def load_defence_study(path: str | Path = DEFENCE_STUDY) -> Any:
    """The shipped study of the defence slide (a :class:`mia_core.lab.study.Study`), None when it is not there."""
    if not Path(path).is_file():
        return None
    from mia_core.lab.study import load_study

    return load_study(path)


def load_default_deck_data(store: ResultStore | None = None) -> tuple[DeckData, list[str]]:
    """The default experiment's deck data from the store (the demo store is always read).

    Returns the data and the names of default attacks whose results are missing.
    """
    from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

    store = store or ResultStore(extra_readonly=[DEMO_STORE_DIR])
    exp = load_experiment("default", "default")
    results = stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=store)
    return deck_data(exp, results), missing_attacks(results)
