"""Training-step throughput: the LightningModule (our loss, logging, schedule) vs a bare PyTorch loop
of the same model's forward + backward + AdamW step, in the same process on the same batches; and
peak memory of one SurgCLIP-B step with and without gradient checkpointing.

    python eval/bench/bench_train.py                 # tiny (batch 16, 8 frames) + SurgCLIP-B (batch 2, 16 frames)
    python eval/bench/bench_train.py --skip-b        # tiny only
    python eval/bench/bench_train.py --uint8-only    # uint8 batches: normalised first vs folded into the model

Prints clips/s for both and their ratio (target: Lightning / bare >= 0.9), then the same for
``trainer.precision: bf16-mixed`` (bare loop under ``torch.autocast(bfloat16)``) with its step time
beside fp32's and the speed-up.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from results import Recorder, add_out_argument  # eval/bench/results.py

RECORDER: Recorder | None = None  # set by main(): where each comparison appends its row


def make_batch(model, batch: int, frames: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    size = model.preprocess_cfg.image_size
    captions = [f"the surgeon dissects tissue number {i} with the hook" for i in range(batch)]
    from surgclip import get_tokenizer

    tok = get_tokenizer(model.config)
    return {"video": torch.randn(batch, frames, 3, size, size, generator=g), "tokens": tok(captions),
            "caption": captions, "video_id": [f"v{i}" for i in range(batch)], "level": torch.ones(batch, dtype=torch.long),
            "caption_id": torch.arange(batch), "start_s": torch.zeros(batch), "end_s": torch.ones(batch)}


def bare_loop(model, batch: dict, steps: int, warmup: int, bf16: bool = False) -> float:
    """clips/s of forward + CLIP loss + backward + AdamW step, no framework (bf16: under autocast)."""
    import contextlib

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model.train()
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
            v = model.encode_video(batch["video"])
            t = model.encode_text(batch["tokens"])
            logits = (model.logit_scale * v @ t.T).float()
        labels = torch.arange(len(v))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * len(batch["video"]) / (time.perf_counter() - start)


def lightning_loop(name: str, overrides: dict, batch: dict, steps: int, warmup: int, grad_ckpt: bool = False,
                   precision: str = "32-true") -> float:
    """clips/s of SurgCLIPModule.fit on the same batch repeated (timed between warmup and the end)."""
    import lightning as L
    from torch.utils.data import DataLoader, Dataset

    from surgclip.train.module import SurgCLIPModule

    class Repeat(Dataset):
        def __len__(self):
            return warmup + steps

        def __getitem__(self, i):
            return batch

    class Timer(L.Callback):
        def on_train_batch_start(self, trainer, module, b, i):
            if i == warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, module):
            self.elapsed = time.perf_counter() - self.start

    module = SurgCLIPModule(model=name, model_overrides=overrides, optim={"lr": 1e-5, "warmup_steps": 0},
                            grad_checkpointing=grad_ckpt)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, logger=False, precision=precision,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer], limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=1)
    trainer.fit(module, DataLoader(Repeat(), batch_size=None, num_workers=0))
    return steps * len(batch["video"]) / timer.elapsed


def compare(name: str, batch_size: int, frames: int, steps: int, warmup: int, overrides: dict | None = None) -> dict:
    import surgclip

    overrides = overrides or {}
    model = surgclip.create_model(name, **overrides)
    batch = make_batch(model, batch_size, frames)
    bare = bare_loop(model, batch, steps, warmup)
    del model
    lit = lightning_loop(name, overrides, batch, steps, warmup)
    bare2 = bare_loop(surgclip.create_model(name, **overrides), batch, steps, warmup)  # bracket drift
    bare = (bare + bare2) / 2
    out = {"model": name, "batch": batch_size, "frames": frames, "bare_clips_s": bare, "lightning_clips_s": lit,
           "ratio": lit / bare}
    print(f"{name:10s} batch {batch_size} x {frames} frames: bare {bare:7.2f} clips/s | Lightning+InfoNCE "
          f"{lit:7.2f} clips/s | ratio {lit / bare:.3f}", flush=True)
    _record(f"{name} batch {batch_size} x {frames} frames, Lightning vs bare loop", {**out, "steps": steps},
            ratio=lit / bare, ratio_of="Lightning+InfoNCE clips/s / bare PyTorch loop clips/s")
    return out


def _record(row: str, figures: dict, **kw) -> None:
    if RECORDER is not None:
        RECORDER.add(row, figures, **kw)


def compare_bf16(name: str, batch_size: int, frames: int, steps: int, warmup: int, lightning: bool = True) -> dict:
    """fp32 vs bf16 autocast (bare) and ``precision="bf16-mixed"`` (Lightning), interleaved in one process."""
    import surgclip

    model = surgclip.create_model(name)
    batch = make_batch(model, batch_size, frames)
    fp32 = [bare_loop(surgclip.create_model(name), batch, steps, warmup)]
    bf16 = [bare_loop(surgclip.create_model(name), batch, steps, warmup, bf16=True)]
    fp32.append(bare_loop(surgclip.create_model(name), batch, steps, warmup))  # bracket drift
    bf16.append(bare_loop(surgclip.create_model(name), batch, steps, warmup, bf16=True))
    fp32_s, bf16_s = sum(fp32) / 2, sum(bf16) / 2
    out = {"model": name, "precision": "bf16-mixed", "batch": batch_size, "frames": frames,
           "fp32_step_ms": 1000 * batch_size / fp32_s, "bf16_step_ms": 1000 * batch_size / bf16_s,
           "bf16_speedup": bf16_s / fp32_s}
    line = (f"{name:10s} batch {batch_size} x {frames} frames: step fp32 {out['fp32_step_ms']:.0f} ms | bf16 autocast "
            f"{out['bf16_step_ms']:.0f} ms | bf16 speed-up {out['bf16_speedup']:.2f}x")
    if lightning:
        lit = lightning_loop(name, {}, batch, steps, warmup, precision="bf16-mixed")
        out.update(lightning_bf16_clips_s=lit, lightning_bf16_ratio=lit / bf16_s)
        line += f" | Lightning bf16-mixed {lit:7.2f} clips/s, ratio to bare bf16 {lit / bf16_s:.3f}"
    print(line, flush=True)
    _record(f"{name} batch {batch_size} x {frames} frames, bf16 autocast vs fp32 step", {**out, "steps": steps},
            ratio=out["bf16_speedup"], ratio_of="fp32 step time / bf16 autocast step time")
    return out


def compare_uint8_input(rounds: int, warmup: int = 2) -> dict:
    """The embedded default's step (``tiny`` at 160 px, batch 32 x 8 frames, as ``configs/sample.yaml``)
    on a uint8 batch: normalised first into a reused float buffer, then the step on the float batch
    (what the module did before ``encode_video`` took uint8 frames), against the step on the uint8
    batch itself (the normalisation folded into the patch embedding). Alternated step by step in one
    process; median ms per step, the normalisation included."""
    import statistics

    import surgclip
    from surgclip.transform import ReusableBuffer, normalize_frames

    overrides = {"preprocess": {"image_size": 160}, "vision": {"timm": {"img_size": 160}}, "text": {"pooling": "mean"}}
    model = surgclip.create_model("tiny", **overrides).train()
    batch = make_batch(model, 32, 8)
    g = torch.Generator().manual_seed(1)
    batch["video"] = torch.randint(0, 256, batch["video"].shape, dtype=torch.uint8, generator=g)
    opt, buffer = torch.optim.AdamW(model.parameters(), lr=1e-5), ReusableBuffer()

    def step(normalise_first: bool) -> float:
        start = time.perf_counter()
        video = batch["video"]
        if normalise_first:
            video = normalize_frames(video, model.preprocess_cfg, out=buffer.get(video.shape, video.device))
        v, t = model.encode_video(video), model.encode_text(batch["tokens"])
        logits = model.logit_scale * v @ t.T
        labels = torch.arange(len(v))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    times = {True: [], False: []}
    for i in range(warmup + rounds):
        for normalise_first in (True, False) if i % 2 else (False, True):
            took = step(normalise_first)
            if i >= warmup:
                times[normalise_first].append(took)
    before, after = (1000 * statistics.median(times[k]) for k in (True, False))
    print(f"tiny 160 px batch 32 x 8 frames (the embedded default's step), uint8 batch: normalised first {before:.0f} ms "
          f"| into the model as uint8 (normalisation folded) {after:.0f} ms | speed-up {before / after:.3f}x "
          f"(median of {rounds}, alternated)", flush=True)
    out = {"model": "tiny", "uint8_normalised_first_ms": before, "uint8_folded_ms": after, "speedup": before / after}
    _record("tiny 160 px batch 32 x 8 frames, uint8 batch folded vs normalised first", {**out, "rounds": rounds},
            ratio=before / after, ratio_of="step normalising first / step with the normalisation folded")
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def peak_memory_child(grad_ckpt: bool) -> None:
    """One SurgCLIP-B training step at batch 2 x 16 frames; prints peak RSS (MiB) as JSON.

    RSS is sampled every 5 ms by a thread (``ru_maxrss`` cannot be used: Linux carries it over
    from the parent process across fork + exec).
    """
    import threading

    import surgclip

    torch.set_num_threads(2)
    model = surgclip.create_model("SurgCLIP-B").train()
    model.set_grad_checkpointing(grad_ckpt)
    batch = make_batch(model, 2, 16)
    base, peak, done = rss_mib(), [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    bare_loop(model, batch, steps=1, warmup=0)
    elapsed = time.perf_counter() - start
    done.set()
    watcher.join()
    print(json.dumps({"grad_ckpt": grad_ckpt, "peak_rss_mib": peak[0], "rss_before_step_mib": base,
                      "step_s": elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-b", action="store_true", help="skip the SurgCLIP-B step and memory figures")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--uint8-only", action="store_true",
                        help="only the embedded default's step on uint8 batches, normalised first vs folded")
    parser.add_argument("--child", choices=["mem", "mem-ckpt"], help=argparse.SUPPRESS)
    add_out_argument(parser, __file__)
    args = parser.parse_args()
    if args.child:
        return peak_memory_child(args.child == "mem-ckpt")
    global RECORDER
    RECORDER = Recorder(__file__, args.out)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.uint8_only:
        print(json.dumps([compare_uint8_input(args.steps)], indent=1))
        return
    results = [compare("tiny", 16, 8, args.steps, 3)]
    results.append(compare_uint8_input(args.steps))
    results.append(compare_bf16("tiny", 16, 8, args.steps, 3))
    if not args.skip_b:
        results.append(compare("SurgCLIP-B", 2, 16, 2, 1))
        from surgclip.model import cpu_has_fast_bf16

        if cpu_has_fast_bf16():  # without native bf16 a ViT-B step under autocast takes many minutes
            results.append(compare_bf16("SurgCLIP-B", 2, 16, 1, 1, lightning=False))
        else:
            print("SurgCLIP-B bf16 step not timed: this CPU has no native bf16 (AVX512-BF16/AMX)", flush=True)
        for mode in ("mem", "mem-ckpt"):  # a fresh process each, so peak RSS is this step's alone
            out = subprocess.run([sys.executable, __file__, "--child", mode], capture_output=True, text=True, check=True)
            mem = json.loads(out.stdout.strip().splitlines()[-1])
            results.append(mem)
            print(f"SurgCLIP-B step, batch 2 x 16 frames, grad checkpointing {'on ' if mem['grad_ckpt'] else 'off'}: "
                  f"peak RSS {mem['peak_rss_mib']:.0f} MiB (model alone {mem['rss_before_step_mib']:.0f} MiB), "
                  f"step {mem['step_s']:.1f} s", flush=True)
            _record(f"SurgCLIP-B step, batch 2 x 16 frames, grad checkpointing {'on' if mem['grad_ckpt'] else 'off'}",
                    mem)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
