"""The learned attacks: SecMI-NN (Duan et al.) and quantile regression (Tang et al.).

Hand-made checks of the pinball loss and the bag's vote, the partition's guarantees, a guard that
no evaluation image ever reaches training, separation on the embedded default, and the CLI.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mia_core.attacks import REGISTRY
from mia_core.attacks.base import AttackResult, LearnedAttack, sum_power
from mia_core.attacks.learned import batches_per_epoch, fraction_count, hash_rank, partition_ids
from mia_core.attacks.qr import QuantileRegression, bag_decision, pinball_loss
from mia_core.attacks.secmi import SecMIStat
from mia_core.attacks.secmi_nn import SecMINN
from mia_core.metrics import evaluate


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def _labelled(n_members: int, n_nonmembers: int) -> tuple[tuple[str, ...], np.ndarray]:
    ids = tuple(f"m{i}" for i in range(n_members)) + tuple(f"n{i}" for i in range(n_nonmembers))
    return ids, np.array([True] * n_members + [False] * n_nonmembers)


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32)


# -- the pinball loss and the bag --------------------------------------------------------------------


def test_pinball_loss_hand_numbers():
    # u = y - q = [2, -1, 0, -4]; alpha = 0.1: rho = [0.1 * 2, 0.9 * 1, 0, 0.9 * 4] = [0.2, 0.9, 0, 3.6]
    q = torch.tensor([0.0, 1.0, 3.0, 5.0])
    y = torch.tensor([2.0, 0.0, 3.0, 1.0])
    assert pinball_loss(q, y, 0.1).item() == pytest.approx((0.2 + 0.9 + 0 + 3.6) / 4)
    # alpha = 0.5 is half the absolute error
    assert pinball_loss(q, y, 0.5).item() == pytest.approx(0.5 * (2 + 1 + 0 + 4) / 4)


def test_pinball_loss_is_minimised_at_the_quantile():
    y = torch.arange(100, dtype=torch.float32)  # 0 .. 99
    grid = torch.arange(0, 100, 0.5)
    losses = torch.stack([pinball_loss(torch.full_like(y, float(c)), y, 0.1) for c in grid])
    best = grid[losses == losses.min()]
    # Any constant between the 10th and 11th smallest values (9 and 10) is a 0.1-quantile.
    assert best.min().item() >= 9 and best.max().item() <= 10


def test_bag_decision_hand_made():
    # 3 regressors x 4 images; y: statistic (lower = member)
    q_bag = np.array(
        [
            [1.0, 0.0, 5.0, 2.0],
            [3.0, 0.0, 5.0, 2.0],
            [2.0, 9.0, 5.0, 2.0],
        ]
    )
    y = np.array([2.5, 1.0, 4.0, 2.0])
    score, votes, flagged = bag_decision(q_bag, y)
    # margins q - y: image 0: [-1.5, 0.5, -0.5] -> mean -0.5; votes 1/3 (only 3 > 2.5)
    # image 1: [-1, -1, 8] -> mean 2, votes 1/3: the mean margin says member, the vote does not
    # image 2: [1, 1, 1] -> 1, votes 1; image 3: [0, 0, 0] -> 0, votes 0 (y < q is strict)
    np.testing.assert_allclose(score, [-0.5, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(votes, [1 / 3, 1 / 3, 1.0, 0.0])
    assert flagged.tolist() == [False, False, True, False]
    # An even bag that splits 2-2 is not a majority.
    _, votes2, flagged2 = bag_decision(np.array([[3.0], [3.0], [1.0], [1.0]]), np.array([2.0]))
    assert votes2.tolist() == [0.5] and flagged2.tolist() == [False]
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        bag_decision(np.zeros((2, 3)), np.zeros(4))


# -- partitions ---------------------------------------------------------------------------------------


def test_partition_disjoint_sizes_deterministic_order_independent():
    ids, is_member = _labelled(898, 899)
    train, evaluation = partition_ids(ids, is_member, 0, member_fraction=0.2, nonmember_fraction=0.2)
    assert not set(train) & set(evaluation)
    assert sorted(train + evaluation) == sorted(ids)
    assert sum(i.startswith("m") for i in train) == 180 and sum(i.startswith("n") for i in train) == 180
    assert list(train) == [i for i in ids if i in set(train)]  # input order kept
    assert partition_ids(ids, is_member, 0, member_fraction=0.2, nonmember_fraction=0.2) == (train, evaluation)

    order = np.random.default_rng(1).permutation(len(ids))
    shuffled = partition_ids([ids[k] for k in order], is_member[order], 0, member_fraction=0.2, nonmember_fraction=0.2)
    assert set(shuffled[0]) == set(train) and set(shuffled[1]) == set(evaluation)

    other_seed = partition_ids(ids, is_member, 1, member_fraction=0.2, nonmember_fraction=0.2)
    assert set(other_seed[0]) != set(train)


def test_partition_rounding_and_attack_parts():
    assert fraction_count(0.2, 898) == 180 and fraction_count(0.5, 5) == 3 and fraction_count(0.2, 2) == 0
    assert hash_rank(["b", "a", "c"], 3) == hash_rank(["c", "b", "a"], 3)
    ids, is_member = _labelled(10, 11)
    public, evaluation = QuantileRegression().partition(ids, is_member, 0)
    assert len(public) == 6 and all(i.startswith("n") for i in public)  # round(0.5 * 11); no member
    assert set(evaluation) == set(ids) - set(public)
    train, _ = SecMINN().partition(ids, is_member, 0)
    assert sum(i.startswith("m") for i in train) == 2 and sum(i.startswith("n") for i in train) == 2
    with pytest.raises(ValueError, match="one entry per id"):
        partition_ids(ids, is_member[:-1], 0, member_fraction=0.2, nonmember_fraction=0.2)


def test_batches_per_epoch_folds_a_single_leftover():
    assert batches_per_epoch(360, 128) == 3 and batches_per_epoch(257, 128) == 2 and batches_per_epoch(258, 128) == 3
    assert batches_per_epoch(5, 128) == 1
    assert SecMINN().plan_steps(360) == (67, 201)  # 15 epochs = 45 steps, raised to reach min_steps=200
    assert SecMINN(min_steps=0).plan_steps(360) == (15, 45)
    assert SecMINN().plan_steps(10_000) == (15, 15 * 79)  # the published CIFAR setting is unchanged


# -- interface -----------------------------------------------------------------------------------------


def test_learned_attacks_refuse_run_without_labels(tiny_target):
    for attack in (SecMINN(), QuantileRegression()):
        assert isinstance(attack, LearnedAttack) and attack.learns and attack.training_data
        with pytest.raises(TypeError, match="needs membership labels"):
            attack.run(tiny_target, _random_images(4))


def test_params_are_validated():
    with pytest.raises(ValueError, match="train_fraction"):
        SecMINN(train_fraction=1.0)
    with pytest.raises(ValueError, match="arch"):
        SecMINN(arch="vgg")
    with pytest.raises(ValueError, match="alpha"):
        QuantileRegression(alpha=0.0)
    with pytest.raises(ValueError, match="n_models"):
        QuantileRegression(n_models=0)


def test_keep_returns_secmi_intermediates(tiny_target):
    x0 = _random_images(5)
    res = SecMIStat(trace=False).run(tiny_target, x0, keep=("x_tilde", "x_recon"), batch_size=2)
    assert res.extras["x_tilde"].shape == (5, 1, 8, 8) and res.extras["x_recon"].dtype == np.float32
    # The score is minus the sum of squares of their difference.
    t_error = sum_power(torch.from_numpy(res.extras["x_tilde"] - res.extras["x_recon"]), 2).double().numpy()
    np.testing.assert_allclose(-res.scores, t_error, rtol=1e-5)
    with pytest.raises(ValueError, match="no output"):
        SecMIStat(trace=False).run(tiny_target, x0, keep=("x_nope",))


# -- no evaluation image is ever trained on ---------------------------------------------------------------


FAST = {"secmi_nn": {"min_steps": 10, "epochs": 2}, "qr": {"n_models": 2, "epochs": 3, "batch_size": 8}}


@pytest.mark.parametrize("cls", [SecMINN, QuantileRegression])
def test_training_never_sees_an_evaluation_image(cls, tiny_target):
    """Poison every evaluation image with NaN: training must be bit-for-bit the same and finite."""
    ids, is_member = _labelled(12, 14)
    x0 = _random_images(len(ids), seed=3)
    attack = cls(**FAST[cls.name])
    clean = attack.fit_score(tiny_target, x0, ids, is_member, seed=5)
    assert not set(clean.ids) & set(clean.train_ids)
    assert set(clean.ids) | set(clean.train_ids) == set(ids)

    poisoned = x0.copy()
    for k, i in enumerate(ids):
        if i in set(clean.ids):
            poisoned[k] = np.nan
    dirty = attack.fit_score(tiny_target, poisoned, ids, is_member, seed=5)
    assert dirty.train_ids == clean.train_ids and dirty.ids == clean.ids
    curve_clean, curve_dirty = clean.info["train_loss_per_epoch"], dirty.info["train_loss_per_epoch"]
    assert np.isfinite(np.asarray(curve_clean, dtype=float)).all()
    assert curve_dirty == curve_clean
    assert np.isnan(dirty.scores).all()  # the poison did reach scoring, so it would have shown in training


def test_fit_receives_only_training_rows(tiny_target, monkeypatch):
    """A spy on the training loop: every row it gets is a training-part feature."""
    import mia_core.attacks.secmi_nn as secmi_nn_module

    ids, is_member = _labelled(10, 10)
    x0 = _random_images(len(ids), seed=4)
    seen = []
    real_fit = secmi_nn_module.fit

    def spy(model, inputs, targets, *args, **kwargs):
        seen.append((inputs.clone(), targets.clone()))
        return real_fit(model, inputs, targets, *args, **kwargs)

    monkeypatch.setattr(secmi_nn_module, "fit", spy)
    res = SecMINN(min_steps=2, epochs=1).fit_score(tiny_target, x0, ids, is_member, seed=0)
    ((inputs, targets),) = seen
    train_rows = [ids.index(i) for i in res.train_ids]
    _, x_tilde, x_recon = secmi_nn_module.secmi_intermediates(tiny_target, x0, ids, t_sec=100, k=10, seed=0)
    np.testing.assert_allclose(inputs.numpy(), np.abs(x_tilde - x_recon)[train_rows], rtol=1e-6)
    assert targets.tolist() == [float(is_member[r]) for r in train_rows]


def test_run_attacks_needs_labels_for_learned(tiny_target):
    from mia_core.lab.runs import run_attacks

    ids, is_member = _labelled(3, 3)
    with pytest.raises(ValueError, match="pass is_member"):
        run_attacks(tiny_target, _random_images(6), ids, "imgs", [SecMINN()])


# -- on the embedded default (a target that memorised its members) ---------------------------------------


@pytest.fixture(scope="module")
def default_150():
    from mia_core.lab.experiment import load_experiment

    return load_experiment("default", "default", device="cpu", limit=150)


@pytest.mark.slow
@pytest.mark.parametrize("cls", [SecMINN, QuantileRegression])
def test_beats_chance_on_the_default(cls, default_150):
    """Measured (150 + 150 images, seed 0, one CPU thread): secmi_nn AUC 0.925 in 3.6 s (trained on
    30 + 30, scored on 120 + 120), qr 0.952 in 6 s (75 public non-members; 150 + 75 scored)."""
    exp = default_150
    res = cls().fit_score(exp.target, exp.x0, exp.ids, exp.is_member, seed=0)
    assert not set(res.ids) & set(res.train_ids)
    labels = exp.labels_for(res.ids)
    auc = evaluate(res.scores, labels, n_bootstrap=0).auc
    assert auc > 0.8, f"{cls.name} AUC {auc:.3f} on the default"
    if cls is QuantileRegression:
        vote = res.info["vote_operating_point"]
        assert vote["tpr"] > 2 * vote["fpr"]  # the vote is informative too
        assert res.extras["threshold"].shape == (len(res.ids),) and (res.extras["threshold"] > 0).all()
        flagged = res.extras["member_votes"] > 0.5
        assert vote["true_positives"] == int(flagged[labels].sum())


# -- store and CLI -----------------------------------------------------------------------------------------


def test_learned_result_store_round_trip(tmp_path):
    from mia_core.lab.runs import ResultStore, RunKey

    ids, is_member = _labelled(4, 4)
    res = AttackResult(
        attack="qr",
        ids=ids[:6],
        scores=np.linspace(-1, 1, 6),
        trace_timesteps=np.zeros(0, dtype=np.int64),
        trace=np.zeros((6, 0)),
        trace_label="",
        unet_calls_per_image=11,
        seconds=1.5,
        params={"alpha": 0.01},
        train_ids=ids[6:],
        evaluated_on="all 4 members and 2 held-out non-members",
        extras={"threshold": np.arange(6.0), "member_votes": np.full(6, 0.5)},
        info={"vote_operating_point": {"tpr": 0.5}},
    )
    store = ResultStore(tmp_path)
    key = RunKey.of("t", "imgs", QuantileRegression(), 0, ids=ids, is_member=is_member)
    store.put(key, res)
    back = store.get(key)
    assert back.ids == res.ids and back.train_ids == res.train_ids and back.evaluated_on == res.evaluated_on
    assert back.info == res.info and set(back.extras) == {"threshold", "member_votes"}
    np.testing.assert_array_equal(back.extras["threshold"], res.extras["threshold"])
    np.testing.assert_array_equal(back.scores, res.scores)


def test_cli_attack_with_learned_attacks(tmp_path, monkeypatch, capsys):
    from mia_core.cli import main

    monkeypatch.setitem(REGISTRY, "secmi_nn", SecMINN)
    monkeypatch.setitem(REGISTRY, "qr", QuantileRegression)
    out = tmp_path / "run"
    code = main(
        [
            "attack",
            "--attacks",
            "secmi_nn,qr",
            "--limit",
            "30",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--bootstrap",
            "0",
            "--params",
            json.dumps({"qr": {"n_models": 3}}),
        ]
    )
    assert code == 0
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    assert list(scores.columns) == ["id", "is_member", "secmi_nn", "secmi_nn_part", "qr", "qr_part"]
    assert len(scores) == 60
    for name in ("secmi_nn", "qr"):
        evaluated = scores[f"{name}_part"] == "eval"
        assert set(scores[f"{name}_part"]) == {"train", "eval"}
        assert (scores.loc[~evaluated, name] == "").all()  # no score where the attack trained
        assert np.isfinite(scores.loc[evaluated, name].astype(float)).all()
    assert (scores.loc[scores["qr_part"] == "train", "is_member"] == 0).all()  # public non-members only
    assert (scores["secmi_nn_part"] == "train").sum() == 12  # 20 % of 30 + 20 % of 30

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["secmi_nn"]["evaluated_on"].startswith("held-out 80 %: 24 members, 24 non-members")
    assert metrics["secmi_nn"]["n_members"] == 24 and metrics["qr"]["n_nonmembers"] == 15
    assert metrics["qr"]["info"]["vote_operating_point"]["n_nonmembers"] == 15
    traces = np.load(out / "traces.npz")
    assert traces["qr_ids"].shape == (45,) and traces["qr_threshold"].shape == (45,)
    assert traces["secmi_nn_trace"].shape == (48, 0)
    printed = capsys.readouterr().out
    assert "secmi_nn: evaluated on held-out 80 %" in printed and "majority vote at target FPR 0.01" in printed


def test_secmi_nn_then_qr_share_one_secmi_pass(tiny_target, monkeypatch):
    """SecMI is deterministic: the second learned attack on the same images reuses the first's pass."""
    calls = []
    real_compute = SecMIStat.compute

    def counting(self, target, x0, noise=None):
        calls.append(x0.shape[0])
        return real_compute(self, target, x0, noise)

    monkeypatch.setattr(SecMIStat, "compute", counting)
    ids, is_member = _labelled(12, 14)
    x0 = _random_images(len(ids), seed=11)
    first = SecMINN(**FAST["secmi_nn"]).fit_score(tiny_target, x0, ids, is_member, seed=0)
    assert sum(calls) == len(ids)
    second = QuantileRegression(**FAST["qr"]).fit_score(tiny_target, x0, ids, is_member, seed=0)
    assert sum(calls) == len(ids)  # no new UNet pass
    shared = set(first.ids) & set(second.ids)
    t_first = dict(zip(first.ids, first.extras["t_error"]))
    t_second = dict(zip(second.ids, second.extras["t_error"]))
    assert shared and all(t_first[i] == t_second[i] for i in shared)
    # other images (or another SecMI grid) are computed afresh
    QuantileRegression(**FAST["qr"]).fit_score(tiny_target, _random_images(len(ids), seed=12), ids, is_member, seed=0)
    assert sum(calls) == 2 * len(ids)


