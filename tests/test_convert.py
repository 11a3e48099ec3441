"""mia convert: the papers' pytorch-ddpm checkpoints (SecMI / PIA) -> a diffusers folder.

The shared fixture (../shared/fixtures/papers_checkpoint) holds a checkpoint in exactly the papers'
layout with its reference outputs; tests that need it skip when it is absent.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mia_core.cli import main
from mia_core.convert import (
    ConvertError,
    build_unet,
    convert_checkpoint,
    infer_architecture,
    load_checkpoint,
    pick_state_dict,
    read_conversion,
    sinusoidal_table,
)
from mia_core.target import load_target

PAPERS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "papers_checkpoint"
CKPT = PAPERS_DIR / "ckpt-step5000.pt"


@pytest.fixture(scope="module")
def papers_dir() -> Path:
    if not (CKPT.is_file() and (PAPERS_DIR / "reference_outputs.npz").is_file()):
        pytest.skip(
            "../shared/fixtures/papers_checkpoint not found: the papers' checkpoint fixture is not available here"
        )
    return PAPERS_DIR


@pytest.fixture(scope="module")
def reference(papers_dir):
    return dict(np.load(papers_dir / "reference_outputs.npz"))


@pytest.fixture(scope="module")
def converted(papers_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "papers_ddpm"
    assert main(["convert", str(CKPT), "--out", str(out)]) == 0
    return out


def test_cli_convert_reproduces_the_ema_reference_outputs(converted, reference, capsys):
    target = load_target(str(converted), device="cpu")
    eps = target.eps(torch.from_numpy(reference["x"]), torch.from_numpy(reference["t"])).numpy()
    np.testing.assert_allclose(eps, reference["eps_ema"], rtol=0, atol=2e-5)
    # the raw (non-EMA) weights give other outputs: a converter taking them would fail above
    assert np.abs(eps - reference["eps_net"]).max() > 0.1
    assert target.schedule.num_timesteps == 1000
    abar = target.schedule.alphas_cumprod
    assert float(abar[0]) == pytest.approx(1 - 1e-4) and float(abar[99]) == pytest.approx(0.897, abs=1e-3)
    record = read_conversion(converted)
    assert record["weights"] == "ema" and record["step"] == 5000
    assert record["architecture"]["ch_mult"] == [1, 2, 2, 2] and record["architecture"]["attn"] == [1]
    assert (converted / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(converted.rglob("*.bin")) and not list(converted.rglob("*.pt"))


def test_net_weights_reproduce_the_raw_outputs(papers_dir, reference):
    ckpt = load_checkpoint(CKPT)
    state = pick_state_dict(ckpt, "net")
    arch = infer_architecture(state, x_T=ckpt["x_T"])
    unet = build_unet(state, arch, "learned")
    with torch.no_grad():
        eps = unet(torch.from_numpy(reference["x"]), torch.from_numpy(reference["t"])).sample.numpy()
    np.testing.assert_allclose(eps, reference["eps_net"], rtol=0, atol=2e-5)


def test_architecture_is_read_from_the_shapes_and_flags_are_checked(papers_dir):
    ckpt = load_checkpoint(CKPT)
    state = pick_state_dict(ckpt)
    arch = infer_architecture(state, x_T=ckpt["x_T"])
    assert (arch.ch, arch.ch_mult, arch.attn, arch.num_res_blocks) == (32, (1, 2, 2, 2), (1,), 2)
    assert (arch.num_timesteps, arch.resolution, arch.in_channels, arch.dropout) == (1000, 32, 3, 0.1)
    # flags that agree are fine; one that disagrees is named
    infer_architecture(state, x_T=ckpt["x_T"], ch=32, ch_mult=(1, 2, 2, 2), attn=(1,), num_res_blocks=2)
    with pytest.raises(ConvertError, match="ch=128 was given.*ch=32"):
        infer_architecture(state, x_T=ckpt["x_T"], ch=128)
    with pytest.raises(ConvertError, match="attn=1,2 was given"):
        infer_architecture(state, x_T=ckpt["x_T"], attn=(1, 2))


def test_cli_flag_mismatch_is_one_clear_error(papers_dir, tmp_path, capsys):
    assert main(["convert", str(CKPT), "--out", str(tmp_path / "x"), "--ch-mult", "1,2,2"]) == 2
    err = capsys.readouterr().err
    assert "ch_mult=1,2,2 was given" in err and "Traceback" not in err


def test_formula_table_converts_to_diffusers_sin_cos_embedding(papers_dir, tmp_path):
    """A trained checkpoint's table equals the sin/cos formula: the converter then drops it and
    diffusers computes it (real-valued t works); outputs equal those with the table kept. Keys with a
    ``module.`` prefix (``--parallel`` training) are stripped."""
    ckpt = load_checkpoint(CKPT)
    state = pick_state_dict(ckpt)
    state["time_embedding.timembedding.0.weight"] = sinusoidal_table(1000, 32)
    path = tmp_path / "parallel.pt"
    torch.save(
        {"ema_model": {f"module.{k}": v for k, v in state.items()}, "net_model": {}, "step": 7, "x_T": ckpt["x_T"]},
        path,
    )
    result = convert_checkpoint(path, tmp_path / "out")
    assert result.time_embedding == "positional" and result.time_table_deviation < 1e-6
    target = load_target(str(tmp_path / "out"), device="cpu")
    assert target.unet.config.time_embedding_type == "positional"
    assert target.unet.config.flip_sin_to_cos is False and target.unet.config.freq_shift == 0
    lookup = build_unet(state, infer_architecture(state, x_T=ckpt["x_T"]), "learned")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    t = torch.tensor([0, 10, 500, 999])
    with torch.no_grad():
        expected = lookup(x, t).sample
    np.testing.assert_allclose(target.eps(x, t).numpy(), expected.numpy(), rtol=0, atol=2e-5)
    # float timesteps reach the sin/cos embedding (the likelihood attack needs them)
    assert torch.isfinite(target.eps_float_t(x, torch.tensor([0.5, 10.25, 500.0, 998.5]))).all()


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"ema_model": {"head.weight": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(ConvertError, match="refusing to load .*evil.pt.*tensors and plain containers"):
        load_checkpoint(path)
    assert main(["convert", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()
    # and a plain (non-torch) pickle too
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(ConvertError):
        load_checkpoint(plain)
    assert not marker.exists()


def test_not_a_pytorch_ddpm_checkpoint_is_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"model": {"conv.weight": torch.zeros(2)}}, path)
    with pytest.raises(ConvertError, match="no 'ema_model' entry"):
        pick_state_dict(load_checkpoint(path))
    with pytest.raises(ConvertError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_two_commands_reproduce_the_papers_setting(converted, tmp_path, capsys):
    """mia convert (done by the fixture) then mia attack on SecMI's split over CIFAR-like images.

    The images stand in for CIFAR-10's training set: 8 random 32x32 images whose ``orig_index``
    are the first 4 member and first 4 non-member indices of the real split file.
    """
    split_file = PAPERS_DIR / "CIFAR10_train_ratio0.5.npz"
    with np.load(split_file) as split:
        members, nonmembers = split["mia_train_idxs"][:4], split["mia_eval_idxs"][:4]
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "cifar_part.npz", images=images, orig_index=np.concatenate([members, nonmembers]))
    out = tmp_path / "run"
    code = main(
        [
            "attack",
            "--target",
            str(converted),
            "--data",
            f"{split_file}@{tmp_path / 'cifar_part.npz'}",
            "--attacks",
            "pia,loss",
            "--no-trace",
            "--bootstrap",
            "10",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 members, 4 non-members" in printed
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pia"]["n_members"] == 4 and metrics["pia"]["n_nonmembers"] == 4
    run = json.loads((out / "run.json").read_text())
    assert run["data"]["source"] == str(tmp_path / "cifar_part.npz")


def test_mia_info_says_what_was_converted(converted, capsys):
    assert main(["info", "--target", str(converted), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "converted from" in printed and "ckpt-step5000.pt (ema weights, step 5000" in printed
    assert "time embedding learned" in printed
