"""``RunTimer``: a run's wall time next to the bare compute of the same training steps.

Wall time varies between machines; its ratio to the bare compute measured in the same run does
much less, and says how much of the run went to anything but the model (data loading, validation,
zero-shot scoring, checkpoints, start-up of workers, the report). The elapsed time is also split
into where it went: the training steps as the loop ran them (slower than bare when data workers
share the cores), waiting for the next batch, validation, and the rest.
"""
from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from ..utils import atomic_write_json


def _detached(batch):
    """A deep copy of a batch's tensors (kept after the loader has moved on)."""
    if isinstance(batch, torch.Tensor):
        return batch.detach().clone()
    if isinstance(batch, dict):
        return {k: _detached(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_detached(v) for v in batch)
    return batch


class RunTimer(L.Callback):
    """Measures ``elapsed`` (fit start -> end of ``on_fit_end``, the report included when this
    callback is listed after ``ExportAndReport``) and the bare compute of the steps the run took.

    Bare compute: a deep copy of ``module.model`` and a fresh optimizer of the run's class and
    param-group settings take forward + symmetric InfoNCE + backward + optimizer steps on training
    batches kept in memory from the first epoch (under the run's precision context): ``warmup``
    untimed steps, then ``probe_steps`` timed steps at the end of every training epoch and
    ``bare_steps`` more at the end of the run. The median of those step times, times
    ``trainer.global_step``, is the bare compute. A shared machine's speed drifts over minutes; steps
    sampled through the run follow it as the run did, where a few steps timed only at its end would
    reflect the load of that last minute alone. The probes run with the RNG state saved and restored (the
    training draws the same dropout as without them), with the data workers idle between epochs, and
    their time is left out of ``elapsed``. The copy and its optimizer state live from the first probe
    to the end of the run (memory: about three times the parameters' size; ``probe_steps=0`` builds
    them only at the end). The trained model and optimizer are never touched. Writes
    ``timing.json`` next to ``report.json`` (the run's log dir) and prints one line.

    Args:
        bare_steps: timed steps at the end of the run (cycling over the kept batches).
        warmup: untimed steps before the first timed one (allocator, kernels, lazy init).
        keep_batches: training batches kept from the first epoch.
        probe_steps: timed steps at the end of each training epoch (0: only at the end of the run).
    Writes:
        timing.json: elapsed_s, bare_step_s (median), bare_step_samples_s, probe_s (the probes' time,
        not in elapsed_s), steps, bare_compute_s, ratio (= elapsed / bare compute),
        clips, train_clips_per_s_bare, precision, and ``split_s``: ``train_steps`` (batch start to
        batch end of every training step: forward, backward, optimizer, logging), ``data_wait`` (from
        an epoch's start, the previous step's end or a validation's end to the next batch: the
        loader), ``validation`` (validation loops with their retrieval and zero-shot scoring),
        ``other`` (the rest: start-up, checkpoints, the export and the report); ``data_wait_first_batches_s``:
        the part of the data wait spent on each epoch's first batch (loader start-up); ``steps_vs_bare`` =
        train_steps / bare compute. On a GPU, steps return before their kernels finish, so part of a
        step can show as data wait.
    """

    def __init__(self, bare_steps: int = 3, warmup: int = 1, keep_batches: int = 2, probe_steps: int = 1):
        if bare_steps < 1 or keep_batches < 1 or warmup < 0 or probe_steps < 0:
            raise ValueError(f"RunTimer needs bare_steps >= 1, keep_batches >= 1, warmup >= 0, probe_steps >= 0; got "
                             f"{bare_steps}, {keep_batches}, {warmup}, {probe_steps}")
        self.bare_steps, self.warmup, self.keep_batches = bare_steps, warmup, keep_batches
        self.probe_steps = probe_steps
        self._bare = None  # [step function, kept-batch cursor] once the copy is built
        self.samples: list[float] = []  # timed bare step seconds
        self.probe_s = 0.0
        self.batches: list = []
        self.start = None
        self.clips = 0
        self.result: dict = {}
        self.split = {"train_steps": 0.0, "data_wait": 0.0, "validation": 0.0}
        self._mark = self._step_start = self._val_start = None
        self.first_batch_wait = 0.0

    def on_fit_start(self, trainer, module) -> None:
        self.start, self.clips, self.batches = time.perf_counter(), 0, []
        self._bare, self.samples, self.probe_s = None, [], 0.0
        self.split = dict.fromkeys(self.split, 0.0)
        self.first_batch_wait = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._mark = time.perf_counter()  # the loader starts (workers spawn) after this

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._mark is not None:
            self.split["data_wait"] += now - self._mark
            if batch_idx == 0:
                self.first_batch_wait += now - self._mark
        self._step_start = now
        n = len(batch.get("video_id", ())) if isinstance(batch, dict) else 0
        self.clips += n
        if len(self.batches) < self.keep_batches and n >= 2:
            self.batches.append(_detached(batch))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._step_start is not None:
            self.split["train_steps"] += now - self._step_start
        self._mark, self._step_start = now, None

    def on_validation_start(self, trainer, module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        if self._val_start is not None:
            self.split["validation"] += time.perf_counter() - self._val_start
        self._val_start, self._mark = None, time.perf_counter()  # the validation itself is not data wait

    def _bare_step(self, trainer, module):
        """forward + loss + backward + optimizer step of a copy of the model, as a function of a batch."""
        model = copy.deepcopy(module.model).train()
        run_opt = trainer.optimizers[0] if trainer.optimizers else None
        opt_cls = type(run_opt) if run_opt is not None else torch.optim.AdamW
        if run_opt is None:
            opt = opt_cls(model.parameters())
        else:  # the run's param groups (lr, decay, ...) over the copy's parameters
            twin = {id(p): q for p, q in zip(module.model.parameters(), model.parameters())}
            opt = opt_cls([{**{k: v for k, v in g.items() if k != "params"},
                            "params": [twin[id(p)] for p in g["params"] if id(p) in twin]} for g in run_opt.param_groups])
        context = trainer.precision_plugin.forward_context

        def step(batch):
            with context():
                v = model.encode_video(batch["video"])
                t = model.encode_text(batch["tokens"])
                logits = model.logit_scale * v @ t.T
                labels = torch.arange(len(v), device=logits.device)
                loss = (F.cross_entropy(logits.float(), labels) + F.cross_entropy(logits.float().T, labels)) / 2
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    def _timed_bare_steps(self, trainer, module, n: int) -> list[float]:
        """Seconds of each of ``n`` bare steps (after the warm-up on the first call); the global RNG
        state (dropout) is restored afterwards."""
        cuda = torch.cuda.is_available() and module.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        with torch.random.fork_rng(devices=[module.device] if cuda else []):
            if self._bare is None:
                self._bare = [self._bare_step(trainer, module), 0]
                for _ in range(self.warmup):
                    self._bare_next()
            times = []
            for _ in range(n):
                sync()
                start = time.perf_counter()
                self._bare_next()
                sync()
                times.append(time.perf_counter() - start)
        return times

    def _bare_next(self) -> None:
        step, i = self._bare
        step(self.batches[i % len(self.batches)])
        self._bare[1] = i + 1

    def bare_step_seconds(self, trainer, module) -> float:
        """Median seconds of one forward + loss + backward + optimizer step of a copy of the model,
        over the epochs' probes and ``bare_steps`` steps now."""
        self.samples += self._timed_bare_steps(trainer, module, self.bare_steps)
        return statistics.median(self.samples)

    def on_train_epoch_end(self, trainer, module) -> None:
        if not self.probe_steps or not self.batches or not trainer.is_global_zero:
            return
        start = time.perf_counter()
        self.samples += self._timed_bare_steps(trainer, module, self.probe_steps)
        self.probe_s += time.perf_counter() - start

    def on_fit_end(self, trainer, module) -> None:
        # every rank reads log_dir: under DDP it is a broadcast, which hangs if rank 0 asks alone
        run_dir = Path(trainer.log_dir or trainer.default_root_dir)
        if self.start is None or not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self.start - self.probe_s  # the probes are not the run's time
        steps = int(trainer.global_step)
        split = {**self.split, "other": max(0.0, elapsed - sum(self.split.values()))}
        out = {"elapsed_s": elapsed, "probe_s": self.probe_s, "steps": steps, "clips": self.clips,
               "precision": str(trainer.precision), "split_s": split,
               "data_wait_first_batches_s": self.first_batch_wait}
        if self.batches and steps:
            batch = self.batches[0]
            step_s = self.bare_step_seconds(trainer, module)
            bare = step_s * steps
            out.update(bare_step_s=step_s, bare_step_samples_s=list(self.samples), bare_compute_s=bare,
                       ratio=elapsed / bare,
                       train_clips_per_s_bare=len(batch["video_id"]) / step_s,
                       steps_vs_bare=split["train_steps"] / bare)
        self.result = out
        self.batches, self._bare = [], None
        atomic_write_json(run_dir / "timing.json", out)
        if "ratio" in out:
            print(f"wall time {elapsed:.1f} s from fit start to report; bare compute of the same {steps} steps "
                  f"{out['bare_compute_s']:.1f} s ({step_s * 1000:.0f} ms/step, the median of {len(self.samples)} "
                  f"sampled through the run: {min(self.samples) * 1000:.0f}-{max(self.samples) * 1000:.0f}); "
                  f"elapsed / bare compute "
                  f"{out['ratio']:.2f}x  -> {run_dir / 'timing.json'}")
            print(f"where it went: training steps {split['train_steps']:.1f} s ({out['steps_vs_bare']:.2f}x their bare "
                  f"compute), waiting for data {split['data_wait']:.1f} s ({self.first_batch_wait:.1f} s of it for the "
                  f"epochs' first batches), validation {split['validation']:.1f} s, "
                  f"the rest (start-up, checkpoints, export, report) {split['other']:.1f} s")
        else:
            print(f"wall time {elapsed:.1f} s from fit start; no training steps to time -> {run_dir / 'timing.json'}")
