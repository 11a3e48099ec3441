"""Fault injection: each way the lab can be hurt, done on purpose, and what it must do instead.

Store: truncated and garbage entries are reported once, quarantined (never deleted) and
recomputed; a read-only store still serves reads and says so before a run; a full disk (a
failing write) loses no computed result. CLI: bad arguments stop before the first UNet call
with exit code 2; a late failure still writes the attacks that finished; ``kill -9`` then a
rerun gives identical scores. Targets: malformed folders give one-line messages. Access: paths
outside the allow-list are refused without saying whether they exist. Uploads: a burst at the
pixel limit stays within a measured memory bound.

Tests run as root, where chmod does not stop writes: a read-only store is simulated by a store
path under a regular file (every write fails with NotADirectoryError) or by a failing write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mia_core.attacks import get_attack
from mia_core.lab import runs
from mia_core.lab.runs import ResultStore, RunKey, run_attacks


@pytest.fixture(autouse=True, scope="module")
def _one_thread(single_thread):
    yield


def _images(n: int = 6) -> tuple[np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32), tuple(f"img-{i}" for i in range(n))


ATTACKS = lambda: [get_attack("sima", {"sweep": [0, 100]}), get_attack("loss", {"sweep": [200]})]  # noqa: E731


def _count_calls(target, monkeypatch) -> list[int]:
    calls: list[int] = []
    original = target.eps
    monkeypatch.setattr(target, "eps", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def _stored(tiny_target, tmp_path):
    x0, ids = _images()
    store = ResultStore(tmp_path / "store")
    first = run_attacks(tiny_target, x0, ids, "imgs", ATTACKS(), seed=1, store=store)
    return store, x0, ids, first


# -- the store heals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage", ["truncate_npz", "garbage_npz", "garbage_meta", "meta_list", "meta_missing_key", "flip_byte"]
)
def test_damaged_entry_is_quarantined_reported_once_and_recomputed(tiny_target, tmp_path, monkeypatch, damage):
    store, x0, ids, first = _stored(tiny_target, tmp_path)
    key = RunKey.of(tiny_target.fingerprint, "imgs", ATTACKS()[0], 1)
    folder = store.root / key.digest()
    npz, meta = folder / "result.npz", folder / "meta.json"
    if damage == "truncate_npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "garbage_npz":
        npz.write_bytes(b"not a zip file at all")
    elif damage == "garbage_meta":
        meta.write_text("{this is not json")
    elif damage == "meta_list":
        meta.write_text("[1, 2, 3]")
    elif damage == "meta_missing_key":
        meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items() if k != "attack"}))
    else:  # one flipped byte inside the compressed data: still a zip, but not what was written
        data = bytearray(npz.read_bytes())
        data[len(data) // 3] ^= 0xFF
        npz.write_bytes(bytes(data))

    notices: list[str] = []
    store.on_problem = notices.append
    assert not store.has(key)  # never "already stored" for a damaged entry
    assert store.get(key) is None
    assert len(notices) == 1 and str(folder) in notices[0], notices
    assert not folder.exists()
    moved = list((store.root / "quarantine").iterdir())
    assert len(moved) == 1 and {p.name for p in moved[0].iterdir()} == {"result.npz", "meta.json"}
    assert len(store.entries()) == 1  # the other run only; the quarantine is not an entry

    calls = _count_calls(tiny_target, monkeypatch)
    again = run_attacks(tiny_target, x0, ids, "imgs", ATTACKS(), seed=1, store=store)
    assert calls, "the damaged run must be recomputed"
    np.testing.assert_array_equal(again["sima"].scores, first["sima"].scores)
    assert store.get(key) is not None and len(notices) == 1  # healed; no second report


def test_garbage_meta_of_an_unrelated_run_does_not_break_listing_or_reads(tiny_target, tmp_path):
    store, x0, ids, first = _stored(tiny_target, tmp_path)
    junk = store.root / "0123456789abcdef0123"
    junk.mkdir()
    (junk / "meta.json").write_text("\x00\x01garbage")
    (junk / "result.npz").write_bytes(b"")
    stale_tmp = store.root / ".tmp-killed"
    stale_tmp.mkdir()
    (stale_tmp / "meta.json").write_text("{}")
    notices: list[str] = []
    store.on_problem = notices.append
    entries = store.entries()
    assert sorted(e["attack"] for e in entries) == ["loss", "sima"]
    assert len(notices) == 1 and str(junk) in notices[0]
    assert (store.root / runs.QUARANTINE_DIR).is_dir() and not junk.exists()
    assert store.entries() and len(notices) == 1


def test_entries_without_checksum_are_fully_loaded_before_use(tiny_target, tmp_path):
    """Entries written before checksums (the shipped demo store) are verified by a guarded full load."""
    store, x0, ids, first = _stored(tiny_target, tmp_path)
    key = RunKey.of(tiny_target.fingerprint, "imgs", ATTACKS()[1], 1)
    meta_path = store.root / key.digest() / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["result_sha256"]
    meta_path.write_text(json.dumps(meta))
    assert store.get(key) is not None  # an old, sound entry still loads
    npz = store.root / key.digest() / "result.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    assert not store.has(key)


def test_damaged_entry_in_a_readonly_layer_is_skipped_and_reported(tiny_target, tmp_path):
    store, x0, ids, first = _stored(tiny_target, tmp_path)
    key = RunKey.of(tiny_target.fingerprint, "imgs", ATTACKS()[0], 1)
    npz = store.root / key.digest() / "result.npz"
    npz.write_bytes(npz.read_bytes()[:50])
    notices: list[str] = []
    layered = ResultStore(tmp_path / "user", extra_readonly=[store.root], on_problem=notices.append)
    assert layered.get(key) is None and layered.get(key) is None
    assert len(notices) == 1 and str(npz.parent) in notices[0]
    assert npz.exists()  # a read-only layer is never modified


def _unwritable_store(tmp_path) -> ResultStore:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return ResultStore(blocker / "store")


def test_readonly_store_serves_reads_and_says_it_cannot_save(tiny_target, tmp_path):
    store, x0, ids, first = _stored(tiny_target, tmp_path)
    assert store.write_problem() is None
    ro = _unwritable_store(tmp_path)
    problem = ro.write_problem()
    assert problem and "cannot be saved" in problem and str(ro.root) in problem
    layered = ResultStore(ro.root, extra_readonly=[store.root])
    assert layered.get(RunKey.of(tiny_target.fingerprint, "imgs", ATTACKS()[0], 1)) is not None


def test_full_disk_keeps_computed_results_and_leaves_no_partial_entry(tiny_target, tmp_path, monkeypatch):
    x0, ids = _images()
    notices: list[str] = []
    store = ResultStore(tmp_path / "store", on_problem=notices.append)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runs.np, "savez_compressed", disk_full)
    results = run_attacks(tiny_target, x0, ids, "imgs", ATTACKS(), seed=1, store=store)
    assert sorted(results) == ["loss", "sima"] and all(np.isfinite(r.scores).all() for r in results.values())
    assert len(notices) == 2 and all("No space left" in n and "not saved" in n for n in notices)
    assert [p.name for p in store.root.iterdir()] == []  # no temporary folder left behind


# -- the app with a damaged store -----------------------------------------------------------------


@pytest.fixture()
def damaged_store(tmp_path, monkeypatch):
    """The demo results copied into a writable store (the shipped layer emptied), one result.npz
    truncated (sima) and one unrelated entry with a garbage meta.json."""
    import shutil

    from mia_core import paths

    store = tmp_path / "store"
    shutil.copytree(paths.DEMO_STORE_DIR, store)
    empty = tmp_path / "no-demo"
    empty.mkdir()
    monkeypatch.setattr(paths, "DEMO_STORE_DIR", empty)
    sima = next(m.parent for m in store.glob("*/meta.json") if json.loads(m.read_text())["attack"] == "sima")
    npz = sima / "result.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    junk = store / "ffffffffffffffffffff"
    junk.mkdir()
    (junk / "meta.json").write_text("{garbage")
    (junk / "result.npz").write_bytes(b"PK")
    return store, sima


@pytest.mark.parametrize(
    "page", ["pages/attack_lab.py", "pages/compare.py", "pages/sample.py", "pages/was_my_image_used.py"]
)
def test_pages_show_a_notice_not_a_traceback_for_a_damaged_store(damaged_store, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    store, sima = damaged_store
    monkeypatch.setenv("MIA_STORE", str(store))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=90)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    texts = [w.value for w in at.warning]
    assert any("damaged stored result" in t and str(sima) in t for t in texts), texts
    assert not sima.exists() and (store / runs.QUARANTINE_DIR).is_dir()
    at.run()  # reported once: the next rerun shows the page without the notice
    assert not at.exception and not any("damaged stored result" in w.value for w in at.warning)


def test_attack_lab_says_before_a_run_that_a_readonly_store_cannot_save(open_page, monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("MIA_STORE", str(blocker / "store"))
    at = open_page("pages/attack_lab.py")
    monkeypatch.setenv("MIA_STORE", str(blocker / "store"))  # open_page set its own store: use the unwritable one
    at.run()
    assert not at.exception
    assert any("new results cannot be saved" in w.value and str(blocker / "store") in w.value for w in at.warning)


# -- validate before work (CLI) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_unet_factory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "tiny"
    tiny_unet_factory(8, 1).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture()
def unet_calls(monkeypatch) -> list[int]:
    """Counts every UNet call of any target (integer or real-valued timesteps)."""
    from mia_core.target import Target

    calls: list[int] = []
    for name in ("eps", "eps_float_t"):
        original = getattr(Target, name)
        monkeypatch.setattr(Target, name, lambda self, *a, _o=original, **k: calls.append(1) or _o(self, *a, **k))
    return calls


def _bad_out_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    return ["--out", str(tmp_path / "taken")]


def _bad_out_under_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    return ["--out", str(tmp_path / "taken" / "run")]


def _readonly_store(tmp_path):
    (tmp_path / "taken").write_text("x")
    return ["--store", str(tmp_path / "taken" / "store")]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_bad_out_file, r"--out '.*taken' is a file"),
        (_bad_out_under_file, r"--out '.*taken/run' cannot be written"),
        (_readonly_store, r"--store '.*taken/store': new results cannot be saved"),
        (["--seed", "-1"], r"--seed must be >= 0, got -1"),
        (["--bootstrap", "-1"], r"--bootstrap must be >= 0, got -1"),
        (["--batch-size", "-3"], r"--batch-size must be >= 1, got -3"),
        (["--device", "banana"], r"--device 'banana' is not a device"),
        (["--attacks", ""], r"--attacks names no attack \(got ''\)"),
        (["--attacks", " , "], r"--attacks names no attack"),
        (
            ["--attacks", "loss,sima,pia", "--params", '{"pia": {"timestep": 5000}}'],
            r"pia parameter timestep=5000 is out of range for this target: its timesteps are 0\.\.999",
        ),
        (
            ["--attacks", "loss,secmi", "--params", '{"loss": {"sweep": [0, 1000]}}'],
            r"loss parameter sweep=\[0, 1000\]",
        ),
        (["--attacks", "secmi", "--params", '{"secmi": {"t_sec": 2000, "k": 10}}'], r"secmi parameter t_sec=2000"),
    ],
)
def test_bad_arguments_stop_before_the_first_unet_call(tiny_folder, tmp_path, capsys, unet_calls, extra, message):
    from mia_core.cli import main

    extra = extra(tmp_path) if callable(extra) else extra
    argv = [
        "attack",
        "--target",
        str(tiny_folder),
        "--data",
        "default",
        "--limit",
        "4",
        "--device",
        "cpu",
        "--attacks",
        "loss,sima",
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("mia: error: ") and "\n" not in err and re.search(message, err), err
    assert unet_calls == []


def test_a_late_failure_still_writes_the_attacks_that_finished(tiny_folder, tmp_path, capsys, monkeypatch):
    import pandas as pd

    from mia_core.attacks.sima import SimA
    from mia_core.cli import main

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated failure in the third attack")

    monkeypatch.setattr(SimA, "compute", broken)
    out = tmp_path / "out"
    code = main(
        [
            "attack",
            "--target",
            str(tiny_folder),
            "--data",
            "default",
            "--limit",
            "4",
            "--device",
            "cpu",
            "--attacks",
            "loss,pia,sima,pian",
            "--out",
            str(out),
            "--no-trace",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "sima failed: RuntimeError: simulated failure" in err and "finished attacks kept: loss, pia" in err
    scores = pd.read_csv(out / "scores.csv")
    assert {"loss", "pia"} <= set(scores.columns) and "sima" not in scores.columns
    assert scores["loss"].notna().all() and len(scores) == 8
    assert sorted(json.loads((out / "metrics.json").read_text())) == ["loss", "pia"]
    failed = json.loads((out / "run.json").read_text())["failed"]
    assert failed["attack"] == "sima" and "simulated failure" in failed["error"] and failed["not_run"] == ["pian"]


def test_kill_9_mid_run_then_rerun_gives_identical_scores(tiny_folder, tmp_path):
    """A CLI run killed with SIGKILL after its first stored attack; the rerun recomputes only the rest
    and its scores equal those of an uninterrupted run, bit for bit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def command(store: Path, out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mia_core.cli",
            "attack",
            "--target",
            str(tiny_folder),
            "--data",
            "default",
            "--limit",
            "80",
            "--device",
            "cpu",
            "--batch-size",
            "4",
            "--attacks",
            "sima,loss,pia",
            "--params",
            '{"sima": {"sweep": []}, "pia": {"sweep": [0, 100, 200, 300, 400]}}',
            "--store",
            str(store),
            "--out",
            str(out),
        ]

    store = tmp_path / "store"
    proc = subprocess.Popen(
        command(store, tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(store.glob("*/result.npz")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = [p.parent.name for p in store.glob("*/result.npz")]
    assert 1 <= len(stored) < 3 and not (tmp_path / "killed" / "scores.csv").exists()

    rerun = subprocess.run(command(store, tmp_path / "rerun"), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "damaged" not in rerun.stderr  # a killed write leaves no half-written entry behind
    from mia_core.cli import main  # the uninterrupted run, in this process (one torch thread, as above)

    assert main(command(tmp_path / "fresh-store", tmp_path / "fresh")[3:]) == 0
    a, b = pd.read_csv(tmp_path / "rerun" / "scores.csv"), pd.read_csv(tmp_path / "fresh" / "scores.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert set(stored) <= {p.parent.name for p in store.glob("*/result.npz")}


# -- malformed targets: one-line messages naming the file and the bad value -------------------------


def _copy_target(tiny_folder, tmp_path) -> Path:
    import shutil

    folder = tmp_path / "target"
    shutil.copytree(tiny_folder, folder)
    return folder


def _set_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _truncate_weights(folder: Path) -> None:
    weights = folder / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garbage_header(folder: Path) -> None:
    weights = folder / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:40] = b"\xff" * 32
    weights.write_bytes(bytes(data))


def _scheduler(folder: Path, **config) -> None:
    (folder / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDPMScheduler", **config}))


MALFORMED = {
    "config_is_a_list": (
        lambda f: (f / "config.json").write_text("[1, 2]"),
        r"config\.json .*is a list, not an object",
    ),
    "config_invalid_json": (
        lambda f: (f / "config.json").write_text("{'single': quotes}"),
        r"config\.json is not valid JSON",
    ),
    "sample_size_text": (lambda f: _set_config(f, sample_size="big"), r"sample_size='big'"),
    "channels_text": (lambda f: _set_config(f, block_out_channels="16,32"), r"block_out_channels='16,32'"),
    "in_channels_negative": (lambda f: _set_config(f, in_channels=-1), r"in_channels=-1"),
    "huge_sample_size": (lambda f: _set_config(f, sample_size=100000), r"sample_size=100000.* GiB"),
    "truncated_weights": (_truncate_weights, r"diffusion_pytorch_model\.safetensors.*(truncated|corrupt)"),
    "garbage_weights": (_garbage_header, r"diffusion_pytorch_model\.safetensors.*(truncated|corrupt)"),
    "unknown_beta_schedule": (
        lambda f: _scheduler(f, beta_schedule="wiggly"),
        r"scheduler_config\.json.*beta_schedule.*'wiggly'",
    ),
    "scheduler_invalid_json": (
        lambda f: (f / "scheduler_config.json").write_text("{"),
        r"scheduler_config\.json is not valid JSON",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_target_gives_a_message_naming_file_and_value(tiny_folder, tmp_path, case):
    from mia_core.target import TargetLoadError, load_target

    folder = _copy_target(tiny_folder, tmp_path)
    damage, message = MALFORMED[case]
    damage(folder)
    with pytest.raises(TargetLoadError) as info:
        load_target(str(folder), device="cpu")
    text = str(info.value)
    assert str(folder) in text and re.search(message, text), text
    assert "\n" not in text


@pytest.mark.parametrize("case", ["huge_sample_size", "truncated_weights", "config_is_a_list"])
def test_cli_info_on_a_malformed_target_is_one_line_exit_2(tiny_folder, tmp_path, capsys, case):
    from mia_core.cli import main

    folder = _copy_target(tiny_folder, tmp_path)
    MALFORMED[case][0](folder)
    assert main(["info", "--target", str(folder), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mia: error: ") and "\n" not in err and str(folder) in err


@pytest.mark.parametrize("spec", ["assets/default_targte", "./my-model", "tests/no-such-model"])
def test_a_mistyped_local_path_is_a_missing_folder_never_a_hub_download(spec, monkeypatch):
    import huggingface_hub

    from mia_core.target import TargetLoadError, load_target

    monkeypatch.chdir(Path(__file__).resolve().parents[1])

    def no_hub(*args, **kwargs):
        raise AssertionError(f"{spec!r} was sent to the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_hub)
    with pytest.raises(TargetLoadError, match=r"no folder .* exists \(a local path, so the Hugging Face Hub was not"):
        load_target(spec, device="cpu")


def test_pickle_search_does_not_walk_the_tree(tmp_path, monkeypatch):
    """A target path of "/" (or any big tree) looks at the folder and its direct sub-folders only."""
    from mia_core.target import TargetLoadError, load_target

    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    (deep / "model.ckpt").write_bytes(b"x")
    (tmp_path / "a" / "weights.bin").write_bytes(b"x")
    with pytest.raises(TargetLoadError) as info:
        load_target(str(tmp_path), device="cpu")
    assert "model.ckpt" not in str(info.value)
    with pytest.raises(TargetLoadError, match=r"weights\.bin"):
        load_target(str(tmp_path / "a"), device="cpu")


# -- safe to share: an allow-list of readable folders, localhost by default -------------------------


def test_allow_list_refuses_outside_paths_without_revealing_existence(tmp_path, monkeypatch):
    from mia_core.lab.access import AccessDenied, allowed_roots, check_allowed, check_data_spec

    inside = tmp_path / "allowed"
    (inside / "data").mkdir(parents=True)
    outside = tmp_path / "secret"
    (outside / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("MIA_ALLOWED_ROOTS", str(inside))
    assert allowed_roots() == [inside.resolve()]
    assert check_allowed(str(inside / "data")) == (inside / "data").resolve()
    assert check_allowed(str(inside / "not-yet")) == (inside / "not-yet").resolve()
    messages = []
    for probe in [outside / ".ssh", outside / "nothing-here", inside / ".." / "secret" / ".ssh"]:
        with pytest.raises(AccessDenied) as info:
            check_allowed(str(probe), "data path")
        messages.append(str(info.value).replace(str(probe), "<path>"))
    assert messages[0] == messages[1] == messages[2]  # existing or not: the same words
    (inside / "link").symlink_to(outside)
    with pytest.raises(AccessDenied):
        check_allowed(str(inside / "link" / ".ssh"))
    # A split manifest inside the roots whose source lies outside is refused too.
    manifest = inside / "split.json"
    manifest.write_text(json.dumps({"source": str(outside / "images.npz"), "members": [], "nonmembers": []}))
    with pytest.raises(AccessDenied, match="data source named in the manifest"):
        check_data_spec(str(manifest))
    assert check_data_spec("default") == "default"


def test_default_roots_are_project_store_and_current_folder(tmp_path, monkeypatch):
    from mia_core.lab.access import allowed_roots
    from mia_core.paths import REPO_DIR

    monkeypatch.delenv("MIA_ALLOWED_ROOTS", raising=False)
    monkeypatch.setenv("MIA_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    assert allowed_roots() == [REPO_DIR.resolve(), (tmp_path / "store").resolve(), tmp_path.resolve()]


@pytest.mark.parametrize(
    ("page", "box", "button"),
    [
        ("pages/data.py", "data.folder_path", "data.apply_folder"),
        ("pages/data.py", "data.npz_path", "data.apply_npz"),
        ("pages/target.py", "target.folder", "target.apply"),
    ],
)
def test_pages_refuse_paths_outside_the_allow_list(open_page, tmp_path, monkeypatch, page, box, button):
    secret = tmp_path.parent / f"{tmp_path.name}-secret"
    (secret / ".ssh").mkdir(parents=True, exist_ok=True)
    at = open_page(page)
    if page == "pages/target.py":
        at.radio(key="target.source").set_value("Local diffusers folder").run()
    shown = []
    for probe in [secret / ".ssh", secret / "no-such-thing"]:
        value = str(probe) + (".npz" if box == "data.npz_path" else "")
        at.text_input(key=box).set_value(value).run()
        at.button(key=button).click().run()
        assert not at.exception
        texts = [e.value for e in at.error]
        assert any("outside the folders this app may read" in t for t in texts), texts
        shown.append([t.replace(value, "<path>") for t in texts])
    assert shown[0] == shown[1]
    assert at.session_state["cfg.target"] == "default" and at.session_state["cfg.data"] == "default"


def test_streamlit_binds_to_localhost_by_default():
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"


# -- bounded uploads, EXIF, mixed-size folders --------------------------------------------------------


def _png(width: int, height: int, seed: int = 0) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((width, height))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def test_upload_burst_at_the_pixel_limit_is_bounded_in_memory_and_decoded_once(monkeypatch):
    """Eight 2048x2048 RGB uploads (exactly the request's pixel budget): the peak of traced memory
    stays near one full-size image (12 MiB), not eight (96 MiB); a ninth file is refused from its
    header; a rerun (another FPR budget) decodes nothing."""
    import tracemalloc

    from mia_core.data import images as I

    side = 2048
    monkeypatch.setattr(I, "UPLOAD_MAX_TOTAL_PIXELS", 8 * side * side)
    monkeypatch.setattr(I, "_upload_cache", I.OrderedDict())
    files = [(f"big-{k}.png", _png(side, side, seed=k)) for k in range(9)]
    decoded = []
    original = I.decode_image
    monkeypatch.setattr(I, "decode_image", lambda *a, **k: decoded.append(a[1]) or original(*a, **k))
    one_image = side * side * 3
    tracemalloc.start()
    try:
        up = I.load_uploads(files, resolution=8, channels=1, max_total_pixels=I.UPLOAD_MAX_TOTAL_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak traced memory {peak / 2**20:.1f} MiB for 8 images of {one_image / 2**20:.0f} MiB decoded")
    assert up.images is not None and up.images.n == 8 and up.images.images.shape == (8, 8, 8, 1)
    assert len(up.errors) == 1 and "big-8.png" in up.errors[0] and "one request may decode" in up.errors[0]
    assert peak < 2.5 * one_image, f"peak {peak / 2**20:.1f} MiB: uploads are held at full size"
    decoded.clear()
    again = I.load_uploads(files[:8], resolution=8, channels=1)
    assert decoded == [] and np.array_equal(again.images.images, up.images.images)


def test_exif_orientation_is_applied_on_every_read(tmp_path):
    import io

    from PIL import Image

    from mia_core.data import decode_image, load_image_folder

    pixels = np.zeros((4, 8, 3), dtype=np.uint8)  # stored 8 wide, 4 high, with a white left column
    pixels[:, 0] = 255
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=100)
    data = buf.getvalue()
    upright = decode_image(data, "phone.jpg")
    assert upright.shape == (8, 4, 3)  # shown upright: 4 wide, 8 high
    assert upright[0].mean() > 200 and upright[-1].mean() < 60  # the white column is now the top row
    (tmp_path / "phone.jpg").write_bytes(data)
    (tmp_path / "other.jpg").write_bytes(data)
    images, _, _ = load_image_folder(tmp_path)
    assert images.images.shape[1:3] == (8, 4)


def test_mixed_size_folder_uses_the_stated_rule_in_cli_train_and_experiment(tmp_path, tiny_folder, capsys):
    from PIL import Image

    from mia_core.cli import main
    from mia_core.data import resolve_data
    from mia_core.data.sources import MixedImagesError
    from mia_core.lab.experiment import load_experiment

    for sub, sizes in (("members", [(16, 16), (24, 12)]), ("nonmembers", [(12, 12), (20, 20)])):
        (tmp_path / "mixed" / sub).mkdir(parents=True)
        for k, (w, h) in enumerate(sizes):
            Image.new("L", (w, h), color=40 * k).save(tmp_path / "mixed" / sub / f"{k}.png")
    folder = str(tmp_path / "mixed")
    with pytest.raises(MixedImagesError):
        resolve_data(folder)
    images, _ = resolve_data(folder, resolution=10)
    assert images.images.shape == (4, 10, 10, 1)
    exp = load_experiment(str(tiny_folder), folder, device="cpu")
    assert (
        exp.images.images.shape == (4, 8, 8, 1)
        and "centre-cropped to a square and resized to 8x8" in exp.conversion.report
    )
    assert (
        main(
            [
                "train",
                "--data",
                folder,
                "--out",
                str(tmp_path / "t"),
                "--steps",
                "1",
                "--channels",
                "8,16",
                "--layers-per-block",
                "1",
                "--resolution",
                "8",
                "--device",
                "cpu",
                "--batch-size",
                "2",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "t" / "unet" / "config.json").read_text())["sample_size"] == 8
    assert (
        main(
            [
                "train",
                "--data",
                folder,
                "--out",
                str(tmp_path / "u"),
                "--steps",
                "1",
                "--device",
                "cpu",
                "--resolution",
                "0",
            ]
        )
        == 2
    )
    assert "--resolution must be >= 1, got 0" in capsys.readouterr().err


def test_info_default_shows_training_command_and_dp_line(capsys):
    from mia_core.cli import main

    assert main(["info", "--target", "default", "--device", "cpu"]) == 0
    default = capsys.readouterr().out
    assert main(["info", "--target", "assets/default_target", "--device", "cpu"]) == 0
    by_path = capsys.readouterr().out
    for label in ("trained by", "DP-SGD"):
        line = next(row for row in by_path.splitlines() if row.startswith(label))
        assert line in default.splitlines()


def test_data_page_removes_rejected_uploads_and_refuses_a_pixel_burst(open_page, tmp_path, monkeypatch):
    from mia_core.data import images as I

    at = open_page("pages/data.py")
    assert any("megapixels in all" in c.value for c in at.caption)
    # A corrupt member file: the upload is rejected and its folder does not stay on disk.
    at.file_uploader(key="data.up_members").set_value([("m0.png", b"\x89PNG\r\n\x1a\nbroken", "image/png")])
    at.file_uploader(key="data.up_nonmembers").set_value([("n0.png", _png(8, 8), "image/png")])
    at.button(key="data.apply_upload").click().run()
    assert not at.exception and at.session_state["cfg.data"] == "default"
    assert any("previous data is kept" in e.value for e in at.error)
    uploads = tmp_path / "store" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    # Over the request's pixel budget: refused from the headers, nothing written.
    monkeypatch.setattr(I, "UPLOAD_MAX_TOTAL_PIXELS", 1000)
    at.file_uploader(key="data.up_members").set_value([("m0.png", _png(40, 40), "image/png")])
    at.button(key="data.apply_upload").click().run()
    assert any("one request may decode at most 1,000" in e.value for e in at.error)
    assert not uploads.exists() or list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--params", '{"pia": {"timestep": 5000}}'], r"pia parameter timestep=5000 is out of range"),
        (["--attacks", ""], r"--attacks names no attack"),
        (["--bootstrap", "-1"], r"--bootstrap must be >= 0, got -1"),
    ],
)
def test_study_validates_attacks_before_training(tmp_path, capsys, monkeypatch, extra, message):
    from mia_core.cli import main
    from mia_core.lab import study

    monkeypatch.setattr(study, "train", lambda *a, **k: pytest.fail("a model was trained before validation"))
    code = main(
        [
            "study",
            "--factor",
            "steps",
            "--values",
            "1,2",
            "--data",
            "default",
            "--attacks",
            "loss,sima,pia",
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and re.search(message, err) and "\n" not in err, err


def test_cli_rerun_over_a_truncated_result_names_it_and_recomputes(tiny_folder, tmp_path, capsys):
    import pandas as pd

    from mia_core.cli import main

    store = tmp_path / "store"
    argv = [
        "attack",
        "--target",
        str(tiny_folder),
        "--data",
        "default",
        "--limit",
        "4",
        "--device",
        "cpu",
        "--attacks",
        "loss,sima",
        "--no-trace",
        "--store",
        str(store),
    ]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    npz = next(store.glob("*/result.npz"))
    npz.write_bytes(npz.read_bytes()[:64])
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert f"mia: warning: damaged stored result {npz.parent}" in err and "Traceback" not in err
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "a" / "scores.csv"), pd.read_csv(tmp_path / "b" / "scores.csv")
    )
    assert len(list((store / "quarantine").iterdir())) == 1 and npz.exists()  # recomputed in place


def test_cli_reads_a_readonly_store_when_everything_is_stored(tiny_folder, tmp_path, capsys, monkeypatch, unet_calls):
    from mia_core.cli import main

    store = tmp_path / "store"
    argv = [
        "attack",
        "--target",
        str(tiny_folder),
        "--data",
        "default",
        "--limit",
        "4",
        "--device",
        "cpu",
        "--attacks",
        "sima",
        "--no-trace",
        "--store",
        str(store),
    ]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    unet_calls.clear()
    capsys.readouterr()
    monkeypatch.setattr(ResultStore, "write_problem", lambda self: f"new results cannot be saved: {self.root} (test)")
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert "mia: note: --store" in capsys.readouterr().err and unet_calls == []
    assert (
        main([*argv[:-5], "--attacks", "sima,loss", "--no-trace", "--store", str(store), "--out", str(tmp_path / "c")])
        == 2
    )
    err = capsys.readouterr().err
    assert "new results cannot be saved" in err and "loss would be computed" in err and unet_calls == []
