"""mia_core.views.target: the Target page's memorisation figure (from the engine's Memorisation)."""

from __future__ import annotations

import numpy as np

from mia_core import sampling
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR
from mia_core.views.target import memorisation_figure


def test_memorisation_figure_shows_both_distances_and_the_heldout_median():
    rng = np.random.default_rng(1)
    members = rng.integers(0, 256, size=(6, 4, 4, 1), dtype=np.uint8)
    nonmembers = rng.integers(0, 256, size=(5, 4, 4, 1), dtype=np.uint8)
    samples = np.stack([members[2], nonmembers[4]])
    mem = sampling.memorisation(samples, members, nonmembers, [f"m{i}" for i in range(6)],
                                [f"n{i}" for i in range(5)])
    fig = memorisation_figure(mem)
    assert [d.name for d in fig.data] == ["nearest member", "nearest non-member"]
    assert [d.marker.color for d in fig.data] == [MEMBER_COLOR, NONMEMBER_COLOR]
    np.testing.assert_allclose(fig.data[0].y, mem.member_distance)
    assert list(fig.data[1].customdata) == list(mem.nonmember_id)
    assert fig.layout.shapes[0].y0 == mem.heldout_median
