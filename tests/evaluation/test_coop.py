"""CoOp: the untrained prompt equals the hand-written one (both text towers), training beats that
zero-shot init on separable features, only the context learns, and a seed fixes the result."""
import json

import numpy as np
import pytest
import torch

import surgclip
from surgclip.evaluation import reports
from surgclip.evaluation.coop import coop_probe, make_prompts, readable_class_name, train_coop
from helpers import small_model

NAMES = ["grasping the gallbladder", "clipping the cystic duct", "cutting", "irrigation and suction"]


@pytest.fixture(scope="module")
def small():
    model = small_model("tiny")
    return model, surgclip.get_tokenizer(model.config)


def _features(model, n, seed, noise=1.0):
    """Clip features around 4 random class directions (separable with noise), float32 [n, D]."""
    protos = np.random.default_rng(123).standard_normal((len(NAMES), model.embed_dim))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(NAMES)
    return (protos[y] + rng.standard_normal((n, model.embed_dim)) * noise).astype(np.float32), y


def test_readable_class_name():
    assert readable_class_name("CalotTriangleDissection") == "calot triangle dissection"
    assert readable_class_name("gallbladder_packaging-x") == "gallbladder packaging x"


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_phrase_init_reproduces_the_handwritten_prompt(pooling):
    model = small_model("tiny", text=dict(pooling=pooling))
    tok = surgclip.get_tokenizer(model.config)
    prompts = make_prompts(model, tok, NAMES, ctx_init="a surgical video of")
    assert prompts.n_ctx == 4  # a, surgical, video, of
    with torch.no_grad():
        ref = model.encode_text(tok([f"a surgical video of {n}" for n in NAMES]))
        assert torch.allclose(prompts.text_features(), ref, atol=1e-6)


