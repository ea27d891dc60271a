"""The synthetic sample: laparoscopic-cholecystectomy-like videos with captions at three levels and a
tiny copy of every benchmark in its release layout, generated on first use (``surgclip data sample``).

It exists to make the toolkit runnable and testable without any dataset download; nothing in
training or evaluation depends on it beyond ``ensure_sample`` for the default ``data.root``.
"""
from .generate import DEFAULT_ROOT, SCHEMA_SQL, ensure_sample, make_sample

__all__ = ["DEFAULT_ROOT", "SCHEMA_SQL", "ensure_sample", "make_sample"]
