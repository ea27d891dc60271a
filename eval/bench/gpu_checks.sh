#!/usr/bin/env bash
# Every GPU check in one command, for a machine with a CUDA GPU (figures: eval/bench/results/*.jsonl):
#   bash eval/bench/gpu_checks.sh [OUT_DIR]      # logs into OUT_DIR (default reports/gpu)
# 1. tests/test_cuda.py: model, evaluator, indexer and Lightning training on the GPU against the CPU;
# 2. bench_gpu.py: forward and training step by precision (fp32 / bf16 / fp16);
# 3. the embedded default trained on the GPU in bf16-mixed, then its export's zero-shot accuracy in
#    fp32 and bf16 on the GPU (goal: within 0.5 point);
# 4. bench_zeroshot.py --device cuda: the evaluator against the bare forward, decoding on the CPU.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${1:-reports/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=$(command -v python || command -v python3)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" | tee -a "$out/gpu.txt"
echo "== 1. tests/test_cuda.py"
timeout 240 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -40 | tee "$out/test_cuda.log"
echo "== 2. bench_gpu.py"
timeout 200 "$py" eval/bench/bench_gpu.py 2>&1 | tee "$out/bench_gpu.log"
echo "== 3. the embedded default on the GPU, bf16-mixed"
timeout 300 surgclip train -c configs/base.yaml -c configs/sample.yaml --trainer.accelerator gpu --trainer.precision bf16-mixed 2>&1 | grep -v "^Epoch\|it/s\]" | tail -25 | tee "$out/train.log"
report=$(ls -t runs/sample/version_*/report.json 2>/dev/null | head -1)
if [ -n "$report" ]; then
  cmd=$("$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['zeroshot_command'])" "$report")
  for precision in fp32 bf16; do
    echo "-- $cmd --device cuda --precision $precision"
    timeout 120 $cmd --device cuda --precision "$precision" --out "reports/gpu_zeroshot_$precision" 2>&1 | tail -4
  done | tee "$out/zeroshot.log"
fi
echo "== 4. bench_zeroshot.py --device cuda"
timeout 300 "$py" eval/bench/bench_zeroshot.py --device cuda --repeat 2 2>&1 | tee "$out/bench_zeroshot.log"
