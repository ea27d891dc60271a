"""Inference and training speed on a CUDA GPU by precision, in one process: fp32 against bf16 and fp16
autocast (``precision=`` of ``surgclip.load``; ``trainer.precision: bf16-mixed``), with the logits'
distance to fp32.

Per model (random weights at the registered size: no download), on ``--batch`` clips of
``--frames`` frames and 7 prompts:

- ``forward``: ``model(video, tokens)`` under ``torch.no_grad()``, milliseconds (CUDA events, the
  median of ``--reps`` after warm-up), clips per second, the speed-up over fp32 and
  ``max |logits - fp32 logits|``;
- ``train step``: forward + symmetric InfoNCE + backward + AdamW step (the training module's work
  without Lightning), fp32 against bf16 autocast, milliseconds and the speed-up.

    python eval/bench/bench_gpu.py --models tiny SurgCLIP-B CLIP-B-16 --batch 16 --frames 16
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from results import Recorder, add_out_argument  # eval/bench/results.py

PROMPTS = ["Preparation", "Calot triangle dissection", "Clipping and cutting", "Gallbladder dissection",
           "Gallbladder packaging", "Cleaning and coagulation", "Gallbladder retraction"]
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def median_ms(fn, reps: int, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()``: CUDA events around each call on a GPU, else the wall clock."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_initialized():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def train_step(model, video, tokens, opt, dtype):
    with torch.autocast(video.device.type, dtype=dtype, enabled=dtype is not None):
        v, t = model.encode_video(video), model.encode_text(tokens)
        logits = (model.logit_scale * v @ t.T).float()
    labels = torch.arange(len(v), device=v.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["tiny", "SurgCLIP-B", "CLIP-B-16"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--no-train", action="store_true", help="forward only")
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (fp16 is skipped there)")
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    recorder = Recorder(__file__, args.out)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU (none is visible); --device cpu runs it on the CPU")
    import surgclip

    dev = torch.device(args.device)
    where = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}; batch {args.batch} clips x {args.frames} frames, "
          f"{len(PROMPTS)} prompts; median of {args.reps}")
    for name in args.models:
        overrides = {"open_clip": {"pretrained": None}} if name == "CLIP-B-16" else {}
        torch.manual_seed(0)
        model = surgclip.create_model(name, **overrides).to(dev).eval()
        size = model.preprocess_cfg.image_size
        video = torch.randn(args.batch, args.frames, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
        tokenizer = surgclip.get_tokenizer(model.config)
        tokens = surgclip.tokenize(PROMPTS, tokenizer, device=dev)
        ref = None
        with torch.no_grad():
            for precision in [p for p in AUTOCAST if dev.type == "cuda" or p != "fp16"]:
                model.set_precision(precision)
                logits, _ = model(video, tokens)
                ref = logits if ref is None else ref
                ms = median_ms(lambda: model(video, tokens), args.reps)
                base = ms if precision == "fp32" else base
                print(f"{name:11s} forward    {precision}: {ms:8.2f} ms  {args.batch * 1000 / ms:8.1f} clips/s  "
                      f"x{base / ms:5.2f}  max|dlogits| {(logits - ref).abs().max().item():.2e}", flush=True)
                recorder.add(f"{name} forward {precision}", {
                    "batch": args.batch, "frames": args.frames, "reps": args.reps, "device": where, "ms": ms,
                    "clips_per_s": args.batch * 1000 / ms, "speedup_vs_fp32": base / ms,
                    "max_abs_dlogits": (logits - ref).abs().max().item()},
                    ratio=base / ms, ratio_of="fp32 forward ms / this precision's")
        model.set_precision("fp32")
        if args.no_train:
            continue
        model.train()
        batch = max(2, args.batch // 2)  # half the clips: a training step also holds the activations
        captions = surgclip.tokenize([f"{PROMPTS[i % len(PROMPTS)]} {i}" for i in range(batch)], tokenizer, device=dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            ms = median_ms(lambda: train_step(model, video[:batch], captions, opt, dtype), max(3, args.reps // 2))
            base = ms if precision == "fp32" else base
            peak = f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if dev.type == "cuda" else ""
            print(f"{name:11s} train step {precision}: {ms:8.2f} ms  {batch * 1000 / ms:8.1f} clips/s  x{base / ms:5.2f}  "
                  f"{peak}", flush=True)
            recorder.add(f"{name} train step {precision}", {
                "batch": batch, "frames": args.frames, "device": where, "ms": ms, "clips_per_s": batch * 1000 / ms,
                "speedup_vs_fp32": base / ms,
                "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None},
                ratio=base / ms, ratio_of="fp32 train step ms / this precision's")
        del model, opt
        if dev.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
