"""mia_core.views.target: the Target page's memorisation figure (from the engine's Memorisation)."""

from __future__ import annotations

import numpy as np

from mia_core.sampling import Memorisation
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR
from mia_core.views.target import memorisation_figure


def test_memorisation_figure_shows_both_distances_and_the_heldout_median():
    mem = Memorisation(
        member_index=np.array([2, 0]),
        nonmember_index=np.array([1, 4]),
        member_id=("m2", "m0"),
        nonmember_id=("n1", "n4"),
        member_distance=np.array([0.0, 30.0]),
        nonmember_distance=np.array([55.0, 0.0]),
        heldout_distance=np.array([40.0, 50.0, 70.0]),
    )
    fig = memorisation_figure(mem)
    assert [d.name for d in fig.data] == ["nearest member", "nearest non-member"]
    assert [d.marker.color for d in fig.data] == [MEMBER_COLOR, NONMEMBER_COLOR]
    np.testing.assert_allclose(fig.data[0].y, [0.0, 30.0])
    np.testing.assert_allclose(fig.data[1].y, [55.0, 0.0])
    assert list(fig.data[0].customdata) == ["m2", "m0"] and list(fig.data[1].customdata) == ["n1", "n4"]
    assert fig.layout.shapes[0].y0 == 50.0  # the held-out median
