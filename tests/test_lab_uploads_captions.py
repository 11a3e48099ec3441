"""Captions of uploads and edited captions (mia_core.lab.uploads): metadata.jsonl among the uploads, the attacks keyed
by the uploads' captions (an upload without one: the empty prompt), and an edited split manifest."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core.attacks import Conditioning, get_attack
from mia_core.attacks.conditioning import captions_digest
from mia_core.data import ImageSet, Split, load_npz, resolve_data
from mia_core.lab.uploads import (
    caption_edits,
    condition_uploads,
    edited_caption_split,
    metadata_captions,
    save_split_manifest,
)


def _jsonl(*rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_metadata_jsonl_among_the_uploads_gives_captions_by_file_name():
    data = _jsonl(
        {"file_name": "imgs/a.png", "text": "a handwritten seven"},
        {"file_name": "./b.png", "text": ""},
        {"file_name": "c.png", "text": "not uploaded"},
    )
    found, notes = metadata_captions(data, ["a.png", "b.png", "d.png"])
    assert found == {"a.png": "a handwritten seven", "b.png": ""}
    assert notes == ["metadata.jsonl has captions for 1 file(s) that were not uploaded: 'c.png'"]
    twice = _jsonl({"file_name": "a.png", "text": "x"}, {"file_name": "a.png", "text": "y"})
    with pytest.raises(ValueError, match=r"my.jsonl, line 2: 'a.png' has a caption already \(line 1\)"):
        metadata_captions(twice, ["a.png"], where="my.jsonl")
    with pytest.raises(ValueError, match='line 1: expected an object with string "file_name" and "text"'):
        metadata_captions(_jsonl({"file_name": "a.png", "caption": "x"}), ["a.png"])
    with pytest.raises(ValueError, match="not UTF-8"):
        metadata_captions(b"\xff\xfe\x00", ["a.png"])


def test_uploads_are_scored_with_their_captions_and_the_empty_prompt_without_one(tiny_t2i_target, tiny_target):
    loss = get_attack("loss", {"sweep": []})
    split_keyed = loss.with_conditioning(Conditioning().with_captions(["a", "b", "c"]))  # as the split's runs are
    (a,), caps = condition_uploads(tiny_t2i_target, [split_keyed], 2, ["a seven", ""])
    assert caps == ("a seven", "") and a.conditioning.captions == captions_digest(["a seven", ""])
    (b,), caps = condition_uploads(tiny_t2i_target, [split_keyed], 2, None)  # no captions at all: the empty prompt
    assert caps == ("", "") and b.conditioning.captions == captions_digest(["", ""])
    fixed = loss.with_conditioning(Conditioning("fixed", "a one"))
    assert condition_uploads(tiny_t2i_target, [fixed], 2, None) == ([fixed], None)  # a fixed prompt: unchanged
    assert condition_uploads(tiny_target, [loss], 2, None) == ([loss], None)  # a pixel target takes no text
    with pytest.raises(ValueError, match="got 1 captions for 2 images"):
        condition_uploads(tiny_t2i_target, [split_keyed], 2, ["x"])

    from mia_core.lab.verdict import score_images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, 8, 8, 1), dtype=np.uint8)
    plain = ImageSet(pixels, ("u1", "u2"), "upload")
    empty = score_images(tiny_t2i_target, plain, [split_keyed])["loss"]
    assert np.array_equal(empty, score_images(tiny_t2i_target, plain.with_captions(["", ""]), [split_keyed])["loss"])
    captioned = score_images(tiny_t2i_target, plain.with_captions(["a seven", ""]), [split_keyed])["loss"]
    assert captioned[0] != empty[0] and captioned[1] == empty[1]  # only the captioned image's prompt changed


def test_edited_captions_become_a_manifest_that_replaces_the_datas_own(tmp_path):
    npz = tmp_path / "d.npz"
    images = np.arange(4 * 4 * 4, dtype=np.uint8).reshape(4, 4, 4, 1)
    np.savez(npz, images=images, ids=np.array(["w", "x", "y", "z"]), captions=np.array(["a", "b", "c", "d"]))
    data = load_npz(npz)
    split = Split(("w", "x"), ("y", "z"), None, data.fingerprint, "d.npz")
    split.save(tmp_path / "split.json")
    spec = str(tmp_path / "split.json")

    assert caption_edits(["w", "x"], ["a", "b"], ["a", "B"]) == {"x": "B"}
    edited = edited_caption_split(spec, {"x": "B", "z": "d"}, seed=0)  # "d" is z's caption already: not an edit
    assert edited.captions_edited and edited.captions == {"w": "a", "x": "B", "y": "c", "z": "d"}
    assert edited.source == str(npz.resolve()) and "captions edited" in edited.description
    path = save_split_manifest(tmp_path / "store", edited)
    assert path.parent == tmp_path / "store" / "uploads" / "manifests"
    assert save_split_manifest(tmp_path / "store", edited) == path  # the same split, the same file
    assert json.loads(path.read_text())["captions_edited"] is True
    loaded, _ = resolve_data(str(path))  # the manifest's captions replace the data's own
    assert loaded.captions == ("a", "B", "c", "d")
    assert Split.load(path).limit(1).captions_edited
    # an unedited manifest that disagrees with the data is still refused
    plain = Split(("w", "x"), ("y", "z"), None, data.fingerprint, str(npz), captions=edited.captions)
    plain.save(tmp_path / "plain.json")
    with pytest.raises(ValueError, match="caption of 'x' \\('B'\\) differs from the data's \\('b'\\)"):
        resolve_data(str(tmp_path / "plain.json"))
    with pytest.raises(ValueError, match="not in the split"):
        edited_caption_split(spec, {"q": "new"})
    with pytest.raises(ValueError, match="captions_edited is set but the split records no captions"):
        Split(("w",), ("y",), None, data.fingerprint, "d.npz", captions_edited=True)


def test_collection_prompt_mismatch_warns_unless_both_sets_share_the_kind_of_prompt():
    from mia_core.lab.uploads import collection_prompt_mismatch

    own, none, some = ("a one", "a two"), None, ("a one", "")
    assert collection_prompt_mismatch(own, 2, own, 2) is None
    assert collection_prompt_mismatch(none, 2, ("", ""), 2) is None  # "" is no caption: the empty prompt too
    message = collection_prompt_mismatch(own, 2, none, 2)
    assert message.startswith(
        "The suspect set is scored with their own captions and the held-out set with the empty prompt"
    )
    assert "with the empty prompt and the held-out set with their own captions" in collection_prompt_mismatch(
        none, 2, own, 2
    )
    assert "scored with a mix and the held-out set with a mix" in collection_prompt_mismatch(some, 2, some, 2)
