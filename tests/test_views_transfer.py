"""mia_core.views.transfer: Compare's oracle vs transferred table at a budget, with the blind baseline's row."""

from __future__ import annotations

import numpy as np

from mia_core import metrics as M
from mia_core.calibration import calibration_partition, oracle_tpr_at_fpr, transferred_tpr_at_fpr
from mia_core.lab.blind import blind_baseline
from mia_core.views.transfer import BLIND_ROW, oracle_transferred_table


def test_table_puts_oracle_beside_transferred_and_ends_with_the_blind_row():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    scores = rng.normal(labels * 2.0, 1.0)
    images = rng.integers(0, 256, size=(300, 8, 8, 1), dtype=np.uint8)
    part = calibration_partition(labels)
    budget = 0.05
    rate = transferred_tpr_at_fpr(scores, labels, part, budget, n_bootstrap=20)
    oracle = oracle_tpr_at_fpr(scores, labels, budget, n_bootstrap=20)
    blind = blind_baseline(images, labels, partition=part, n_bootstrap=20)
    table = oracle_transferred_table(
        budget,
        {"pia": M.evaluate(scores, labels, n_bootstrap=20)},
        {"pia": oracle},
        {"pia": rate},
        blind=blind,
        blind_oracle=oracle_tpr_at_fpr(blind.scores, blind.is_member, budget, n_bootstrap=0),
        partitions={"pia": part},
    )
    assert list(table.index) == ["pia", BLIND_ROW]
    cols = list(table.columns)
    assert cols[:5] == ["attack", "AUC", "AUC 95% CI", "oracle TPR@5%FPR", "oracle TPR@5%FPR 95% CI"]
    assert cols[5:9] == ["transferred TPR@5%FPR", "transferred TPR@5%FPR 95% CI", "achieved FPR", "achieved FPR 95% CI"]
    row = table.loc["pia"]
    assert row["oracle TPR@5%FPR"] == f"{oracle.tpr:.3f}" and row["transferred TPR@5%FPR"] == f"{rate.tpr:.3f}"
    assert row["achieved FPR"] == f"{rate.fpr:.3f}" and row["achieved FPR 95% CI"].startswith("[")
    assert row["calibration part"] == "75 + 75" and row["test part"] == "75 + 75"
    b = table.loc[BLIND_ROW]
    assert b["attack"].startswith("blind baseline") and b["AUC"] == blind.metrics.auc
    assert b["transferred TPR@5%FPR"].startswith("—") and b["test part"] == "75 + 75"
    # a budget the calibration part cannot resolve is n/a, never a number
    na = oracle_transferred_table(
        0.001,
        {"pia": M.evaluate(scores, labels, n_bootstrap=0)},
        {"pia": oracle_tpr_at_fpr(scores, labels, 0.001)},
        {"pia": transferred_tpr_at_fpr(scores, labels, part, 0.001, n_bootstrap=0)},
    )
    assert na.loc["pia", "transferred TPR@0.1%FPR"].startswith("n/a") and list(na.index) == ["pia"]
