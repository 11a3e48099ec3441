"""Compare's "oracle vs transferred" table: every attack's TPR at the chosen FPR budget, both ways, and the
blind baseline's row.

* **oracle**: the threshold is chosen on the very scores it is measured on (all of the split): a best
  case (:func:`mia_core.calibration.oracle_tpr_at_fpr`).
* **transferred** (CopyMark's protocol): chosen on the calibration part, applied unchanged to the
  disjoint test part, which reports the TPR *and the achieved FPR* (:func:`mia_core.calibration.
  transferred_tpr_at_fpr`); the verdict pages use the same thresholds.
* **blind baseline**: a classifier that never queries the model (:mod:`mia_core.lab.blind`), fit on
  the calibration part; its AUC and oracle TPR are measured on the test part. It has no transferred
  row: its calibration-part scores are its own training predictions.

Nothing here computes a model or a metric beyond formatting; the page passes the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from mia_core import metrics as M
from mia_core.views.attack_info import short_name
from mia_core.views.results import budget_label

__all__ = ["BLIND_ROW", "oracle_transferred_table"]

#: Index of the blind baseline's row.
BLIND_ROW = "blind"


def _ci(interval: Any) -> str:
    return "" if interval is None else f"[{interval.low:.3f}, {interval.high:.3f}]"


def oracle_transferred_table(
    budget: float,
    metrics: Mapping[str, M.AttackMetrics],
    oracle: Mapping[str, Any],
    transferred: Mapping[str, Any],
    blind: Any = None,
    blind_oracle: Any = None,
    partitions: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per attack (then the blind baseline's) with oracle and transferred TPR at ``budget``.

    Parameters
    ----------
    budget : float
        The FPR budget of every rate (the page's selector).
    metrics : {attack name: AttackMetrics} (for the AUC and its interval)
    oracle : {attack name: mia_core.calibration.OracleRate} at ``budget``
    transferred : {attack name: mia_core.calibration.TransferredRate} at ``budget``
    blind : mia_core.lab.blind.BlindBaseline, optional
    blind_oracle : OracleRate of the blind scores on the test part at ``budget`` (with ``blind``)
    partitions : {attack name: mia_core.calibration.Partition}, optional
        The cut of each transferred rate (its part sizes are shown).

    Returns
    -------
    pandas.DataFrame
        Index: attack names, then :data:`BLIND_ROW`. Columns: ``attack``, ``AUC``, ``AUC 95% CI``,
        ``oracle TPR@<b>FPR``, its ``95% CI``, ``transferred TPR@<b>FPR``, its ``95% CI``,
        ``achieved FPR``, its ``95% CI``, ``calibration part`` and ``test part`` ("members + non-members").
        Rates are text: a number, or "n/a (needs >= M non-members)".
    """
    b = budget_label(budget)
    o_col, t_col = f"oracle TPR@{b}FPR", f"transferred TPR@{b}FPR"
    rows, index = [], []
    for name, mt in metrics.items():
        orate, trate = oracle[name], transferred.get(name)
        row = {
            "attack": short_name(name),
            "AUC": float(mt.auc),
            "AUC 95% CI": _ci(mt.auc_ci),
            o_col: M.format_metric(orate.tpr, budget),
            f"{o_col} 95% CI": _ci(orate.tpr_ci),
            t_col: "",
            f"{t_col} 95% CI": "",
            "achieved FPR": "",
            "achieved FPR 95% CI": "",
            "calibration part": "",
            "test part": "",
        }
        if trate is not None:
            row.update(
                {
                    t_col: M.format_metric(trate.tpr, budget),
                    f"{t_col} 95% CI": _ci(trate.tpr_ci),
                    "achieved FPR": M.format_metric(trate.fpr, budget),
                    "achieved FPR 95% CI": _ci(trate.fpr_ci),
                }
            )
            if partitions is not None and name in partitions:
                sizes = partitions[name].sizes()
                row["calibration part"] = f"{sizes['calibration_members']} + {sizes['calibration_nonmembers']}"
                row["test part"] = f"{sizes['test_members']} + {sizes['test_nonmembers']}"
        rows.append(row)
        index.append(name)
    if blind is not None:
        bm, sizes = blind.metrics, blind.partition.sizes()
        rows.append(
            {
                "attack": "blind baseline (images only, no model)",
                "AUC": float(bm.auc),
                "AUC 95% CI": _ci(bm.auc_ci),
                o_col: M.format_metric(None if blind_oracle is None else blind_oracle.tpr, budget),
                f"{o_col} 95% CI": _ci(None if blind_oracle is None else blind_oracle.tpr_ci),
                t_col: "— (fit on the calibration part)",
                f"{t_col} 95% CI": "",
                "achieved FPR": "",
                "achieved FPR 95% CI": "",
                "calibration part": f"{sizes['calibration_members']} + {sizes['calibration_nonmembers']}",
                "test part": f"{sizes['test_members']} + {sizes['test_nonmembers']}",
            }
        )
        index.append(BLIND_ROW)
    return pd.DataFrame(rows, index=pd.Index(index, name="name"))
