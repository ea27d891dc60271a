#!/usr/bin/env bash
# Pack what a lent GPU machine lacks (its image has torch, timm, transformers, lightning, einops, but
# not open_clip, decord, faiss, PyAV, jsonargparse, fastapi) as Python 3.12 packages into
# .whl/site.tar.xz (~47 MiB, under the device tool's 64 MiB; the wheels alone are 71 MiB). Run here:
#   bash eval/bench/pack_gpu_env.sh
# then on the GPU machine (device tool: carry [".whl"]), as one command:
#   P3=$(command -v python3); rm -rf /tmp/site /tmp/bin; mkdir -p /tmp/site /tmp/bin
#   tar xJf .whl/site.tar.xz -C /tmp/site; export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/bin:$PATH
#   printf '#!/bin/sh\nexec %s "$@"\n' "$P3" > /tmp/bin/python
#   printf '#!/bin/sh\nexec %s -m surgclip.cli "$@"\n' "$P3" > /tmp/bin/surgclip; chmod +x /tmp/bin/*
#   timeout 60 python -c "import surgclip, decord, faiss, av, open_clip" && bash eval/bench/gpu_checks.sh $OUT
# (rm -rf first: a warm machine keeps /tmp, and writing through a link left there by an earlier call
# overwrites what it points to: once, the machine's python3, which then exec'd itself forever.)
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels=$(mktemp -d) site=$(mktemp -d)
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 -d "$wheels" \
  open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.7.0 decord==0.6.0 faiss-cpu==1.15.1 av==18.1.0 \
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 fastapi==0.165.0 starlette==1.10.0 \
  pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 uvicorn==0.55.0
for w in "$wheels"/*.whl; do unzip -q -o "$w" -d "$site"; done  # a pure install: what pip --target would lay out
mkdir -p .whl
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || grep -qx "/.whl/" .gitignore || echo "/.whl/" >> .git/info/exclude
(cd "$site" && tar cf - . | xz -T0 -6 > "$OLDPWD/.whl/site.tar.xz")
rm -rf "$wheels" "$site"
ls -la .whl/site.tar.xz
