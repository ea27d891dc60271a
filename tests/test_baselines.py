"""The SurgLaVi table's other rows as models: CAMMA's key layout, MedSigLIP against transformers'
own SigLIP forward, CLIP by its table name, clear errors for absent files and wrong checkpoints.
(Parity with CAMMA's own code: tests/test_camma_parity.py.)"""
import json

import pytest
import torch
import torch.nn.functional as F

import surgclip
from helpers import SMALL_OVERRIDES, small_model
from surgclip.baselines.camma import POOLER, to_camma_keys


def _camma_file(model, path):
    sd = to_camma_keys(model.state_dict())
    width = model.text_encoder.width
    sd[POOLER + "dense.weight"], sd[POOLER + "dense.bias"] = torch.randn(width, width), torch.randn(width)
    sd["backbone_text.model.embeddings.position_ids"] = torch.arange(80)[None]  # as transformers 4.30 saved it
    torch.save(sd, path)
    return path


def test_camma_checkpoint_loads_strictly_and_reproduces_the_model(tmp_path):
    source = small_model("HecVL")
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name != "temp":  # CAMMA's files hold no temperature: it stays 0.01
                p.add_(torch.randn_like(p) * 0.05)
    path = _camma_file(source, tmp_path / "HecVL.pth")
    model, preprocess, tokenizer = surgclip.load("HecVL", device="cpu", pretrained=path, **SMALL_OVERRIDES["HecVL"])
    assert model.num_frames == 1 and model.similarity == "frame_mean"
    assert preprocess.cfg.resize == "laparoscopic" and preprocess.cfg.mean == (0.485, 0.456, 0.406)
    ids = surgclip.tokenize(["In packaging phase I put the gallbladder into the specimen bag"], tokenizer)
    assert ids[0, (ids[0] != 0).sum() - 1] == 102  # [SEP] closes the text, as CAMMA's tokenizer writes it
    video = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), source.encode_video(video), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model.encode_text(ids), source.encode_text(ids), rtol=1e-5, atol=1e-6)
    assert surgclip.checkpoint.weights_hash(model) == surgclip.checkpoint.weights_hash(source)


def test_camma_file_initialises_training_and_own_layout_loads_a_camma_model(tmp_path):
    """The layout is read from the keys, wherever weights are loaded: a CAMMA file as a fine-tuning start
    (``model.init_from``), and a CAMMA model saved in surgclip's own layout through ``surgclip.load``."""
    from surgclip.train.module import SurgCLIPModule

    source = small_model("SurgVLP")
    with torch.no_grad():
        for name, p in source.named_parameters():
            if name != "temp":
                p.add_(torch.randn_like(p) * 0.05)
    path = _camma_file(source, tmp_path / "SurgVLP.pth")
    module = SurgCLIPModule(model="SurgVLP", model_overrides=SMALL_OVERRIDES["SurgVLP"], init_from=str(path))
    expected = {k: v for k, v in source.state_dict().items() if k != "temp"}
    got = module.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    torch.save(source.state_dict(), tmp_path / "ours.pth")
    model, _, _ = surgclip.load("SurgVLP", device="cpu", pretrained=tmp_path / "ours.pth", **SMALL_OVERRIDES["SurgVLP"])
    assert surgclip.checkpoint.weights_hash(model) == surgclip.checkpoint.weights_hash(source)


def test_camma_text_embedding_is_their_word_piece_sum_over_77_slots():
    model = small_model("SurgVLP")
    tokenizer = surgclip.get_tokenizer(model.config)
    ids = surgclip.tokenize(["hepatocystic triangle dissection", "clipping"], tokenizer)
    with torch.no_grad():
        out = model.text_encoder.transformer(input_ids=ids, attention_mask=(ids != 0).long(), output_hidden_states=True)
        emb = model.encode_text(ids, normalize=False)
    vocab = {i: w for w, i in tokenizer._tok.get_vocab().items()}
    layers = torch.stack(out.hidden_states[-4:], 1)  # [N, 4, L, W]
    for n in range(len(ids)):  # CAMMA's loop: word pieces summed into words up to [SEP], zero slots to 77, mean
        words, bank = [], []
        for t, i in enumerate(ids[n].tolist()):
            piece = vocab[i]
            if piece == "[SEP]":
                words += [torch.stack(bank).sum(0), layers[n, :, t]]
                break
            if piece.startswith("##"):
                bank.append(layers[n, :, t])
            else:
                if bank:
                    words.append(torch.stack(bank).sum(0))
                bank = [layers[n, :, t]]
        slots = torch.cat([torch.stack(words), torch.zeros(ids.shape[1] - len(words), *words[0].shape)])
        torch.testing.assert_close(emb[n], slots.mean(0).sum(0), rtol=1e-5, atol=1e-6)


def test_surgclip_file_given_as_peskavlp_names_its_architecture(tmp_path):
    path = tmp_path / "surgclip_beta.pth"
    torch.save(small_model("SurgCLIP-B").state_dict(), path)
    with pytest.raises(surgclip.CheckpointMismatchError, match=r"missing: backbone_img.*look like SurgCLIP-B"):
        surgclip.load("PeskaVLP", device="cpu", pretrained=path, **SMALL_OVERRIDES["PeskaVLP"])


def test_camma_weights_offline_name_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGCLIP_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(surgclip.WeightsNotFoundError,
                       match=r"SurgVLP weights 'SurgVLP.pth': not in the cache.*offline.*https://seafile.unistra.fr/f/93757ace1bfc47248e1e.*"
                             r"zip.*" + str(tmp_path / "SurgVLP.pth")):
        surgclip.load("SurgVLP", device="cpu", **SMALL_OVERRIDES["SurgVLP"])


