"""Generate the bundled sample dataset (thin wrapper over ``surgclip.sample.make_sample``).

    python data/make_sample.py [--out data/sample] [--seed 0] [--videos 34]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surgclip.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["sample", *sys.argv[1:]]))
