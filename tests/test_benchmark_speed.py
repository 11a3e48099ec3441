"""The speed benchmark's CPU path (the GPU numbers in the README come from the same script)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def _load():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_benchmark_on_the_default_target(tmp_path):
    speed = _load()
    code = speed.main(
        [
            "--model",
            "default",
            "--images",
            "48",
            "--batches",
            "64",
            "--seconds",
            "0.05",
            "--device",
            "cpu",
            "--check",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "speed.json").read_text())
    assert report["device"].startswith("CPU")
    assert {r["attack"] for r in report["attacks"]} == {"loss", "pia", "secmi"}
    for row in report["attacks"]:
        assert row["images_per_s"] > 0 and row["efficiency"] > 0
        # float32 on the CPU: our batched attacks give the papers' per-timestep scores
        assert row["agrees"] and row["spearman"] > 0.9999 and row["auc_diff"] < 1e-6
    assert [r["unet_calls"] for r in report["attacks"]] == [1, 2, 11]
    table = (tmp_path / "speed.md").read_text()
    assert "| secmi | eager | fp32 |" in table


def test_paper_style_baseline_matches_the_formulas(tiny_target):
    """The baseline is an independent re-implementation: check it against our attacks directly."""
    import numpy as np
    import torch

    from mia_core.attacks import get_attack
    from mia_core.noise import per_image_noise

    speed = _load()
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    ids = [str(i) for i in range(6)]
    noise = per_image_noise(ids, 0, 1, (1, 8, 8))
    for name, params in (("loss", {"sweep": []}), ("pia", {"sweep": []}), ("secmi", {"trace": False})):
        ours = get_attack(name, params).run(tiny_target, x0.numpy(), ids=ids).scores
        theirs = speed.paper_style_scores(
            name, tiny_target.unet, tiny_target.schedule, x0, noise, torch.device("cpu"), batch=4
        )
        np.testing.assert_allclose(ours, theirs, rtol=1e-4)