def test_coop_on_a_camma_model_reproduces_the_hand_written_prompt():
    from surgclip.evaluation.coop import make_prompts

    model = small_model("PeskaVLP")
    tokenizer = surgclip.get_tokenizer(model.config)
    prompts = make_prompts(model, tokenizer, ["calot triangle dissection", "clipping"], ctx_init="in this phase i")
    with torch.no_grad():
        ref = model.encode_text(tokenizer(["in this phase i calot triangle dissection", "in this phase i clipping"]))
        torch.testing.assert_close(prompts.text_features(), ref, rtol=1e-5, atol=1e-6)


def _tiny_siglip(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(
        text_config=dict(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, pad_token_id=1, bos_token_id=2,
                         eos_token_id=2),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2))
    hf = SiglipModel(config).eval()
    with torch.no_grad():
        hf.logit_scale.fill_(2.0)
        hf.logit_bias.fill_(-3.0)
    hf.save_pretrained(folder)
    words = ["<unk>", "<pad>", "</s>"] + "the a of gallbladder clipping dissection cystic duct hook phase".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                            eos_token="</s>").save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "resample": 2}))
    return hf


def test_medsiglip_equals_transformers_siglip_forward(tmp_path):
    hf = _tiny_siglip(tmp_path)
    model, preprocess, tokenizer = surgclip.load("MedSigLIP", device="cpu", pretrained=tmp_path)
    assert preprocess.cfg.image_size == 32 and preprocess.cfg.interpolation == "bilinear"
    texts = ["clipping of the cystic duct", "the gallbladder", "hook dissection phase"]
    ids = surgclip.tokenize(texts, tokenizer, max_length=tokenizer.context_length)
    ref_ids = tokenizer._tok(texts, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    assert torch.equal(ids, ref_ids) and ids.shape == (3, 16)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf(input_ids=ids, pixel_values=pixels)
        image = model.encode_video_frames(pixels[:, None]).squeeze(1)
        text = model.encode_text(ids, normalize=False)
        logits, _ = model(pixels[:, None], ids)
    ref_image = hf.get_image_features(pixel_values=pixels)
    ref_image = getattr(ref_image, "pooler_output", ref_image)
    ref_text = hf.get_text_features(input_ids=ids)
    ref_text = getattr(ref_text, "pooler_output", ref_text)
    rel = lambda a, b: ((a - b).abs().max() / b.abs().max()).item()
    assert rel(image, ref_image) < 1e-5 and rel(text, ref_text) < 1e-5
    # the cosine logits, scaled by exp(logit_scale); SigLIP adds logit_bias to every logit alike
    torch.testing.assert_close(logits + hf.logit_bias, ref.logits_per_image, rtol=1e-5, atol=1e-5)


def test_medsiglip_offline_names_hub_id_licence_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SURGCLIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(surgclip.WeightsNotFoundError) as err:
        surgclip.load("MedSigLIP", device="cpu")
    for part in ("google/medsiglip-448", "Health AI Developer Foundations", str(tmp_path / "cache" / "medsiglip-448")):
        assert part in str(err.value)


def test_siglip_file_given_as_medsiglip_with_missing_key_lists_it(tmp_path):
    _tiny_siglip(tmp_path)
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tmp_path / "model.safetensors"))
    sd.pop("logit_bias")
    sd["extra.weight"] = torch.zeros(1)
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(surgclip.CheckpointMismatchError, match="1 missing: logit_bias; 1 unexpected: extra.weight"):
        surgclip.load("MedSigLIP", device="cpu", pretrained=tmp_path)


def test_coop_says_which_towers_it_cannot_use(tmp_path):
    from surgclip.evaluation.coop import make_prompts

    _tiny_siglip(tmp_path)
    model, _, tokenizer = surgclip.load("MedSigLIP", device="cpu", pretrained=tmp_path)
    with pytest.raises(ValueError, match="MedSigLIP.*SiglipTextEncoder, which does not"):
        make_prompts(model, tokenizer, ["a"], n_ctx=2)


def test_clip_row_is_open_clip_vit_b16_and_names_are_listed():
    model = surgclip.create_model("CLIP", open_clip={"pretrained": None})
    assert model.name == "CLIP" and model.config["open_clip"]["model"] == "ViT-B-16"
    assert {"CLIP", "MedSigLIP", "SurgVLP", "HecVL", "PeskaVLP", "SurgCLIP-B", "tiny"} <= set(surgclip.available_models())
    with pytest.raises(ValueError, match="known models: .*HecVL.*MedSigLIP"):
        surgclip.create_model("SurgVLP2")


def test_camma_release_zip_is_unpacked_to_the_checkpoint(tmp_path, monkeypatch):
    import zipfile

    from surgclip.pretrained import resolve_file

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("SURGCLIP_OFFLINE", raising=False)
    monkeypatch.setenv("SURGCLIP_CACHE", str(tmp_path / "cache"))
    with zipfile.ZipFile(tmp_path / "release.zip", "w") as z:  # as CAMMA's links serve it: the .pth in a folder
        z.writestr("PeskaVLP/readme.txt", "x")
        z.writestr("PeskaVLP/PeskaVLP.pth", b"weights bytes")
    record = {"file": "PeskaVLP.pth", "url": (tmp_path / "release.zip").as_uri(), "archive": "zip"}
    path = resolve_file("PeskaVLP", record)
    assert path == tmp_path / "cache" / "PeskaVLP.pth" and path.read_bytes() == b"weights bytes"
    assert sorted(p.name for p in path.parent.iterdir()) == ["PeskaVLP.pth"]  # no archive or temporary left
    with pytest.raises(surgclip.WeightsNotFoundError, match="holds no HecVL.pth"):
        resolve_file("HecVL", {**record, "file": "HecVL.pth"})
