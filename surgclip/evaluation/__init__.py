"""Evaluation: benchmark adapters -> one frame table, zero-shot, linear probe, retrieval index, reports.

Modules load lazily (FAISS, matplotlib and sklearn are imported where used):
``table``/``formats`` (label files)/``loaders`` (released dataset layouts)/``benchmarks`` (protocols,
one dispatch), ``metrics``, ``clips`` (reading clips at labelled
frames), ``zeroshot``, ``features`` + ``linear_probe``, ``index`` (FAISS clip index), ``reports``,
``plots``, ``suite`` (a whole results table), ``cli``.
"""