# -- the shared preamble of fit_score ---------------------------------------------------------------


def test_fit_score_prepares_checked_inputs_once_for_every_learned_attack(tiny_target):
    """LearnedAttack.fit_score checks the images, partitions once and hands LearnedInputs to fit_and_score."""
    from dataclasses import dataclass

    from mia_core.attacks.base import LearnedInputs

    @dataclass(frozen=True)
    class NoParams:
        pass

    seen: list[LearnedInputs] = []

    class FirstHalf(LearnedAttack):
        name = "first_half"
        Params = NoParams

        def unet_calls(self, trace: bool = True) -> int:
            return 0

        def partition(self, ids, is_member, seed):
            return tuple(ids[: len(ids) // 2]), tuple(ids[len(ids) // 2 :])

        def fit_and_score(self, target, data):
            seen.append(data)
            return self.learned_result(
                data,
                -data.labels[data.eval_rows].astype(float),
                evaluated_on="second half",
                extras={},
                info={"n": len(data.ids)},
            )

    x0 = _random_images(6)  # (6, 1, 8, 8): the tiny target's input
    res = FirstHalf().fit_score(tiny_target, x0, [1, 2, 3, 4, 5, 6], np.array([1, 0, 1, 0, 1, 0]), seed=3)
    (data,) = seen
    assert data.ids == ("1", "2", "3", "4", "5", "6") and data.labels.dtype == bool and data.seed == 3
    assert data.train_rows.tolist() == [0, 1, 2] and data.eval_rows.tolist() == [3, 4, 5]
    assert data.counts(data.eval_rows) == (1, 2)
    assert res.ids == ("4", "5", "6") and res.train_ids == ("1", "2", "3") and res.scores.tolist() == [-0.0, -1.0, -0.0]
    assert res.evaluated_on == "second half" and res.info == {"n": 6} and res.seconds >= 0
    with pytest.raises(ValueError, match="images must have shape"):
        FirstHalf().fit_score(tiny_target, x0[:, :, :2], [1, 2, 3, 4, 5, 6], np.ones(6, bool))
