import re

import pytest
import torch
import torch.nn.functional as F

import surgclip
from helpers import SMALL_OVERRIDES, small_model


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
    """The plain block, and the prepared one (fused temporal output; with ``chunk``, the MLP in
    chunks), give the published block's output."""
    from surgclip import video_encoder
    from surgclip.video_encoder import DividedBlock

    if chunk:
        monkeypatch.setattr(video_encoder, "MLP_CHUNK", chunk)
    B, T, S, D = 2, 3, 5, 8  # 30 tokens >= 2 x 8: the prepared block fuses the temporal output
    block = DividedBlock(D, 2, 4.0, True, 0.0, 1e-6).eval()
    for p in block.parameters():  # non-trivial temporal_fc and biases
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(B, T, S, D)  # frame-major; the published layout is (n t): token n * T + t
    with torch.no_grad():
        ref = _published_block(block, x.transpose(1, 2).reshape(B, S * T, D), B, T)
        plain = block(x)
        installed = block.prepare_for_inference(chunk_mlp=bool(chunk))
        prepared = block(x)
    assert installed == (("fused_temporal_output", "chunked_mlp") if chunk else ("fused_temporal_output",))
    for ours in (plain, prepared):
        torch.testing.assert_close(ours.transpose(1, 2).reshape(B, S * T, D), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block(x), prepared, rtol=1e-5, atol=1e-5)  # with autograd on: the same rewrites


def test_prepared_block_runs_its_mlp_in_equal_chunks(monkeypatch):
    """A prepared block runs the MLP over equal chunks of at most MLP_CHUNK tokens, with the plain
    block's result and gradients; an empty batch passes through; a hook on a layer of the MLP keeps
    it whole."""
    from surgclip import video_encoder
    from surgclip.video_encoder import DividedBlock

    monkeypatch.setattr(video_encoder, "MLP_CHUNK", 7)
    torch.manual_seed(0)
    block = DividedBlock(32, 4, 4.0, True, 0.0, 1e-6).eval()
    x = torch.randn(2, 3, 5, 32)  # 30 tokens
    grads = []
    for prepared in (False, True):
        block.prepare_for_inference() if prepared else block.remove_inference_rewrites()
        block.zero_grad()
        block(x).square().sum().backward()
        grads.append([p.grad.clone() for p in block.parameters()])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
    block.remove_inference_rewrites()
    with torch.no_grad():
        plain = block(x)
        assert block.prepare_for_inference() == ("fused_temporal_output", "chunked_mlp")
        rows = []
        block.mlp.fc2.register_forward_hook(lambda m, args, out: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0]))
        chunked = block(x)
        assert rows == [6, 6, 6, 6, 6]  # equal chunks of at most 7 (the hook came after the call)
        assert block(x[:0]).shape == (0, 3, 5, 32)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    assert block.prepare_for_inference() == ("fused_temporal_output",)  # hooked fc2: the MLP runs whole again
    rows.clear()
    with torch.no_grad():
        block(x)
    assert rows == [30]


def test_mlp_chunks_only_for_a_float32_cpu_model_at_fp32():
    """Whether the MLP runs in chunks is decided when the model is prepared: not at bf16 precision
    (oneDNN's bf16 products lose half their rate on chunks), again at fp32 (``set_precision``
    prepares a prepared model again), not for bf16 weights; the temporal output is fused in all."""
    model = small_model("SurgCLIP-B")
    assert model.inference_rewrites == {}
    assert model.prepare_for_inference().inference_rewrites == {"fused_temporal_output": 2, "chunked_mlp": 2}
    assert model.set_precision("bf16").inference_rewrites == {"fused_temporal_output": 2}
    assert model.set_precision("fp32").inference_rewrites == {"fused_temporal_output": 2, "chunked_mlp": 2}
    model.to(torch.bfloat16)
    assert model.prepare_for_inference().inference_rewrites == {"fused_temporal_output": 2}
    model.float()
    model.train()
    assert model.inference_rewrites == {}
    assert model.set_precision("bf16").inference_rewrites == {}  # a plain model stays plain


