"""SurgCLIP-B against the published package (PyPI surgclip 0.1.0), same weights and input, one command.

The published package needs transformers 4.33, so it runs in a worker subprocess with
``PYTHONPATH=.peer/site`` (``bash tests/install_peer.sh`` installs it). The worker builds the published
model with randomised weights (as ``../shared/tools/peer_reference.py`` does) and saves them; this
process loads them into ours. Timings alternate between the worker and this process round by round
(median of ``--reps``), so both see the same machine load. Prints three ratios:

1. fp32 forward: published time / ours (+ logits relative error, ours vs published);
2. bf16 forward (``precision="bf16"``): published fp32 time / ours (+ logits abs error vs our fp32);
3. ``VideoPreprocessor`` from a frame folder: published time / ours (+ max abs tensor difference),
   for one cold call and for a sweep over consecutive anchors (every frame of a video, as a per-frame
   evaluation does).

    bash tests/install_peer.sh && python eval/bench/bench_peer.py --frames 16 --prompts 7 --reps 3
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import Recorder, add_out_argument  # eval/bench/results.py (standard library only)

REPO = Path(__file__).resolve().parents[2]
VOCAB = REPO / "surgclip" / "assets" / "bert-base-uncased-vocab.txt"
PROMPTS = ["Preparation", "Calot triangle dissection", "Clipping and cutting", "Gallbladder dissection",
           "Gallbladder packaging", "Cleaning and coagulation", "Gallbladder retraction"]


def peer_worker(tmp: Path, threads: int) -> None:
    """Runs under PYTHONPATH=.peer/site: build the published model, then answer timing commands."""
    import torch

    torch.set_num_threads(threads)
    import surgclip  # the published package
    from surgclip.config import get_config
    from surgclip.model import SurgCLIP
    from surgclip.tokenizer import load_tokenizer, tokenize
    from surgclip.transforms import VideoPreprocessor
    from transformers import BertConfig, BertModel

    assert surgclip.__version__ == "0.1.0", f"not the published package: {surgclip.__file__}"
    bert = tmp / "bert"
    bert.mkdir(exist_ok=True)
    (bert / "vocab.txt").write_text(VOCAB.read_text())
    (bert / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    cfg_path = Path(surgclip.__file__).parent / "configs" / "config_bert.json"
    torch.manual_seed(0)
    BertModel(BertConfig.from_json_file(str(cfg_path)), add_pooling_layer=False).save_pretrained(bert)
    config = get_config("SurgCLIP-B", overrides={"device": "cpu", "num_frames": 16,
                                                "model": {"text_encoder": {"pretrained": str(bert)}}})
    tokenizer = load_tokenizer(config)
    torch.manual_seed(1)
    model = SurgCLIP(config=config, tokenizer=tokenizer, is_pretrain=False).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(0.05) if name == "temp" else p.add_(torch.randn(p.shape, generator=g) * 0.02)
    torch.save(model.state_dict(), tmp / "SurgCLIP-B.pth")
    inputs = torch.load(tmp / "input.pt", weights_only=True)
    tokens = tokenize(inputs["texts"], tokenizer)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "forward":
            t = time.perf_counter()
            with torch.no_grad():
                logits, _ = model(inputs["video"], tokens)
            took = time.perf_counter() - t
            torch.save(logits, tmp / "peer_logits.pt")  # written before the answer: the reader waits for it
            print(took, flush=True)
        elif cmd == "preprocess":  # args: anchor paths separated by '|'
            anchors = args[0].split("|")
            pre = VideoPreprocessor(num_frames=int(args[1]), mode="centered")
            t = time.perf_counter()
            for a in anchors:  # a sliding window consumes each clip (the model would): none is kept
                pre(a)
            took = time.perf_counter() - t
            pre = VideoPreprocessor(num_frames=int(args[1]), mode="centered")  # untimed: the clips to compare
            torch.save(torch.cat([pre(a) for a in anchors]), tmp / "peer_clips.pt")
            print(took, flush=True)
        elif cmd == "quit":
            return


def write_frame_folder(folder: Path, count: int) -> str:
    """JPEG frames, zero-padded names (both packages then order them alike), from a real Cholec clip
    (854x480) when ../shared/realdata is there, else synthetic 854x480 frames."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    clips = sorted((REPO.parent / "shared" / "realdata" / "videos" / "cholec_clips").glob("*.mp4"))
    if clips:
        import decord

        vr = decord.VideoReader(str(clips[0]))
        step = max(1, len(vr) // count)
        frames = vr.get_batch(list(range(0, step * count, step))[:count]).asnumpy()
        source = f"{clips[0].name} every {step} frames"
    else:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:480, 0:854]
        frames = [((xx + 5 * i) % 256 ^ yy % 256)[..., None].repeat(3, -1).astype(np.uint8)
                  + rng.integers(0, 20, (480, 854, 3), dtype=np.uint8) for i in range(count)]
        source = "synthetic"
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:06d}.jpg", quality=90)
    return source


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--folder-frames", type=int, default=48, help="frames in the preprocessing folder")
    ap.add_argument("--parts", nargs="+", choices=["model", "preprocess"], default=["model", "preprocess"])
    ap.add_argument("--force-bf16", action="store_true",
                    help="time the bf16 forward even on a CPU without native bf16 (it is many times slower there)")
    ap.add_argument("--peer-site", default=str(REPO / ".peer" / "site"))
    ap.add_argument("--peer-worker", help=argparse.SUPPRESS)
    add_out_argument(ap, __file__)
    args = ap.parse_args()
    if args.peer_worker:
        return peer_worker(Path(args.peer_worker), args.threads)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    args.recorder = Recorder(__file__, args.out)

    if not (Path(args.peer_site) / "surgclip").is_dir():
        sys.exit(f"published package not installed in {args.peer_site}: run bash tests/install_peer.sh")
    tmp = Path(tempfile.mkdtemp(prefix="bench_peer_"))
    g = torch.Generator().manual_seed(0)
    texts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    video = torch.randn(1, args.frames, 3, 224, 224, generator=g)
    torch.save({"video": video, "texts": texts}, tmp / "input.pt")
    env = {**os.environ, "PYTHONPATH": args.peer_site, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    worker = subprocess.Popen([sys.executable, __file__, "--peer-worker", str(tmp), "--threads", str(args.threads)],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp)

    def ask(line: str) -> float:
        worker.stdin.write(line + "\n")
        worker.stdin.flush()
        answer = worker.stdout.readline()
        if not answer:
            sys.exit(f"published-package worker died on {line!r} (exit {worker.wait()})")
        return float(answer)

    if worker.stdout.readline().strip() != "ready":
        sys.exit(f"published-package worker failed to start (exit {worker.wait()})")
    if "model" in args.parts:
        bench_model(args, ask, tmp, video, texts)
    if "preprocess" in args.parts:
        bench_preprocess(args, ask, tmp)
    worker.stdin.write("quit\n")
    worker.stdin.close()
    worker.wait()


def bench_model(args, ask, tmp, video, texts):
    import torch

    import surgclip

    from surgclip.model import cpu_has_fast_bf16

    model, _, tokenizer = surgclip.load("SurgCLIP-B", device="cpu", pretrained=tmp / "SurgCLIP-B.pth")
    model_bf16, _, _ = surgclip.load("SurgCLIP-B", device="cpu", pretrained=tmp / "SurgCLIP-B.pth", precision="bf16")
    tokens = surgclip.tokenize(texts, tokenizer)
    fp32_gflops, bf16_gflops = linear_gflops(torch.float32), linear_gflops(torch.bfloat16)
    print(f"this CPU: a ViT-B/16 MLP linear (3152 x 768 @ 768 x 3072) runs at {fp32_gflops:.0f} GFLOP/s in fp32 and "
          f"{bf16_gflops:.0f} GFLOP/s under bf16 autocast; native bf16 (AVX512-BF16/AMX): {cpu_has_fast_bf16()}")
    skip_bf16 = not cpu_has_fast_bf16() and not args.force_bf16
    if skip_bf16:
        print("bf16 forward not timed: without native bf16 it is emulated and slower than fp32 (the ratio above); "
              "--force-bf16 times it anyway")
        model_bf16 = None

    def ours(m) -> tuple[float, torch.Tensor]:
        t = time.perf_counter()
        with torch.no_grad():
            logits, _ = m(video, tokens)
        return time.perf_counter() - t, logits

    with torch.no_grad():  # warm-up (allocator, oneDNN primitives) on both sides
        ask("forward"), ours(model)
        if model_bf16 is not None:
            ours(model_bf16)
    peer_t, fp32_t, bf16_t = [], [], []
    for _ in range(args.reps):
        peer_t.append(ask("forward"))
        t, logits = ours(model)
        fp32_t.append(t)
        if model_bf16 is not None:
            t, logits_bf16 = ours(model_bf16)
            bf16_t.append(t)
    peer_logits = torch.load(tmp / "peer_logits.pt", weights_only=True)
    rel = ((logits - peer_logits).abs().max() / peer_logits.abs().max()).item()
    peer_m, fp32_m = statistics.median(peer_t), statistics.median(fp32_t)
    print(f"SurgCLIP-B forward, batch 1 x {args.frames} frames x 224^2, {args.prompts} prompts, {args.threads} threads, "
          f"median of {args.reps}: published fp32 {peer_m:.2f} s, ours fp32 {fp32_m:.2f} s"
          + (f", ours bf16 {statistics.median(bf16_t):.2f} s" if bf16_t else ""))
    print(f"fp32 speed-up vs published     {peer_m / fp32_m:5.2f}x  (logits max rel err vs published {rel:.1e})")
    shape = {"frames": args.frames, "prompts": args.prompts, "threads": args.threads, "reps": args.reps,
             "linear_fp32_gflops": fp32_gflops, "linear_bf16_autocast_gflops": bf16_gflops,
             "native_bf16": cpu_has_fast_bf16()}
    args.recorder.add("SurgCLIP-B forward fp32", {**shape, "published_fp32_s": peer_m, "ours_fp32_s": fp32_m,
                                                  "speedup": peer_m / fp32_m, "logits_max_rel_err": rel},
                      ratio=peer_m / fp32_m, ratio_of="published fp32 forward time / ours fp32 (median)")
    if bf16_t:
        bf16_abs = (logits_bf16 - logits).abs().max().item()
        print(f"bf16 speed-up vs published fp32 {peer_m / statistics.median(bf16_t):5.2f}x  (logits max abs err vs our "
              f"fp32 {bf16_abs:.1e}; logit range {logits.abs().max().item():.1f})")
        bf16_m = statistics.median(bf16_t)
        args.recorder.add("SurgCLIP-B forward bf16", {**shape, "published_fp32_s": peer_m, "ours_bf16_s": bf16_m,
                                                      "speedup": peer_m / bf16_m, "logits_max_abs_err_vs_fp32": bf16_abs,
                                                      "logit_range": logits.abs().max().item()},
                          ratio=peer_m / bf16_m, ratio_of="published fp32 forward time / ours bf16 (median)")


def linear_gflops(dtype, reps: int = 3) -> float:
    """GFLOP/s of one ViT-B/16 MLP linear over a 16-frame clip's tokens, fp32 or under bf16 autocast."""
    import torch

    x, lin = torch.randn(3152, 768), torch.nn.Linear(768, 3072)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        lin(x)
        t = time.perf_counter()
        for _ in range(reps):
            lin(x)
    return 2 * 3152 * 768 * 3072 * reps / (time.perf_counter() - t) / 1e9



def bench_preprocess(args, ask, tmp):
    import torch

    import surgclip

    folder = tmp / "frames"
    source = write_frame_folder(folder, args.folder_frames)
    names = sorted(p.name for p in folder.iterdir())
    for label, anchors in (("one cold call", [names[len(names) // 2]]), (f"sweep of {len(names)} anchors", names)):
        paths = [str(folder / n) for n in anchors]
        peer_t, our_t = [], []
        for _ in range(args.reps):
            peer_t.append(ask(f"preprocess {'|'.join(paths)} {args.frames}"))
            pre = surgclip.VideoPreprocessor(num_frames=args.frames, mode="centered")  # fresh: no cache carried over
            t = time.perf_counter()
            for p in paths:  # timed as the published side is: each clip consumed, none kept
                pre(p)
            our_t.append(time.perf_counter() - t)
        pre = surgclip.VideoPreprocessor(num_frames=args.frames, mode="centered")
        clips = torch.cat([pre(p) for p in paths])  # untimed: every clip compared with the published one
        diff = (clips - torch.load(tmp / "peer_clips.pt", weights_only=True)).abs().max().item()
        peer_m, our_m = statistics.median(peer_t), statistics.median(our_t)
        print(f"VideoPreprocessor from a folder ({source}, 854x480 JPEG), {label}: published {peer_m:.3f} s, "
              f"ours {our_m:.3f} s, speed-up {peer_m / our_m:5.2f}x  (max abs diff {diff:.1e})")
        args.recorder.add(f"VideoPreprocessor, {label}", {
            "source": source, "frames": args.frames, "reps": args.reps, "published_s": peer_m, "ours_s": our_m,
            "speedup": peer_m / our_m, "max_abs_diff": diff}, ratio=peer_m / our_m,
            ratio_of="published VideoPreprocessor time / ours (median)")


if __name__ == "__main__":
    main()
