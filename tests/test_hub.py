"""Issue 14, item 5: Hub loading as diffusers does it, with huggingface_hub monkeypatched (no network):
model_index.json first, only the needed components, revision and variant, sharded safetensors,
and refusals before any weight is downloaded."""

from __future__ import annotations

import fnmatch
import json
import shutil
from pathlib import Path

import pytest
import torch

from mia_core.target import TargetLoadError, load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


class FakeHub:
    """Repos are local folders laid out like Hub snapshots; records every request."""

    def __init__(self, root: Path):
        self.root, self.calls, self.downloaded = root, [], []

    def repo(self, repo_id: str, revision: str | None) -> Path:
        return self.root / repo_id.replace("/", "--") / (revision or "main")

    def hf_hub_download(self, repo_id, filename, *, revision=None, local_files_only=False, **_):
        from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

        self.calls.append(("file", repo_id, filename, revision, local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached (test)")
        path = self.repo(repo_id, revision) / filename
        if not path.exists():
            raise RemoteEntryNotFoundError("404 (test)", response=_Response())
        self.downloaded.append(filename)
        return str(path)

    def snapshot_download(self, repo_id, *, revision=None, allow_patterns=None, local_files_only=False, **_):
        from huggingface_hub.errors import LocalEntryNotFoundError

        self.calls.append(("snapshot", repo_id, tuple(allow_patterns), revision, local_files_only))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached (test)")
        src = self.repo(repo_id, revision)
        dst = self.root / "cache" / repo_id.replace("/", "--") / (revision or "main")
        for f in src.rglob("*"):
            rel = f.relative_to(src).as_posix()
            if f.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dst / rel)
                self.downloaded.append(rel)
        return str(dst)


class _Response:
    status_code = 404
    headers: dict = {}
    request = None
    url = "https://huggingface.co/test"

    def json(self):
        return {}


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    import huggingface_hub

    fake = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake.snapshot_download)
    return fake


def _ddpm_repo(folder: Path, unet, *, variant=None, max_shard_size=None, extra=True):
    shard = {"max_shard_size": max_shard_size} if max_shard_size else {}
    unet.save_pretrained(folder / "unet", safe_serialization=True, variant=variant, **shard)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": "DDPMScheduler", "beta_schedule": "linear", "prediction_type": "v_prediction"})
    )
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMPipeline",
                "unet": ["diffusers", "UNet2DModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    if extra:  # what must never be downloaded: pickles, other variants, unneeded components
        (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
        (folder / "text_encoder").mkdir()
        (folder / "text_encoder" / "model.safetensors").write_bytes(b"x")
    return folder


def test_pipeline_repo_downloads_only_its_components(hub, tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=2)
    _ddpm_repo(hub.repo("org/ddpm", None), unet)
    target = load_target("org/ddpm", device="cpu")
    assert target.prediction_type == "v_prediction" and target.source == "org/ddpm"
    assert hub.calls[0][:3] == ("file", "org/ddpm", "model_index.json")  # read first
    assert set(hub.downloaded) == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
    }
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(target.model_output(x, 5), unet(x, torch.tensor([5, 5])).sample, atol=1e-6)


def test_revision_variant_and_shards(hub, tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=3)
    _ddpm_repo(hub.repo("org/ddpm", "v2"), unet, variant="fp16", max_shard_size="20KB")
    shards = sorted(p.name for p in (hub.repo("org/ddpm", "v2") / "unet").glob("*fp16-*-of-*.safetensors"))
    assert len(shards) > 1  # really sharded
    with pytest.raises(TargetLoadError):  # main has nothing
        load_target("org/ddpm", device="cpu")
    target = load_target("org/ddpm", device="cpu", revision="v2", variant="fp16")
    assert target.source == "org/ddpm@v2"
    assert all(c[3] == "v2" for c in hub.calls if c[1] == "org/ddpm" and c[3] is not None)
    assert not any(d.endswith(".bin") or d.startswith("text_encoder") for d in hub.downloaded)
    x = torch.randn(1, 1, 8, 8)
    assert torch.allclose(target.model_output(x, 7), unet(x, torch.tensor([7])).sample, atol=1e-6)


def test_local_sharded_folder_loads(tmp_path, tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=4)
    folder = _ddpm_repo(tmp_path / "sharded", unet, max_shard_size="20KB", extra=False)
    assert not (folder / "unet" / "diffusion_pytorch_model.safetensors").exists()
    target = load_target(str(folder), device="cpu")
    x = torch.randn(1, 1, 8, 8)
    assert torch.allclose(target.model_output(x, 3), unet(x, torch.tensor([3])).sample, atol=1e-6)


@pytest.mark.parametrize(
    "index, reason",
    [
        (
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "scheduler": ["diffusers", "PNDMScheduler"],
            },
            "no text_encoder, tokenizer component",  # a Stable Diffusion pipeline without its text side
        ),
        (
            {
                "_class_name": "KandinskyPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            },
            "UNet2DConditionModel",
        ),
        (
            {
                "_class_name": "FancyNewPipeline",
                "unet": ["diffusers", "UNet2DModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            },
            "unknown pipeline class 'FancyNewPipeline'",
        ),
        (
            {
                "_class_name": "LDMPipeline",
                "unet": ["diffusers", "UNet2DModel"],
                "vqvae": ["diffusers", "AutoencoderTiny"],
                "scheduler": ["diffusers", "DDIMScheduler"],
            },
            "AutoencoderTiny",
        ),
    ],
)
def test_unattackable_repos_refused_before_download(hub, index, reason):
    repo = hub.repo("org/other", None)
    repo.mkdir(parents=True)
    (repo / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(TargetLoadError, match=reason):
        load_target("org/other", device="cpu")
    assert hub.downloaded == ["model_index.json"]
    assert not any(c[0] == "snapshot" for c in hub.calls)


def test_bare_model_repo(hub, tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=5)
    unet.save_pretrained(hub.repo("org/bare", None), safe_serialization=True)
    target = load_target("org/bare", device="cpu")
    assert target.resolution == 8
    assert "model_index.json" not in hub.downloaded and "config.json" in hub.downloaded
