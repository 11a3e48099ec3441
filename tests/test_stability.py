"""Noise stability of a verdict (mia_core.lab.stability)."""

from __future__ import annotations

import numpy as np
import pytest

from mia_core.attacks import get_attack
from mia_core.lab.stability import rescore_seeds, stability


def test_stability_by_hand():
    s = stability([1.0, 2.0, 3.0, 4.0], 2.5, [0, 1, 2, 3])
    assert s.flagged_share == 0.5 and not s.stable and s.sentence().startswith("Unstable")
    s = stability([3.0, 4.0], 2.5, [0, 1])
    assert s.stable and "all above" in s.sentence()
    with pytest.raises(ValueError, match="one score per seed"):
        stability([1.0], 0.0, [0, 1])


def test_loss_varies_with_seed_pia_does_not(tiny_target):
    from mia_core.data import load_digits

    x0 = load_digits().to_unit_range()[0]
    seeds = [0, 1, 2]
    loss = rescore_seeds(tiny_target, x0, "img", get_attack("loss", {"sweep": []}), seeds)
    pia = rescore_seeds(tiny_target, x0, "img", get_attack("pia", {"sweep": []}), seeds)
    assert loss.shape == (3,) and np.ptp(loss) > 0  # fresh noise per seed
    assert np.ptp(pia) == pytest.approx(0.0, abs=1e-6)  # deterministic
    assert stability(pia, float(pia[0]) - 1.0, seeds).stable
    with pytest.raises(ValueError, match="one image"):
        rescore_seeds(tiny_target, np.zeros((2, 1, 8, 8)), "img", get_attack("pia"), seeds)
