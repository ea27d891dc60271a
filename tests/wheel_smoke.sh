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
# what a plain `pip install surgclip` has: no web stack, no docs tooling (their imports are refused)
mkdir -p "$WORK/plain"
cat > "$WORK/plain/sitecustomize.py" <<'PY'
import sys
REFUSED = ("fastapi", "starlette", "uvicorn", "mkdocs", "mkdocstrings")
class Hide:  # every finder, blind to the refused packages: they are not found, as when not installed
    def __init__(self, finder):
        self.finder = finder
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.finder, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
PY
PYTHONPATH="$WORK/plain" "$WORK/venv/bin/python" -c 'import surgclip; m, p, t = surgclip.load("tiny"); import sys; assert "fastapi" not in sys.modules'
PYTHONPATH="$WORK/plain" "$WORK/venv/bin/surgclip" eval zeroshot --benchmark cholec80 --root "$WORK/s/cholec80" \
    --split all --model tiny --num-frames 2 --limit 2 --out "$WORK/zs" | tail -2
test -s "$WORK/zs/zeroshot.json" && test -s "$WORK/zs/predictions_cholec80.csv" || { echo "wheel smoke: eval zeroshot wrote no report" >&2; exit 1; }
if PYTHONPATH="$WORK/plain" "$WORK/venv/bin/surgclip" serve --index "$WORK/none" 2>"$WORK/serve.err"; then
  echo "wheel smoke: serve ran without its web stack" >&2; exit 1
fi
grep -q "surgclip\[serve\]" "$WORK/serve.err" || { echo "wheel smoke: serve did not name its extra" >&2; cat "$WORK/serve.err" >&2; exit 1; }
"$WORK/venv/bin/surgclip" eval --suite surglavi --data-root "$WORK/s/benchmarks" --model tiny \
    --num-frames 2 --limit 4 --out "$WORK/table"
grep -q "CholecT50 triplet ivt mAP" "$WORK/table/table.md"
if grep -q " - " <(sed -n 5p "$WORK/table/table.md" | cut -d'|' -f3-); then
  echo "wheel smoke: a column of the table is empty" >&2; exit 1
fi
# a row per model; rows whose weights are absent (none are shipped) say what they need
SURGCLIP_CACHE="$WORK/empty-cache" HF_HOME="$WORK/hf" "$WORK/venv/bin/surgclip" eval --suite surglavi \
    --data-root "$WORK/s/benchmarks" --model tiny,PeskaVLP,MedSigLIP --num-frames 2 --limit 2 --out "$WORK/table3" \
    >/dev/null 2>"$WORK/table3.err"
for row in "| tiny | " "| PeskaVLP | needs files" "| MedSigLIP | needs files"; do
  grep -qF "$row" "$WORK/table3/table.md" || { echo "wheel smoke: no row '$row' in the three-model table" >&2; exit 1; }
done
grep -q "PeskaVLP.pth" "$WORK/table3/table.md" || { echo "wheel smoke: PeskaVLP's row does not name its file" >&2; exit 1; }
echo "wheel smoke: OK ($(sed -n 5p "$WORK/table/table.md"))"
