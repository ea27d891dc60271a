#!/usr/bin/env bash
# Install CAMMA's SurgVLP code (SurgVLP, HecVL, PeskaVLP) with the versions it pins into .peer/surgvlp,
# for tests/test_camma_parity.py. Its licence ("All rights reserved") keeps it out of this project: it
# is installed beside it, never copied into it, and only the reference-building subprocess imports it.
#
#   SURGVLP_SRC   a local checkout or any pip-installable URL of CAMMA-public/SurgVLP
#                 (default: the GitHub repository at the commit the parity test was written against)
#
# Idempotent (re-installs when SURGVLP_SRC changes); needs the package registry, and GitHub unless
# SURGVLP_SRC is a local checkout. Exit status non-zero when anything fails to install.
set -euo pipefail
cd "$(dirname "$0")/.."
SURGVLP_COMMIT=85e858998eec47614614b89f6af1363e0ad3f47b
src=${SURGVLP_SRC:-git+https://github.com/CAMMA-public/SurgVLP.git@$SURGVLP_COMMIT}
site=.peer/surgvlp
if [ -f "$site/.complete" ] && [ "$(cat "$site/.complete")" = "$src" ]; then exit 0; fi
rm -rf "$site"
# Their setup.py imports pkg_resources, which setuptools 81 dropped: build it with an older setuptools
# (a constraint reaches pip's isolated build environment through PIP_CONSTRAINT).
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "setuptools<81" > "$constraints"
# --no-deps: their requirements (mmengine 0.7.0, transformers 4.30.2 and what those import) are named
# here, so nothing in the project's own environment is upgraded or downgraded.
PIP_CONSTRAINT="$constraints" python -m pip install -q --no-deps --target "$site" "$src" mmengine==0.7.0 transformers==4.30.2 \
  tokenizers==0.13.3 huggingface_hub==0.17.3 addict yapf platformdirs tomli termcolor fvcore iopath yacs tabulate \
  portalocker pycm art opencv-python-headless pandas python-dateutil pytz tzdata six safetensors filelock \
  fsspec requests urllib3 idna certifi charset_normalizer regex pyyaml packaging tqdm
printf '%s' "$src" > "$site/.complete"
