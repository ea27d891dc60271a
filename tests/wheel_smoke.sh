#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment OUTSIDE the checkout (torch etc. come
# from the machine via --system-site-packages), then run `surgclip sample` and `surgclip eval` from a
# folder outside the checkout: proves protocols, schema and sample code ship inside the package.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/surgclip-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
cd "$REPO"
python -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" . >/dev/null
python -m venv --system-site-packages "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --no-deps --no-index "$WORK"/dist/surgclip-*.whl
cd "$WORK"  # nothing of the checkout is importable from here
unset PYTHONPATH
export HF_HUB_OFFLINE=1
LOCATION="$("$WORK/venv/bin/python" -c 'import surgclip; print(surgclip.__file__)')"
case "$LOCATION" in
  "$WORK/venv/"*) echo "wheel smoke: surgclip imported from $LOCATION" ;;
  *) echo "wheel smoke: surgclip imported from $LOCATION, not from the venv" >&2; exit 1 ;;
esac
"$WORK/venv/bin/surgclip" sample --out "$WORK/s" --videos 3
"$WORK/venv/bin/surgclip" eval --suite surglavi --data-root "$WORK/s/benchmarks" --model tiny \
    --num-frames 2 --limit 4 --out "$WORK/table"
grep -q "CholecT50 triplet ivt mAP" "$WORK/table/table.md"
if grep -q " - " <(sed -n 5p "$WORK/table/table.md" | cut -d'|' -f3-); then
  echo "wheel smoke: a column of the table is empty" >&2; exit 1
fi
echo "wheel smoke: OK ($(sed -n 5p "$WORK/table/table.md"))"
