import re

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


@pytest.mark.parametrize("similarity", ["video", "frame_mean"])
def test_clip_embedding_from_shared_frame_trunk_features(similarity):
    model = small_model("tiny", similarity=similarity)
    size = model.preprocess_cfg.image_size
    frames = torch.randn(6, 3, size, size)
    windows = torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5], [1, 1, 2, 5]])  # overlapping clips of 6 frames
    with torch.no_grad():
        feats = model.encode_frame_trunk(frames)
        shared = model.encode_video_from_trunk(feats[windows])
        ref = model.encode_video(frames[windows])
    assert feats.shape == (6, model.vision_encoder.width)
    torch.testing.assert_close(shared, ref, rtol=1e-5, atol=1e-6)
    divided = small_model("SurgCLIP-B")
    assert model.per_frame_trunk and not divided.per_frame_trunk
    with pytest.raises(ValueError, match="mixes frames inside its video tower"):
        divided.encode_frame_trunk(frames)
    with pytest.raises(ValueError, match=r"expected frames \[N, 3, H, W\], got shape \(6, 3, 1\)"):
        model.encode_frame_trunk(torch.zeros(6, 3, 1))


def test_frame_trunk_takes_uint8_frames_as_the_video_tower_does():
    from surgclip.transform import normalize_frames

    model = small_model("tiny")
    size = model.preprocess_cfg.image_size
    frames = torch.randint(0, 256, (5, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    conv = model.vision_encoder.trunk.patch_embed.proj.weight.clone()
    with torch.no_grad():
        raw = model.encode_frame_trunk(frames)
        ref = model.encode_frame_trunk(normalize_frames(frames, model.preprocess_cfg))
        clips = model.encode_video_from_trunk(raw[None])
        whole = model.encode_video(frames[None])
    torch.testing.assert_close(raw, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(clips, whole, rtol=1e-5, atol=1e-6)
    assert torch.equal(model.vision_encoder.trunk.patch_embed.proj.weight, conv)  # the fold is undone


@pytest.mark.parametrize("name", ["tiny", "SurgCLIP-B"])
def test_bf16_precision_stays_close_to_fp32_and_returns_float32(name):
    model = small_model(name)
    size = model.preprocess_cfg.image_size
    video = torch.randn(2, 4, 3, size, size)
    tokens = surgclip.tokenize(["clipping of the cystic duct", "gallbladder in the bag", "trocar insertion"],
                               surgclip.get_tokenizer(model.config))
    with torch.no_grad():
        ref, _ = model(video, tokens)
        model.set_precision("bf16")
        logits, _ = model(video, tokens)
        v, t = model.encode_video(video), model.encode_text(tokens)
        model.set_precision("fp32")
    assert logits.dtype == v.dtype == t.dtype == torch.float32
    assert not torch.equal(logits, ref)  # bf16 really ran
    assert (logits - ref).abs().max().item() < 1e-2, (logits - ref).abs().max()
    assert next(model.parameters()).dtype == torch.float32  # weights untouched


def test_precision_is_validated_everywhere():
    msg = r"unknown precision 'fp8'; expected one of fp32, bf16, fp16"
    with pytest.raises(ValueError, match=msg):
        surgclip.load("tiny", device="cpu", precision="fp8")
    with pytest.raises(ValueError, match=msg):
        surgclip.create_model("tiny", precision="fp8")
    model = small_model("tiny")
    with pytest.raises(ValueError, match=msg):
        model.set_precision("fp8")
    assert model.precision == "fp32" and model.set_precision("bf16-mixed").precision == "bf16"
    model.set_precision("fp16")
    with pytest.raises(ValueError, match=r"precision 'fp16' needs a CUDA device \(input is on cpu\)"):
        model.encode_video(torch.randn(1, 2, 3, 32, 32))


def test_bf16_on_a_cpu_without_native_bf16_warns(monkeypatch):
    import warnings

    import surgclip.model as model_module

    model = small_model("tiny").set_precision("bf16")
    video = torch.randn(1, 2, 3, model.preprocess_cfg.image_size, model.preprocess_cfg.image_size)
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode_video(video)
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1
    assert re.search(r"precision 'bf16' on a CPU without native bf16 .* use precision='fp32'", messages[0])
    monkeypatch.setattr(model_module, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.encode_video(video)
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert out.dtype == torch.float32


def _published_block(block, x, B, T):
    """The published TimeSformer divided block, transcribed from surgclip 0.1.0 (tokens in (n t) order)."""
    from einops import rearrange

    def attn(mod, y):
        b, n, c = y.shape
        qkv = mod.qkv(y).reshape(b, n, 3, mod.num_heads, c // mod.num_heads).permute(2, 0, 3, 1, 4)
        a = ((qkv[0] @ qkv[1].transpose(-2, -1)) * mod.scale).softmax(-1)
        return mod.proj((a @ qkv[2]).transpose(1, 2).reshape(b, n, c))

    xt = rearrange(x, "b (n t) m -> (b t) n m", b=B, t=T)[:, 1:]
    cls_token = xt[:, 0, :].unsqueeze(1)
    xt = rearrange(xt, "(b t) n m -> (b n) t m", b=B, t=T)
    res = rearrange(attn(block.temporal_attn, block.temporal_norm1(xt)), "(b n) t m -> b (n t) m", b=B, t=T)
    xt = x[:, T:, :] + block.temporal_fc(res)
    xs = torch.cat((cls_token, rearrange(xt, "b (n t) m -> (b t) n m", b=B, t=T)), 1)
    res_s = attn(block.attn, block.norm1(xs))
    cls_token = rearrange(res_s[:, 0, :], "(b t) m -> b t m", b=B, t=T)
    res_s = rearrange(res_s[:, 1:, :], "(b t) n m -> b (n t) m", b=B, t=T)
    x = torch.cat((cls_token, xt), 1) + torch.cat((cls_token, res_s), 1)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("chunk", [None, 7])  # 7: the 30 tokens go through the MLP in 5 chunks, the last partial
def test_frame_major_block_equals_published_block(chunk, monkeypatch):
    from surgclip import video_encoder
    from surgclip.video_encoder import DividedBlock

    if chunk:
        monkeypatch.setattr(video_encoder, "MLP_CHUNK", chunk)
    B, T, S, D = 2, 3, 5, 32
    block = DividedBlock(D, 4, 4.0, True, 0.0, 1e-6).eval()
    for p in block.parameters():  # non-trivial temporal_fc and biases
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(B, T, S, D)  # frame-major; the published layout is (n t): token n * T + t
    with torch.no_grad():
        ours = block(x)
        ref = _published_block(block, x.transpose(1, 2).reshape(B, S * T, D), B, T)
    torch.testing.assert_close(ours.transpose(1, 2).reshape(B, S * T, D), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block(x), ours, rtol=1e-5, atol=1e-5)  # with autograd: the unchunked path


def test_mlp_is_chunked_in_float32_inference_only(monkeypatch):
    """The MLP runs over chunks of MLP_CHUNK tokens in float32 CPU inference, and over all tokens in one
    call under bf16 autocast (oneDNN's bf16 products lose half their rate on the chunks), with the
    same result as the unchunked MLP either way."""
    from surgclip import video_encoder
    from surgclip.video_encoder import DividedBlock

    monkeypatch.setattr(video_encoder, "MLP_CHUNK", 7)
    torch.manual_seed(0)
    block = DividedBlock(32, 4, 4.0, True, 0.0, 1e-6).eval()
    rows = []
    block.mlp.fc2.register_forward_hook(lambda m, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
    x = torch.randn(2, 3, 5, 32)  # 30 tokens
    with torch.no_grad():
        fp32 = block(x)
        assert rows == [6, 6, 6, 6, 6]  # equal chunks of at most 7
        rows.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = block(x)
        assert rows == [30]
        rows.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
            x16 = block.to(torch.bfloat16)(x.bfloat16())  # bf16 weights, no autocast: not chunked either
        assert rows == [30]
    block.float()
    rows.clear()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = block(x)  # autograd on: the plain path
    torch.testing.assert_close(bf16, reference.detach(), rtol=0, atol=0)
    torch.testing.assert_close(fp32, bf16.float(), rtol=0.05, atol=0.05)
    assert x16.dtype == torch.bfloat16


def test_inference_runs_the_temporal_output_as_one_linear_from_the_current_weights(monkeypatch):
    """In inference over >= 2 x width tokens, temporal_attn.proj and temporal_fc run as one fused linear,
    made from the weights as they are on every call: the output equals the two linears' (autograd on)
    after writes through ``.data`` (no version bump) and after a bf16 autocast call."""
    from surgclip.video_encoder import DividedBlock

    torch.manual_seed(0)
    block = DividedBlock(16, 4, 4.0, True, 0.0, 1e-6).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    fused_calls = []
    real = DividedBlock._temporal_output_linear
    monkeypatch.setattr(DividedBlock, "_temporal_output_linear",
                        lambda self, tokens: fused_calls.append(tokens) or real(self, tokens))
    x = torch.randn(2, 3, 6, 16)  # 36 tokens >= 2 x 16

    def both():
        with torch.no_grad():
            fused = block(x)
        return fused, block(x).detach()  # autograd on: the two linears

    for change in (None, "data", "autocast"):
        if change == "data":
            block.temporal_fc.weight.data.mul_(2)  # as an EMA update or a hand-written loader does
            block.temporal_attn.proj.bias.data.add_(0.5)
        elif change == "autocast":
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                block(x)  # a bf16 call first: nothing of it stays behind
        fused, ref = both()
        torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert real(block, 36) is not None and real(block, 31) is None  # fewer tokens than 2 x width: two linears
        seen = []
        handle = block.temporal_fc.register_forward_hook(lambda *a: seen.append(1))
        assert real(block, 36) is None  # a hooked layer runs as itself
        block(x)
        assert seen == [1]
        handle.remove()
        assert block(x[:0]).shape == (0, 3, 6, 16)  # an empty batch
    block.train()
    with torch.no_grad():
        assert real(block, 36) is None  # training: the two linears (drop-path between them)
    assert fused_calls  # the forward asked for the fused linear


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_text_tower_skips_trailing_padding_with_the_same_features(pooling):
    """Prompts padded to the context length run on their used columns only; the pooled features equal
    the full-length transformer's (reference: the HF model called directly on the padded ids)."""
    from surgclip.text_encoder import HFTextEncoder, used_length

    torch.manual_seed(0)
    enc = HFTextEncoder({"model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2,
                         "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 40,
                         "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}, pooling=pooling).eval()
    ids = torch.zeros(3, 40, dtype=torch.long)
    ids[0, :5], ids[1, :9], ids[2, :2] = torch.arange(1, 6), torch.arange(10, 19), torch.tensor([3, 4])
    mask = (ids != 0).long()
    seen = []
    enc.transformer.embeddings.register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
    with torch.no_grad():
        hidden = enc.transformer(input_ids=ids, attention_mask=mask).last_hidden_state  # all 40 columns
        ref = hidden[:, 0] if pooling == "cls" else (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        out = enc(ids)
    assert seen == [40, 9]  # the reference ran 40 columns, the tower the 9 some row uses
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # only trailing padding goes: a padded column before a used one stays
    assert used_length(torch.tensor([[1, 0, 0, 1, 0], [1, 1, 0, 0, 0]])) == 4
    assert used_length(torch.zeros(2, 6, dtype=torch.long)) == 6  # nothing used: left as it is
    assert used_length(torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])) == 4  # an empty row: left as it is


def test_text_tower_keeps_the_full_length_when_traced():
    from surgclip.text_encoder import used_length

    mask = torch.tensor([[1, 1, 0, 0]])
    traced = torch.jit.trace(lambda m: m[:, : used_length(m)] * 1, (mask,), check_trace=False)
    assert traced(torch.tensor([[1, 0, 0, 0]])).shape == (1, 4)  # a trace must not bake in one prompt's length


@pytest.mark.parametrize("name", ["tiny", "SurgCLIP-B", "CLIP-B-16"])
def test_uint8_video_is_normalised_inside_the_model(name):
    """uint8 frames give the embeddings and gradients of the same frames normalised first: the
    normalisation is folded into the patch embedding (a timm trunk, the divided tower, open_clip's
    conv1), which is left as it was afterwards."""
    from surgclip.transform import normalize_frames
    from surgclip.video_encoder import input_conv

    torch.manual_seed(0)
    model = small_model(name, preprocess={"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]})
    conv = input_conv(model.vision_encoder)
    assert conv is not None
    size = model.preprocess_cfg.image_size
    video = torch.randint(0, 256, (2, 2, 3, size, size), dtype=torch.uint8)
    float_video = normalize_frames(video, model.preprocess_cfg)
    calls = []
    conv.register_forward_hook(lambda m, args, out: calls.append(args[0].max().item()))
    model.train()
    grads = []
    for x in (float_video, video):
        model.zero_grad()
        torch.manual_seed(1)  # the same drop-path draws
        emb = model.encode_video(x)
        emb.square().sum().backward()
        grads.append((emb.detach(), conv.weight.grad.clone()))
    assert calls[0] < 10 and calls[1] == 255  # the layer saw normalised, then raw values
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-3, atol=1e-5)
    assert "forward" not in conv.__dict__  # the fold is gone
    dtypes = []
    conv.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.encode_video(video)
    assert dtypes == [torch.float32]  # the folded layer runs in float32 under autocast
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), model.encode_video(float_video), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["tiny", "SurgCLIP-B"])  # a timm patch embedding; the divided tower's
def test_channels_last_uint8_video_keeps_its_layout_into_the_tower(name):
    """A channels-last uint8 batch (as the training collate ships augmented clips) is copied to float
    in its own layout, folded or normalised in the buffer, and gives the contiguous batch's results."""
    from surgclip.video_encoder import input_conv

    torch.manual_seed(0)
    model = small_model(name).train()
    size = model.preprocess_cfg.image_size
    video = torch.randint(0, 256, (2, 2, 3, size, size), dtype=torch.uint8)
    channels_last = video.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    strides = []
    input_conv(model.vision_encoder).register_forward_pre_hook(lambda m, args: strides.append(args[0].stride()))
    for checkpointing in (False, True):  # folded into the patch embedding; normalised in the reused buffer
        model.set_grad_checkpointing(checkpointing)
        results = []
        for x in (video, channels_last):
            model.zero_grad()
            torch.manual_seed(1)
            emb = model.encode_video(x)
            emb.square().sum().backward()
            results.append((emb.detach(), [p.grad.clone() for p in model.vision_encoder.parameters() if p.grad is not None]))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
        for a, b in zip(results[1][1], results[0][1], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert model._pixel_buffer._buf.stride() == torch.empty_like(channels_last, dtype=torch.float32).stride()
    assert strides[0][-3] == size * size and strides[1][-3] == 1  # the tower saw each layout as given
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(channels_last), model.encode_video(video), rtol=1e-5, atol=1e-6)


def test_uint8_video_without_a_foldable_layer_is_normalised_in_a_reused_buffer():
    """Gradient checkpointing (or a tower without a patch embedding) normalises the uint8 frames into
    the model's buffer instead, reused with autograd on once free; inference keeps no copy. The buffer
    is neither copied nor pickled with the model."""
    import copy
    import pickle

    from surgclip.transform import normalize_frames

    torch.manual_seed(0)
    model = small_model("tiny")
    video = torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        expected = model.encode_video(normalize_frames(video, model.preprocess_cfg))
        model.encode_video(video)
    assert model._pixel_buffer._buf is None  # inference: a fresh tensor, not kept
    model.set_grad_checkpointing(True)
    seen = []  # (the tower's input, its address); no reference kept, so the buffer is free again
    hook = model.vision_encoder.register_forward_pre_hook(
        lambda m, args: seen.append((args[0].clone(), args[0].data_ptr())))
    got = model.encode_video(video).detach()  # the graph (and the input it saved) is gone
    model.encode_video(video).detach()
    hook.remove()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen[0][0], normalize_frames(video, model.preprocess_cfg), rtol=0, atol=0)
    assert seen[0][1] == seen[1][1]  # the same memory, written again
    assert model._pixel_buffer._buf is not None
    assert copy.deepcopy(model)._pixel_buffer._buf is None
    assert pickle.loads(pickle.dumps(model._pixel_buffer))._buf is None


def test_normalization_fold_applies_to_its_own_thread_only():
    import threading

    from torch import nn

    from surgclip.video_encoder import normalization_folded_into

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 2, stride=2)
    raw = torch.randint(0, 256, (1, 3, 4, 4)).float()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    normalised = (raw / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    other = {}
    with torch.no_grad(), normalization_folded_into(conv, mean, std):
        folded = conv(raw)
        thread = threading.Thread(target=lambda: other.setdefault("out", conv(normalised)))
        thread.start()
        thread.join()
    with torch.no_grad():
        plain = conv(normalised)
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(other["out"], plain, rtol=0, atol=0)  # the other thread ran the layer as is
    assert "forward" not in conv.__dict__


def test_input_conv_is_none_where_padding_would_break_the_fold():
    from torch import nn

    from surgclip.video_encoder import input_conv

    tower = nn.Module()
    tower.trunk = nn.Module()
    tower.trunk.conv1 = nn.Conv2d(3, 8, 7, stride=2, padding=3)  # a ResNet stem
    assert input_conv(tower) is None
    tower.trunk.conv1 = nn.Conv2d(3, 8, 4, stride=4)
    assert input_conv(tower) is tower.trunk.conv1
