#!/usr/bin/env bash
# Install the published SurgCLIP package (PyPI surgclip==0.1.0) and the versions it imports with into
# .peer/site, for tests/test_parity.py. Idempotent; needs only the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
site=.peer/site
if [ -f "$site/.complete" ]; then exit 0; fi
rm -rf "$site"
python -m pip install -q --no-deps --target "$site" surgclip==0.1.0 transformers==4.33.3 tokenizers==0.13.3 \
  huggingface_hub==0.17.3 protobuf requests urllib3 idna certifi charset_normalizer regex pyyaml packaging \
  filelock fsspec tqdm safetensors
touch "$site/.complete"
