import pytest
import torch
import torch.nn.functional as F

import surgclip
from helpers import small_model


@pytest.mark.parametrize("name", surgclip.list_models())
def test_every_architecture_builds_and_scores(name):
    model = small_model(name)
    size = model.preprocess_cfg.image_size
    video = torch.randn(2, 3, 3, size, size)
    tokenizer = surgclip.get_tokenizer(model.config)
    tokens = surgclip.tokenize(["clipping of the cystic duct", "gallbladder in the bag", "trocar insertion"], tokenizer)
    with torch.no_grad():
        logits_v, logits_t = model(video, tokens)
        v, t = model.encode_video(video), model.encode_text(tokens)
    assert logits_v.shape == (2, 3) and torch.equal(logits_t, logits_v.T)
    assert v.shape == (2, model.embed_dim) and t.shape == (3, model.embed_dim)
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(logits_v, v @ t.T / model.temp, rtol=1e-5, atol=1e-5)


def test_frame_mean_similarity_is_mean_of_per_frame_cosines():
    model = small_model("SurgCLIP-B")
    video = torch.randn(2, 4, 3, 32, 32)
    tokens = surgclip.tokenize(["a", "b c"], surgclip.get_tokenizer(model.config))
    with torch.no_grad():
        frames = model.vision_proj(model.vision_encoder(video))  # [B, T, D]
        text = model.text_proj(model.text_encoder(tokens))
        # the published formula: einsum over normalised per-frame and text features, mean over T
        ref = torch.einsum("mld,nd->mln", F.normalize(frames, dim=-1), F.normalize(text, dim=-1)).mean(1) / model.temp
        logits, _ = model(video, tokens)
    torch.testing.assert_close(logits, ref, rtol=1e-5, atol=1e-6)


def test_video_similarity_pools_before_normalising():
    model = small_model("tiny")
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        frames = model.encode_video_frames(video)
        v = model.encode_video(video)
    torch.testing.assert_close(v, F.normalize(frames.mean(1), dim=-1))


def test_temperature_is_capped():
    model = small_model("tiny")
    with torch.no_grad():
        model.temp.fill_(1e-4)
    assert model.logit_scale.item() == pytest.approx(100.0)


def test_encode_text_accepts_mapping_and_1d_ids():
    model = small_model("tiny")
    tok = surgclip.get_tokenizer(model.config)
    ids = tok(["cystic artery"])
    with torch.no_grad():
        a = model.encode_text(ids)
        b = model.encode_text({"input_ids": ids, "attention_mask": (ids != 0).long()})
        c = model.encode_text(ids[0])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_bad_video_shapes_are_explained():
    model = small_model("tiny")
    tokens = surgclip.get_tokenizer(model.config)(["x"])
    with pytest.raises(ValueError, match=r"expected video \[B, T, 3, H, W\].*unsqueeze"):
        model(torch.randn(3, 3, 32, 32), tokens)
    with pytest.raises(ValueError, match=r"expected video \[B, T, 3, H, W\], got shape \(1, 3, 4, 32, 32\)"):
        model(torch.randn(1, 3, 4, 32, 32), tokens)


def test_empty_text_list_is_an_error():
    tok = surgclip.get_tokenizer("tiny")
    with pytest.raises(ValueError, match="empty list of texts"):
        surgclip.tokenize([], tok)
    with pytest.raises(TypeError, match="text 1 is a int"):
        tok(["ok", 3])


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown model 'SurgCLIP-X'.*SurgCLIP-B.*tiny"):
        surgclip.create_model("SurgCLIP-X")
    with pytest.raises(ValueError, match="unknown temporal module 'lstm'"):
        surgclip.create_model("tiny", vision={"temporal": "lstm"})


def test_create_model_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a, b = small_model("tiny"), small_model("tiny")
    assert torch.equal(torch.random.get_rng_state(), before)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_grad_checkpointing_gives_same_gradients():
    model = small_model("SurgCLIP-B").train()
    for m in model.modules():  # determinism: no dropout / drop-path
        if isinstance(m, torch.nn.Dropout) or type(m).__name__ == "DropPath":
            m.p = 0.0
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
    video = torch.randn(2, 4, 3, 32, 32)
    tokens = surgclip.get_tokenizer(model.config)(["a b", "c d"])

    def grads():
        model.zero_grad()
        model(video, tokens)[0].logsumexp(1).sum().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.set_grad_checkpointing(True)
    ckpt = grads()
    assert plain.keys() == ckpt.keys()
    for k in plain:
        torch.testing.assert_close(plain[k], ckpt[k], rtol=1e-4, atol=1e-6)