def test_open_clip_tower(tmp_path):
    import open_clip

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    (tmp_path / "SurgclipTestTinyOC.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "SurgclipTestTinyOC.json")
    model = surgclip.create_model("CLIP-B-16", open_clip={"model": "SurgclipTestTinyOC", "pretrained": None},
                                  preprocess={"image_size": 32}).eval()
    tok = surgclip.get_tokenizer(model.config)
    prompts = make_prompts(model, tok, NAMES, ctx_init="a surgical video of")
    with torch.no_grad():
        ref = model.encode_text(tok([f"a surgical video of {n}" for n in NAMES]))
        assert torch.allclose(prompts.text_features(), ref, atol=1e-5)
    x, y = _features(model, 8, 0)
    trained = train_coop(model, tok, NAMES, x, y, n_ctx=2, epochs=2, lr=0.1)
    assert trained.ctx.shape == (2, 32) and trained.text_features().shape == (4, 16)


def test_training_beats_zero_shot_and_touches_only_the_context():
    # A random [CLS] tower barely sees the class tokens (all class features have cosine ~1), so this test
    # uses mean pooling; the features are drawn around the text features of a hidden "teacher" context,
    # which CoOp can reach and the hand-written prompt does not match.
    model = small_model("tiny", text=dict(pooling="mean"))
    tok = surgclip.get_tokenizer(model.config)
    teacher = make_prompts(model, tok, NAMES, n_ctx=4)
    with torch.no_grad():
        centres = teacher.text_features(ctx=torch.randn(4, model.text_encoder.width,
                                                       generator=torch.Generator().manual_seed(1))).numpy()
    rng = np.random.default_rng(0)
    ytr, yte = np.arange(32) % 4, np.arange(200) % 4
    xtr = (centres[ytr] + rng.standard_normal((32, model.embed_dim)) * 0.2).astype(np.float32)
    xte = (centres[yte] + rng.standard_normal((200, model.embed_dim)) * 0.2).astype(np.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    init = make_prompts(model, tok, NAMES, ctx_init="a surgical video of")
    prompts = train_coop(model, tok, NAMES, xtr, ytr, ctx_init="a surgical video of", epochs=20, lr=0.05, seed=0)
    acc_init = (init.predict(xte) == yte).mean()
    acc = (prompts.predict(xte) == yte).mean()
    assert acc > acc_init + 0.08, (acc_init, acc)
    assert prompts.history[-1] < prompts.history[0] - 0.2
    assert not torch.equal(prompts.ctx, init.ctx)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # towers frozen
    assert all(p.grad is None for p in model.parameters())  # no gradient ever reached them
    assert {k: p.requires_grad for k, p in model.named_parameters()} == flags and not model.training


def test_seeded_and_report_format(small, tmp_path):
    model, tok = small
    xtr, ytr = _features(model, 24, 3)
    a = train_coop(model, tok, NAMES, xtr, ytr, n_ctx=3, epochs=3, lr=0.1, seed=5)
    b = train_coop(model, tok, NAMES, xtr, ytr, n_ctx=3, epochs=3, lr=0.1, seed=5)
    c = train_coop(model, tok, NAMES, xtr, ytr, n_ctx=3, epochs=3, lr=0.1, seed=6)
    assert torch.equal(a.ctx, b.ctx) and a.history == b.history and not torch.equal(a.ctx, c.ctx)
    assert a.ctx.shape == (3, model.text_encoder.width)

    xte, yte = _features(model, 20, 4)
    vte = np.repeat(["t1", "t2"], 10)
    res = coop_probe(model, tok, NAMES, xtr, ytr, xte, yte, vte, shots=(1, 2), seeds=(0, 1), n_ctx=2, epochs=2, lr=0.1)
    assert list(res["results"]) == ["1-shot", "2-shot"]
    for k, entry in ((1, res["results"]["1-shot"]), (2, res["results"]["2-shot"])):
        assert entry["shots"] == k and [r["num_train_frames"] for r in entry["runs"]] == [4 * k, 4 * k]
        f1s = [r["f1"] for r in entry["runs"]]
        assert entry["f1_mean"] == pytest.approx(np.mean(f1s)) and entry["f1_std"] == pytest.approx(np.std(f1s))
    out = reports.write_report(tmp_path, "coop", res["results"], {"metric": res["protocol"]}, {"model": "tiny"},
                               "unknown", [], ["shots"])
    written = json.loads((tmp_path / "coop.json").read_text())
    assert written["metrics"]["1-shot"]["f1_mean"] == pytest.approx(np.mean([r["f1"] for r in res["results"]["1-shot"]["runs"]]))
    assert written["protocol"]["metric"] == res["protocol"] and out["metrics"].keys() == written["metrics"].keys()


def test_bad_input(small):
    model, tok = small
    x, y = _features(model, 8, 0)
    with pytest.raises(ValueError, match="too few for"):
        make_prompts(model, tok, ["a very long class name " * 4], n_ctx=16)
    with pytest.raises(ValueError, match=r"train_labels must be in 0..1"):
        train_coop(model, tok, NAMES[:2], x, y, n_ctx=2, epochs=1)


def test_coop_command(cholec_root, tmp_path, capsys):
    from surgclip.cli import main

    out = tmp_path / "coop"
    assert main(["coop", "--benchmark", "cholec80", "--root", str(cholec_root), "--train-split", "all",
                 "--test-split", "all", "--shots", "1,2", "--seeds", "0", "--epochs", "2", "--n-ctx", "2",
                 "--mode", "frame", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    report = json.loads((out / "coop.json").read_text())
    assert list(report["metrics"]) == ["1-shot", "2-shot"]
    assert report["protocol"]["class_texts"][1] == "calot triangle dissection"
    from surgclip.datasets import load_benchmark

    present = len(np.unique(load_benchmark("cholec80", cholec_root, split="all").labels))
    assert report["metrics"]["2-shot"]["runs"][0]["num_train_frames"] == 2 * present
    printed = capsys.readouterr().out
    assert "CoOp cholec80" in printed and "2-shot: F1" in printed
    assert main(["coop", "--root", str(cholec_root), "--shots", "1,x"]) == 1


def test_hf_tower_runs_the_used_columns_with_the_full_length_result(small):
    """The spliced prompts run up to their last used column; the pooled features equal the
    transformer's on all columns (tiny pads to 32)."""
    from surgclip.evaluation.coop import _TextTowerAdapter

    model, tok = small
    prompts = make_prompts(model, tok, NAMES, ctx_init="a surgical video of")
    adapter = _TextTowerAdapter(model)
    ids, mask = prompts.ids, prompts.mask
    assert ids.shape[1] == 32 and int(mask.sum(1).max()) < 28  # trailing columns to drop, after 4 context slots
    embeds = adapter.embed(ids)
    lengths = []
    hook = model.text_encoder.transformer.embeddings.register_forward_hook(lambda m, a, out: lengths.append(out.shape[1]))
    with torch.no_grad():
        full = model.text_encoder.transformer(inputs_embeds=embeds, attention_mask=mask).last_hidden_state[:, 0]
        pooled = adapter.pooled(embeds, ids, mask)
    hook.remove()
    assert lengths[0] == 32 and lengths[1] == int(mask.sum(1).max())
    torch.testing.assert_close(pooled, full, rtol=1e-5, atol=1e-5)
