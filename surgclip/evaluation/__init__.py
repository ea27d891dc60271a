"""Evaluation of a model on the benchmark datasets' frame tables (``surgclip.datasets``): zero-shot,
linear probe, retrieval index, reports.

Modules load lazily (FAISS, matplotlib and sklearn are imported where used): ``metrics``,
``clips`` (reading clips at labelled frames), ``zeroshot``, ``runs`` (one zero-shot run and its
predictions files), ``features`` + ``linear_probe``, ``index`` (FAISS clip index), ``reports``,
``plots``, ``suite`` (a whole results table), ``cli``.
"""
