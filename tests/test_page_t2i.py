"""AppTest: the shipped tiny text-to-image target (assets/t2i_target) one click away, and every page on it.

The target ships, so nothing here skips; images are limited (``cfg.limit``) to keep the pages cheap."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from mia_core.paths import T2I_SPLIT_PATH, T2I_TARGET_DIR

T2I, SPLIT = str(T2I_TARGET_DIR.resolve()), str(T2I_SPLIT_PATH.resolve())
T2I_BUTTON = "Use the tiny text-to-image target (MNIST digits with captions)"


def _button(at, label):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r}: {[b.label for b in at.button]}"
    return found[0]


def _open_on_t2i(open_page, page, limit=4):
    at = open_page(page, run=False)
    at.session_state["cfg.target"], at.session_state["cfg.data"] = T2I, SPLIT
    at.session_state["cfg.limit"] = limit
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_start_page_switches_to_the_t2i_target_in_one_click(open_page):
    at = open_page("pages/home.py")
    _button(at, T2I_BUTTON).click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.target"] == T2I and at.session_state["cfg.data"] == SPLIT
    assert at.session_state["sel.sample"] is None
    assert any("text-to-image target" in s.value for s in at.success)
    deadline = time.time() + 90
    while time.time() < deadline and not any("Model ready" in s.value for s in at.success):
        time.sleep(0.3)
        at.run()
        assert not at.exception, at.exception
    ready = [s.value for s in at.success if "Model ready" in s.value]
    assert ready and "100 members and 100 non-members" in ready[0], ready
    # and back to the default in one click too
    _button(at, "Use the embedded default target (8x8 digits)").click().run()
    assert at.session_state["cfg.target"] == "default" and at.session_state["cfg.data"] == "default"


def test_target_page_offers_the_t2i_target_and_shows_its_components(open_page):
    at = open_page("pages/target.py")
    _button(at, T2I_BUTTON).click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.target"] == T2I and at.session_state["cfg.data"] == SPLIT
    assert any("Switched to the tiny text-to-image target" in s.value for s in at.success)
    card = at.dataframe[0].value.set_index("property")["value"]
    assert card["component: text_encoder"].startswith("CLIPTextModel")
    assert card["component: vae"].startswith("AutoencoderKL") and card["component: unet"].startswith("UNet2DCondition")
    assert "own caption" in card["conditioning"] and "empty prompt" in card["conditioning"]
    # attacks sharing one reason are named together, the reason said once
    assert card["not applicable"].count("needs a DDPM") == 1 and "rediffuse, gan_leaks" in card["not applicable"]


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.success] + [e.value for e in at.error]
    parts += [e.value for e in at.info] + [e.value for e in at.warning] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def test_attack_lab_conditions_runs_and_compare_labels_them(open_page):
    from mia_core.attacks import REGISTRY

    at = _open_on_t2i(open_page, "pages/attack_lab.py", limit=3)
    table = at.dataframe[0].value.set_index("attack")
    assert REGISTRY["clid"].title in table.index  # CLiD offered (it applies to a text-to-image target)
    assert "CLiD" not in " ".join(i.value for i in at.info if "Not applicable" in i.value)
    loss_calls = int(table.loc[REGISTRY["loss"].title, "UNet calls / image"])
    # a fixed prompt with guidance: every UNet call is two passes, and the table says so
    at.radio(key="attack_lab.cond.mode").set_value("fixed").run()
    at.text_input(key="attack_lab.cond.prompt").set_value("a handwritten seven")
    at.number_input(key="attack_lab.cond.w").set_value(2.0).run()
    assert not at.exception, at.exception
    assert int(at.dataframe[0].value.set_index("attack").loc[REGISTRY["loss"].title, "UNet calls / image"]) == (
        2 * loss_calls
    )
    assert "every UNet call costs 2 forward passes" in _texts(at)
    # the image's own caption, no guidance: run the loss attack on 6 images
    at.radio(key="attack_lab.cond.mode").set_value("caption")
    at.number_input(key="attack_lab.cond.w").set_value(1.0)
    at.multiselect(key="attack_lab.attacks").set_value(["loss"])
    at.button(key="attack_lab.run").click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.conditioning"] == {"mode": "caption", "prompt": "", "guidance_scale": 1.0}
    deadline = time.time() + 90
    while time.time() < deadline and not any(s.value.startswith("Done") for s in at.success):
        time.sleep(0.5)
        at.run()
        assert not at.exception, at.exception
    assert any(s.value.startswith("Done — 1 attack(s) finished on 6 images") for s in at.success), _texts(at)
    assert "Conditioned on each image's own caption; no guidance (scale 1)." in _texts(at)
    # Compare finds the stored run and names its conditioning in the label
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.exception, at.exception
    runs = at.multiselect(key="compare.runs")
    assert runs.value == ["loss:cond=caption"]
    assert runs.format_func("loss:cond=caption") == "Loss own caption"
    assert not any("Not stored" in i.value for i in at.info), [i.value for i in at.info]
    assert "Loss own caption" in json.dumps([c.proto.spec for c in at.get("plotly_chart")])
    # the Presenter runs its deck on the text-to-image target with the stored run, and says what does not apply
    at.switch_page("pages/presenter.py")
    at.run()
    assert not at.exception, at.exception
    said = " ".join(i.value for i in at.info)
    # the runs Compare put in the URL (?runs=loss:cond=caption), named with their conditioning
    assert "The deck runs on the text-to-image target (Loss own caption)" in said, said
    assert "differential privacy" in said
    assert at.get("iframe")


def test_learn_shows_one_image_under_its_caption_the_empty_prompt_and_a_wrong_caption(open_page):
    at = _open_on_t2i(open_page, "pages/learn.py", limit=2)
    assert any("Conditioning: the same image, three prompts" in h.value for h in at.header)
    assert any("denoises **VAE latents**" in i.value and "empty prompt" in i.value for i in at.info)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    fig = [f for f in specs if "three prompts" in json.dumps(f["layout"].get("title", ""))]
    assert fig, "no caption-curves figure"
    names = [tr["name"] for tr in fig[0]["data"]]
    assert [n.split(":")[0] for n in names] == ["own caption", "empty prompt", "wrong caption"]
    assert names[1] == 'empty prompt: ""' and names[0] != names[2]
    ys = [tr["y"] for tr in fig[0]["data"]]
    assert ys[0] != ys[1] != ys[2]  # the prompt changes the model's error (same noise)


def test_data_page_shows_the_captions_and_sample_explorer_the_caption(open_page):
    at = _open_on_t2i(open_page, "pages/data.py", limit=2)
    table = [d.value for d in at.dataframe if "caption" in d.value.columns][0]
    assert len(table) == 4 and table["caption"].str.startswith("a handwritten ").all()
    thumbs = [c for img in at.image for c in img.captions]  # under the gallery thumbnails
    assert thumbs and all("· “a handwritten " in c for c in thumbs), thumbs
    at.switch_page("pages/sample.py")
    at.run()
    assert not at.exception, at.exception
    sid = at.selectbox(key="sample.id").value
    said = [m.value for m in at.markdown if m.value.startswith("Caption:")]
    assert said and said[0].startswith("Caption: **“a handwritten "), said
    row = table.set_index("id").loc[sid]
    assert row["caption"] in said[0]


def test_presenter_on_the_t2i_target_without_runs_says_so_in_one_line(open_page):
    at = _open_on_t2i(open_page, "pages/presenter.py", limit=2)
    said = [i.value for i in at.info if "No runs stored for the text-to-image target" in i.value]
    assert len(said) == 1 and "Attack lab" in said[0]
    assert at.get("iframe")  # the default's deck meanwhile


def test_training_facts_of_a_text_to_image_log_come_from_its_unet_recipe():
    from mia_core.lab.train import read_train_log
    from mia_core.views.learn import train_log_summary

    facts = train_log_summary(read_train_log(T2I_TARGET_DIR))
    # the shipped weights are the step-1500 EMA snapshot of a 3000-step run (its log's snapshot_of says so)
    assert facts["steps"] == 1500 and facts["batch size"] == 32 and facts["learning rate"] == 1e-3
    assert facts["members"] == 100


#: the loss attack without its timestep sweep (1 UNet call per image): what these page tests run
CHEAP_LOSS = {"loss": {"sweep": []}}


def _store_loss_runs(store_dir, limit, conditioning=None):
    """Score the t2i split (``limit`` per side) with the loss attack (:data:`CHEAP_LOSS`) into the store at
    ``store_dir``, as the Attack lab would (the session's conditioning; None = each image's own caption)."""
    from mia_core.lab.experiment import condition_attacks, load_experiment, make_attacks
    from mia_core.lab.runs import ResultStore

    exp = load_experiment(T2I, SPLIT, limit=limit)
    attacks = condition_attacks(exp, make_attacks(["loss"], CHEAP_LOSS), conditioning)
    exp.attack(attacks, seed=0, store=ResultStore(store_dir))
    return exp


def _loss_score(at) -> float:
    lines = [m.value for m in at.markdown if m.value.startswith("- **Loss (denoising error)**: score ")]
    assert len(lines) == 1, lines
    return float(lines[0].split("score ")[1].split(" ")[0])


def _was_my_image_used_on_t2i(open_page):
    """The page "Was my image used?" on the t2i target, 2 images per side, the cheap loss attack (stored by
    :func:`_store_loss_runs`)."""
    at = open_page("pages/was_my_image_used.py", run=False)
    at.session_state["cfg.target"], at.session_state["cfg.data"] = T2I, SPLIT
    at.session_state["cfg.limit"], at.session_state["cfg.attacks"] = 2, ["loss"]
    at.session_state["cfg.params"] = CHEAP_LOSS
    at.run()
    assert not at.exception, at.exception
    return at


def test_was_my_image_used_on_the_t2i_target_takes_a_caption_per_upload(open_page, tmp_path):
    from mia_core.lab.uploads import NO_CAPTION_TEXT, encode_png

    exp = _store_loss_runs(tmp_path / "store", 2)
    at = _was_my_image_used_on_t2i(open_page)
    assert not [i.value for i in at.info if "has no caption" in i.value]  # own-caption runs are offered, not refused
    # an image of the split, uploaded without a caption: scored with the empty prompt, and the card says so in one line
    sid = exp.split.member_ids[0]
    png = encode_png(exp.images.images[exp.images.index_of()[sid]])
    at.file_uploader(key="miu.files").set_value(("mine.png", png, "image/png")).run()
    assert not at.exception, at.exception
    assert [c.value for c in at.caption].count(NO_CAPTION_TEXT) == 1
    empty_score = _loss_score(at)
    # the same image with its own caption typed in: conditioned on it, a new score (keyed by the caption)
    (box,) = [t for t in at.text_input if t.label == "Caption of mine.png"]
    box.set_value(exp.images.caption_of(sid)).run()
    assert not at.exception, at.exception
    assert NO_CAPTION_TEXT not in [c.value for c in at.caption]
    assert f"Caption: “{exp.images.caption_of(sid)}”" in [m.value for m in at.markdown]
    caption_score = _loss_score(at)
    assert caption_score != empty_score
    # the page's score is the loss attack conditioned on the typed caption (the same call outside the app)
    from mia_core.data import load_uploads
    from mia_core.lab.experiment import condition_attacks, make_attacks
    from mia_core.lab.verdict import score_images

    res, ch = exp.target.resolution, exp.target.channels
    up = load_uploads([("mine.png", png, exp.images.caption_of(sid))], resolution=res, channels=ch).images
    (loss,) = condition_attacks(exp, make_attacks(["loss"], CHEAP_LOSS), None)
    assert score_images(exp.target, up, [loss])["loss"][0] == pytest.approx(caption_score, rel=1e-3)
    # a metadata.jsonl among the uploads fills the caption in
    meta = json.dumps({"file_name": "mine.png", "text": "a handwritten one"}).encode()
    at.file_uploader(key="miu.files").set_value(
        [("mine.png", png, "image/png"), ("metadata.jsonl", meta, "application/jsonl")]
    ).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text_input if t.label == "Caption of mine.png"] == ["a handwritten one"]
    assert "Caption: “a handwritten one”" in [m.value for m in at.markdown]


def test_collection_uploads_on_the_t2i_target_take_captions_from_a_metadata_jsonl(open_page, tmp_path, monkeypatch):
    """The collection test ("Was my collection used?") with uploaded sets on the own-caption target: without captions both sets are
    scored with the empty prompt and the page says so; a metadata.jsonl uploaded with a set conditions each image
    on its caption (the scores of the same call outside the app)."""
    import pages._collection as collection
    from mia_core.data import load_uploads
    from mia_core.lab.experiment import condition_attacks, make_attacks
    from mia_core.lab.uploads import collection_caption_note, collection_prompt_mismatch, encode_png
    from mia_core.lab.verdict import score_images

    exp = _store_loss_runs(tmp_path / "store", 2)
    seen = []  # (captions of the set, scores) per scoring call of the section
    real = collection.score_upload

    def spy(key, target, images, attacks, *, seed):
        scores = real(key, target, images, attacks, seed=seed)
        seen.append((images.captions, scores["loss"].copy()))
        return scores

    monkeypatch.setattr(collection, "score_upload", spy)
    at = _was_my_image_used_on_t2i(open_page)
    at.radio(key="miu.set.source").set_value("uploaded").run()

    def pngs(ids):
        return [(f"{i}.png", encode_png(exp.images.images[exp.images.index_of()[i]]), "image/png") for i in ids]

    members, nonmembers = exp.split.member_ids[:2], exp.split.nonmember_ids[:2]
    at.file_uploader(key="miu.set.suspect").set_value(pngs(members)).run()
    at.file_uploader(key="miu.set.heldout").set_value(pngs(nonmembers)).run()
    assert not at.exception, at.exception
    no_captions = collection_caption_note(None, 2)
    assert no_captions.startswith("No captions: all 2 images are scored with the empty prompt")
    assert [c.value for c in at.caption].count(no_captions) == 2  # one line per set
    assert any(m.label == "p-value" for m in at.metric)
    assert not [w.value for w in at.warning if "p-value compares the prompts" in w.value]  # both: the empty prompt
    assert seen and all(caps is None for caps, _ in seen)
    empty_scores = seen[-2][1]  # the suspect set's, scored first

    meta = "\n".join(json.dumps({"file_name": f"{i}.png", "text": exp.images.caption_of(i)}) for i in members)
    at.file_uploader(key="miu.set.suspect").set_value(
        pngs(members) + [("metadata.jsonl", meta.encode(), "application/jsonl")]
    ).run()
    assert not at.exception, at.exception
    captions = [c.value for c in at.caption]
    assert collection_caption_note(tuple(exp.images.caption_of(i) for i in members), 2) in captions
    assert captions.count(no_captions) == 1  # the held-out set still has none
    # so the two sets are scored under different prompts: the page warns that the p-value compares them too
    assert collection_prompt_mismatch(members, 2, None, 2) in [w.value for w in at.warning]
    suspect = [(caps, sc) for caps, sc in seen if caps is not None]
    assert suspect and suspect[-1][0] == tuple(exp.images.caption_of(i) for i in members)
    assert not np.allclose(suspect[-1][1], empty_scores)  # conditioned on the captions: other scores
    # the same call outside the app: the uploads with their captions, the loss conditioned on each one's own
    up = load_uploads(
        [(n, d, exp.images.caption_of(i)) for (n, d, _), i in zip(pngs(members), members)],
        resolution=exp.target.resolution,
        channels=exp.target.channels,
    ).images
    (loss,) = condition_attacks(exp, make_attacks(["loss"], CHEAP_LOSS), None)
    np.testing.assert_allclose(score_images(exp.target, up, [loss])["loss"], suspect[-1][1], rtol=1e-5)


def test_data_page_edits_captions_into_the_sessions_split_and_runs_are_keyed_by_them(open_page, tmp_path):
    from mia_core.data import Split
    from mia_core.lab.experiment import condition_attacks, load_experiment, make_attacks

    before = _store_loss_runs(tmp_path / "store", 2)  # a stored own-caption run on the unedited captions
    at = open_page("pages/compare.py", run=False)
    at.session_state["cfg.target"], at.session_state["cfg.data"] = T2I, SPLIT
    at.session_state["cfg.limit"], at.session_state["cfg.attacks"] = 2, ["loss"]
    at.session_state["cfg.params"] = CHEAP_LOSS
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="compare.runs").value == ["loss:sweep=,cond=caption"]  # Compare shows the stored run
    at.switch_page("pages/data.py")
    at.run()
    (editor,) = at.data_editor
    table = editor.value
    assert list(table.columns) == ["id", "role", "caption"] and len(table) == 4
    assert at.button(key="data.apply_captions").proto.disabled  # nothing edited yet
    first = table["id"][0]
    new = "a handwritten zero" if table["caption"][0] != "a handwritten zero" else "a handwritten one"
    at.session_state[editor.key] = {"edited_rows": {0: {"caption": new}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception, at.exception
    button = at.button(key="data.apply_captions")
    assert button.label == "Use the edited captions (1 changed)" and not button.proto.disabled
    button.click().run()
    assert not at.exception, at.exception
    assert any("Now using split with edited captions" in m.value for m in at.success), [e.value for e in at.error]
    # the session's split is a manifest that records every caption of the split, the edited one included
    spec = at.session_state["cfg.data"]
    assert spec != SPLIT and spec.startswith(str(tmp_path / "store"))
    manifest = Split.load(spec)
    assert manifest.captions_edited and manifest.captions[first] == new and len(manifest.captions) == 200
    assert sum(manifest.captions[i] != before.images.caption_of(i) for i in before.ids) == 1
    (editor,) = at.data_editor
    assert editor.value["caption"][0] == new and "were edited on this page" in " ".join(m.value for m in at.markdown)
    # runs are keyed by the captions: the edited split's run key differs, and Compare shows no stale result
    after = load_experiment(T2I, spec, limit=2)
    assert after.images.caption_of(first) == new
    keys = [e.run_key(condition_attacks(e, make_attacks(["loss"], CHEAP_LOSS), None)[0], 0) for e in (before, after)]
    assert keys[0] != keys[1]
    at.switch_page("pages/compare.py")
    at.run()
    assert not at.exception, at.exception
    assert any(i.value.startswith("Not stored on this experiment") and "own caption" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_condition_attacks_keys_runs_as_the_cli_does():
    import dataclasses

    import pytest

    from mia_core.attacks import Conditioning
    from mia_core.attacks.conditioning import captions_digest
    from mia_core.lab.experiment import condition_attacks, load_experiment, make_attacks
    from mia_core.lab.run_specs import attack_of, run_id

    exp = load_experiment(T2I, SPLIT, limit=2)
    (loss,) = condition_attacks(exp, make_attacks(["loss"]), None)  # None: each image's own caption
    assert loss.conditioning == Conditioning(captions=captions_digest(exp.images.captions))
    assert run_id(loss) == "loss:cond=caption"
    assert exp.run_key(attack_of(run_id(loss), exp.images.captions), 0) == exp.run_key(loss, 0)  # Compare finds it
    (fixed,) = condition_attacks(exp, make_attacks(["loss"]), {"mode": "fixed", "prompt": "a handwritten one"})
    assert fixed.conditioning.captions == "" and run_id(fixed) == "loss:cond=fixed,prompt=a handwritten one"
    bare = dataclasses.replace(exp, images=dataclasses.replace(exp.images, captions=None))
    with pytest.raises(ValueError, match="needs captions"):
        condition_attacks(bare, make_attacks(["loss"]), "caption")
    pixel = load_experiment("default", "default", limit=1)
    (plain,) = condition_attacks(pixel, make_attacks(["loss"]), "empty")  # pixel targets take no conditioning
    assert plain.conditioning is None