def test_fused_temporal_output_reads_the_current_weights():
    """The fused temporal output is made from the weights as they are at each call: after writes
    through ``.data`` (no version bump, as an EMA update or a hand-written loader does) and after a
    bf16 autocast call, it equals the two linears; fewer rows than 2 x width run the two linears;
    gradients reach both layers' weights."""
    from surgclip.video_encoder import DividedBlock, FusedLinearPair

    torch.manual_seed(0)
    block = DividedBlock(16, 4, 4.0, True, 0.0, 1e-6).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    fused = FusedLinearPair(block.temporal_attn.proj, block.temporal_fc)
    y = torch.randn(2, 3, 6, 16)  # 36 rows >= 2 x 16
    calls = []
    handle = block.temporal_fc.register_forward_hook(lambda *a: calls.append(1))  # counts the plain calls

    def two_linears(v):
        return block.temporal_fc(block.temporal_attn.proj(v))

    for change in (None, "data", "autocast"):
        if change == "data":
            block.temporal_fc.weight.data.mul_(2)
            block.temporal_attn.proj.bias.data.add_(0.5)
        elif change == "autocast":
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                fused(y)  # a bf16 call first: nothing of it stays behind
        calls.clear()
        with torch.no_grad():
            got = fused(y)
        assert calls == []  # one linear, not the layers
        torch.testing.assert_close(got, two_linears(y).detach(), rtol=1e-5, atol=1e-5)
    calls.clear()
    with torch.no_grad():
        fused(y[:, :2, :5])  # 20 rows < 32
    assert calls == [1]
    handle.remove()
    fused(y).square().sum().backward()
    grads = [block.temporal_fc.weight.grad.clone(), block.temporal_attn.proj.weight.grad.clone()]
    block.zero_grad()
    two_linears(y).square().sum().backward()
    torch.testing.assert_close(grads, [block.temporal_fc.weight.grad, block.temporal_attn.proj.weight.grad],
                               rtol=1e-4, atol=1e-5)


def _surgclip_b_shaped(depth: int = 2, num_frames: int = 8):
    """SurgCLIP-B's video tower at its width, heads, patch and frame size (fewer blocks and frames),
    every weight randomised (the temporal branches of blocks after the first start at zero)."""
    torch.manual_seed(0)
    model = surgclip.create_model("SurgCLIP-B", vision=dict(depth=depth, num_frames=num_frames),
                                  text=SMALL_OVERRIDES["SurgCLIP-B"]["text"]).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "temp":
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def test_prepared_model_gives_the_plain_models_outputs():
    """SurgCLIP-B-shaped weights (width 768, 224 px, 8 frames: 1576 tokens, so the temporal output is
    fused and the MLP runs in 2 chunks), uint8 and float input: the prepared model's frame embeddings
    equal the plain model's within 1e-5 of their largest magnitude (measured: under 5e-7; float32 has
    a 6e-8 relative step, and the rewrites change the order of the sums in two products per block).
    Training mode removes the rewrites; a forward hook on a rewritten layer keeps that layer plain."""
    model = _surgclip_b_shaped()
    size = model.preprocess_cfg.image_size
    g = torch.Generator().manual_seed(2)
    inputs = {"uint8": torch.randint(0, 256, (1, 8, 3, size, size), dtype=torch.uint8, generator=g),
              "float": torch.randn(1, 8, 3, size, size, generator=g)}
    with torch.no_grad():
        plain = {k: model.encode_video_frames(v) for k, v in inputs.items()}
        assert model.prepare_for_inference() is model
        assert model.inference_rewrites == {"fused_temporal_output": 2, "chunked_mlp": 2}
        model.prepare_for_inference()  # idempotent
        assert model.inference_rewrites == {"fused_temporal_output": 2, "chunked_mlp": 2}
        for k, v in inputs.items():
            prepared = model.encode_video_frames(v)
            scale = plain[k].abs().max().item()
            torch.testing.assert_close(prepared, plain[k], rtol=0, atol=1e-5 * scale)
            assert not torch.equal(prepared, plain[k])  # the rewrites did run

    blocks = model.vision_encoder.model.blocks
    model.train()  # training: the plain path
    assert model.inference_rewrites == {} and not blocks[0].__dict__.keys() & {"_temporal_output", "_mlp_residual"}
    model.eval()
    seen = []
    blocks[1].temporal_fc.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    blocks[0].mlp.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    model.prepare_for_inference()
    assert blocks[0].inference_rewrites == ("fused_temporal_output",)
    assert blocks[1].inference_rewrites == ("chunked_mlp",)
    with torch.no_grad():
        hooked = model.encode_video_frames(inputs["float"])
    assert seen == [(1, 8, 197, 768), (1, 8, 197, 768)]  # each hooked layer ran once, on the whole input
    torch.testing.assert_close(hooked, plain["float"], rtol=0, atol=1e-5 * plain["float"].abs().max().item())


def test_global_hooks_keep_the_plain_forward_and_evaluators_restore_the_model():
    """A hook registered for every module keeps every layer plain; ``prepare_for_evaluation`` hands
    the model back in its own training mode, without the rewrites it did not have."""
    from torch.nn.modules.module import register_module_forward_hook

    from surgclip.model import prepare_for_evaluation

    model = small_model("SurgCLIP-B").train()
    handle = register_module_forward_hook(lambda *a: None)
    try:
        assert model.prepare_for_inference().inference_rewrites == {}
    finally:
        handle.remove()
    model.train()
    restore = prepare_for_evaluation(model)
    assert not model.training and model.inference_rewrites == {"fused_temporal_output": 2, "chunked_mlp": 2}
    restore()
    assert model.training and model.inference_rewrites == {}
    model.prepare_for_inference()
    prepare_for_evaluation(model)()
    assert not model.training and model.inference_rewrites  # a prepared model stays prepared
    with pytest.raises(RuntimeError, match="training mode: call eval"):
        model.vision_encoder.model.blocks[0].train().prepare_for_inference()


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
