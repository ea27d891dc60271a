"""The model, the evaluator, the indexer and training on a CUDA GPU, each against the same work on the CPU.

Skipped where no GPU is visible (CI has none; a GPU machine runs them with ``python -m pytest
tests/test_cuda.py``).
"""
import json

import lightning as L
import numpy as np
import pytest
import torch

import surgclip
from surgclip.cli import main
from surgclip.datasets import load_benchmark, load_protocol
from surgclip.datasets.protocols import get_prompts
from surgclip.evaluation.index import ClipIndex
from surgclip.evaluation.zeroshot import evaluate_zero_shot
from surgclip.train.module import SurgCLIPModule
from helpers import TINY_TRAIN, small_model, synthetic_datamodule

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")

PROMPTS = ["clipping of the cystic duct", "gallbladder in the bag", "trocar insertion"]


@pytest.mark.parametrize("name", ["tiny", "SurgCLIP-B", "CLIP-B-16"])
def test_a_model_on_cuda_gives_the_cpu_logits_in_every_precision(name):
    model = small_model(name)
    size = model.preprocess_cfg.image_size
    frames = torch.randint(0, 256, (2, 4, 3, size, size), dtype=torch.uint8)
    pixels = surgclip.transform.normalize_frames(frames, model.preprocess_cfg)
    video = torch.randn(2, 4, 3, size, size)  # as test_model's bf16 test on the CPU
    tokens = surgclip.tokenize(PROMPTS, surgclip.get_tokenizer(model.config))
    with torch.no_grad():
        ref, _ = model(video, tokens)
        ref_pixels, _ = model(pixels, tokens)
        model.cuda()
        gpu_tokens = tokens.cuda()
        fp32, _ = model(video.cuda(), gpu_tokens)
        from_uint8, _ = model(frames.cuda(), gpu_tokens)  # normalisation folded into the patch embedding
        low = {}
        for precision in ("bf16", "fp16"):
            low[precision], _ = model.set_precision(precision)(video.cuda(), gpu_tokens)
        model.set_precision("fp32")
    assert fp32.device.type == "cuda" and fp32.dtype == torch.float32
    torch.testing.assert_close(fp32.cpu(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(from_uint8.cpu(), ref_pixels, rtol=1e-4, atol=1e-4)
    for precision, logits in low.items():
        assert logits.dtype == torch.float32, precision
        assert not torch.equal(logits, fp32), precision  # the low precision really ran
        assert (logits - fp32).abs().max().item() < 1e-2, (precision, (logits - fp32).abs().max())
    assert next(model.parameters()).dtype == torch.float32  # weights untouched


def test_load_puts_a_model_on_the_gpu_by_default():
    model, _, tokenizer = surgclip.load("tiny")
    assert next(model.parameters()).device.type == "cuda"
    tokens = surgclip.tokenize(PROMPTS, tokenizer, device="cuda")
    assert model.encode_text(tokens).device.type == "cuda"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return surgclip.save_pretrained(surgclip.create_model("tiny", seed=1), tmp_path_factory.mktemp("m") / "tiny")


def test_zero_shot_on_cuda_scores_as_on_cpu(small_sample, model_dir, tmp_path):
    table = load_benchmark("cholec80", small_sample / "cholec80", split="all")
    prompts = get_prompts(load_protocol("cholec80"), "camma", table.classes)
    scores = {}
    for device in ("cpu", "cuda"):
        model, _, tokenizer = surgclip.load(str(model_dir), device=device)
        scores[device] = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=4, stride_s=0.5).scores
    np.testing.assert_allclose(scores["cuda"], scores["cpu"], atol=1e-4)
    # the CLI on the GPU in bf16: cosine scores within 1e-2 of fp32, the same rows scored
    out = tmp_path / "zs"
    assert main(["zeroshot", "--benchmark", "cholec80", "--root", str(small_sample / "cholec80"), "--split", "all",
                 "--model", str(model_dir), "--num-frames", "4", "--stride-s", "0.5", "--device", "cuda",
                 "--precision", "bf16", "--out", str(out)]) == 0
    report = json.loads((out / "zeroshot.json").read_text())
    assert report["config"]["precision"] == "bf16" and report["metrics"]["num_scored"] == len(table)
    model, _, tokenizer = surgclip.load(str(model_dir), device="cuda", precision="bf16")
    bf16 = evaluate_zero_shot(model, tokenizer, table, prompts, num_frames=4, stride_s=0.5)
    assert report["metrics"]["accuracy"] == pytest.approx(bf16.metrics["accuracy"])
    assert np.abs(bf16.scores - scores["cpu"]).max() < 1e-2


def test_an_index_built_on_cuda_holds_the_cpu_embeddings(small_sample, model_dir, tmp_path, capsys):
    videos = sorted((small_sample / "videos").glob("*/*.mp4"))[:2]
    for device in ("cpu", "cuda"):
        assert main(["index", *map(str, videos), "--index", str(tmp_path / device), "--model", str(model_dir),
                     "--window-s", "6", "--stride-s", "3", "--num-frames", "2", "--device", device]) == 0
    cpu, gpu = ClipIndex(tmp_path / "cpu"), ClipIndex(tmp_path / "cuda")
    assert len(gpu) == len(cpu) > 4 and gpu.clips() == cpu.clips()
    np.testing.assert_allclose(gpu.embeddings(), cpu.embeddings(), atol=1e-4)
    capsys.readouterr()
    for device in ("cpu", "cuda"):
        assert main(["search", "the surgeon clips the cystic duct", "--index", str(tmp_path / device), "-k", "3",
                     "--device", device]) == 0
    hits = [line.split("score") for line in capsys.readouterr().out.splitlines() if "score" in line]
    assert len(hits) == 6, hits
    for (cpu_hit, cpu_score), (gpu_hit, gpu_score) in zip(hits[:3], hits[3:]):  # same clips, same scores
        assert gpu_hit == cpu_hit and float(gpu_score) == pytest.approx(float(cpu_score), abs=1e-3)


def test_lightning_trains_on_cuda_in_bf16_mixed_as_on_cpu(tmp_path):
    """Three steps of the same run on the CPU (fp32) and on the GPU (fp32, then bf16-mixed): the weights
    move the same way (fp32 to float rounding; bf16 nearly, as AdamW's early steps are about the
    gradient's sign, which bf16 flips for gradients near zero)."""
    def run(accelerator, precision):
        L.seed_everything(0)
        module = SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 2, "lr": 1e-3})
        start = torch.cat([p.detach().flatten().clone() for p in module.model.parameters()])
        L.Trainer(accelerator=accelerator, devices=1, precision=precision, max_steps=3, logger=False,
                  enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                  default_root_dir=tmp_path, num_sanity_val_steps=0, limit_val_batches=0).fit(
            module, synthetic_datamodule(module.tokenizer))
        assert next(module.model.parameters()).device.type == ("cuda" if accelerator == "gpu" else "cpu")
        return torch.cat([p.detach().flatten().cpu() for p in module.model.parameters()]) - start

    cpu, gpu, bf16 = run("cpu", "32-true"), run("gpu", "32-true"), run("gpu", "bf16-mixed")
    assert cpu.abs().max() > 1e-4  # the steps moved the weights
    cos = torch.nn.functional.cosine_similarity
    assert cos(gpu, cpu, dim=0) > 0.999, cos(gpu, cpu, dim=0)
    assert cos(bf16, cpu, dim=0) > 0.9, cos(bf16, cpu, dim=0)
    assert not torch.equal(bf16, gpu)  # bf16 really ran
