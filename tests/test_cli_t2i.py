"""Issue 15, item 5: ``mia attack`` on a text-to-image target (a tiny random Stable Diffusion pipeline) with
captioned data: the conditioning per run, CLiD printed next to the other attacks, metrics.json records the mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core.cli import main


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def captioned_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    n = 10
    np.savez(
        path,
        images=rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8),
        ids=np.array([f"d{k}" for k in range(n)]),
        captions=np.array([f"a handwritten {w}" for w in ["zero", "one", "two", "three", "four"] * 2]),
        is_member=np.arange(n) < 5,
    )
    return path


def _attack(folder, npz, out, *extra):
    return main(
        [
            "attack",
            "--target",
            str(folder),
            "--data",
            str(npz),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-trace",
            "--bootstrap",
            "0",
            *extra,
        ]
    )


def test_attack_on_a_text_to_image_target_prints_clid_and_records_the_mode(
    tiny_t2i_folder, captioned_npz, tmp_path, capsys
):
    assert _attack(tiny_t2i_folder, captioned_npz, tmp_path / "o", "--attacks", "loss,pia,secmi,sima,clid") == 0
    printed = capsys.readouterr().out
    assert "prompts each image's own caption; no guidance" in printed
    rows = {line.split()[0] for line in printed.splitlines() if line.strip()}
    assert {"clid", "loss", "pia", "secmi", "sima"} <= rows  # CLiD in the table next to the others
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    for name in ("loss", "pia", "secmi", "sima", "clid"):
        assert metrics[name]["conditioning"]["mode"] == "caption", name
        assert metrics[name]["conditioning"]["captions"]  # the captions' digest is part of the run key
    assert metrics["clid"]["unet_calls_per_image"] == 15 and metrics["loss"]["unet_calls_per_image"] == 1
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["conditioning"]["mode"] == "caption" and "components" in run["target"]


def test_fixed_prompt_with_guidance_and_the_empty_prompt(tiny_t2i_folder, captioned_npz, tmp_path, capsys):
    code = _attack(
        tiny_t2i_folder,
        captioned_npz,
        tmp_path / "f",
        "--attacks",
        "loss",
        "--conditioning",
        "fixed",
        "--prompt",
        "a cat",
        "--guidance-scale",
        "2",
    )
    assert code == 0
    m = json.loads((tmp_path / "f" / "metrics.json").read_text())["loss"]
    assert m["conditioning"] == {"mode": "fixed", "prompt": "a cat", "guidance_scale": 2.0}
    assert m["unet_calls_per_image"] == 2  # guidance doubles the cost
    assert (
        _attack(tiny_t2i_folder, captioned_npz, tmp_path / "e", "--attacks", "loss,clid", "--conditioning", "empty")
        == 0
    )
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["loss"]["conditioning"]["mode"] == "empty"
    assert "nothing to reduce" in metrics["clid"]["not_applicable"]
    assert "clid: conditioning 'empty'" in capsys.readouterr().err


def test_conditioning_errors(tiny_t2i_folder, tmp_path, capsys):
    plain = tmp_path / "plain.npz"
    np.savez(plain, images=np.zeros((4, 8, 8, 1), np.uint8), is_member=np.array([1, 1, 0, 0]))
    assert _attack(tiny_t2i_folder, plain, tmp_path / "a", "--attacks", "loss") == 2
    assert "needs one caption per image, and the data has none" in capsys.readouterr().err
    assert main(["attack", "--out", str(tmp_path / "b"), "--device", "cpu", "--conditioning", "empty"]) == 2
    assert "--conditioning apply to text-to-image targets" in capsys.readouterr().err


def test_infer_set_scores_each_collection_with_its_own_captions(tiny_t2i_folder, tmp_path, capsys):
    """``mia infer-set`` on a text-to-image target: a collection with a metadata.jsonl is scored with its
    captions, one without with the empty prompt, and each line says which (before: refused, captions dropped)."""
    from PIL import Image

    from mia_core.attacks import Conditioning, get_attack
    from mia_core.data import load_source
    from mia_core.data.images import to_unit_range
    from mia_core.target import load_target

    rng = np.random.default_rng(1)
    words = ["one", "two", "three", "four"]

    def collection(name, with_captions):
        folder = tmp_path / name
        folder.mkdir()
        for k in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{name}{k}.png")
        if with_captions:
            rows = [
                json.dumps({"file_name": f"{name}{k}.png", "text": f"a handwritten {w}"}) for k, w in enumerate(words)
            ]
            (folder / "metadata.jsonl").write_text("\n".join(rows))
        return folder

    suspect, heldout = collection("s", True), collection("h", False)
    out = tmp_path / "result.json"
    argv = ["infer-set", "--target", str(tiny_t2i_folder), "--suspect", str(suspect), "--heldout", str(heldout)]
    argv += ["--attacks", "loss", "--device", "cpu", "--store", str(tmp_path / "store"), "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert f"--suspect {suspect}: All 4 images are scored with their own captions." in printed
    # one set under its captions, the other under the empty prompt: a warning that the test compares the prompts
    assert "WARNING: The suspect set is scored with their own captions and the held-out set with the empty prompt" in (
        captured.err
    )
    assert f"--heldout {heldout}: No captions: all 4 images are scored with the empty prompt" in printed
    result = json.loads(out.read_text())
    # the same means from Attack.run outside the CLI: the suspect set under its captions, the held-out set under ""
    target = load_target(str(tiny_t2i_folder), device="cpu")
    for folder, cond, key in (
        (suspect, Conditioning(), "mean_suspect"),
        (heldout, Conditioning("empty"), "mean_heldout"),
    ):
        images = load_source(str(folder))
        res = (
            get_attack("loss")
            .with_conditioning(cond)
            .run(target, to_unit_range(images.images), ids=images.ids, seed=0, captions=images.captions)
        )
        assert result[key] == pytest.approx(float(np.mean(res.scores)), rel=1e-6), key
