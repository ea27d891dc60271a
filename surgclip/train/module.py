"""A thin LightningModule over ``SurgCLIP``: one ``model_step`` shared by training and validation."""
from __future__ import annotations

import os
import shlex
import zlib
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch

from ..checkpoint import CheckpointMismatchError, read_pretrained_dir, read_state_dict, state_dict_diff
from ..factory import create_model, get_tokenizer, load_state
from ..loss import InfoNCELoss, PairMeta
from ..utils import CLIP_SKIP_REASONS
from .optim import check_prefixes, freeze_params, param_groups, warmup_cosine
from .options import LossOptions, OptimOptions, ZeroShotOptions, as_group

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
ZEROSHOT_CLIP_STRIDE_S = 0.5  # seconds between the frames of a zero-shot validation clip


def stable_ids(values: list[str], device) -> torch.Tensor:
    """Strings -> int64 ids that are equal across processes (for gathering and group matching)."""
    return torch.tensor([zlib.crc32(v.encode()) for v in values], dtype=torch.long, device=device)


class SurgCLIPModule(L.LightningModule):
    """Contrastive video-text training of a SurgCLIP model.

    Args:
        model: architecture name (``tiny``, ``SurgCLIP-B``, ``CLIP-B-16``).
        model_overrides: architecture config overrides (deep-merged).
        init_from: initial weights: a ``save_pretrained`` directory or a checkpoint file.
        freeze: module prefixes to freeze, e.g. ``["text_encoder"]`` (frozen here, before any DDP/FSDP
            wrapping, so the wrapper never waits for their gradients).
        lr_scale: per-module learning-rate factors, e.g. ``{"vision_encoder": 0.1}`` for pretrained towers.
        grad_checkpointing: recompute activations in backward to save memory.
        seed: re-seeds all RNGs at each epoch start (seed + epoch) so a resumed run repeats exactly.
        optim: ``OptimOptions`` (optimiser, learning rate, schedule).
        loss: ``LossOptions`` (InfoNCE variants, per-level loss weights).
        zeroshot: ``ZeroShotOptions`` (the benchmark scored each validation epoch; off by default).
    """

    def __init__(self, model: str = "tiny", model_overrides: dict | None = None, init_from: str | None = None,
                 freeze: list[str] | None = None, lr_scale: dict[str, float] | None = None,
                 grad_checkpointing: bool = False, seed: int = 0, optim: OptimOptions | None = None,
                 loss: LossOptions | None = None, zeroshot: ZeroShotOptions | None = None):
        super().__init__()
        self.optim = as_group(OptimOptions, optim, "model.optim")
        self.loss = as_group(LossOptions, loss, "model.loss")
        self.zeroshot = as_group(ZeroShotOptions, zeroshot, "model.zeroshot")
        # hyper-parameters hold plain values (checkpoints load with weights_only)
        self.save_hyperparameters(ignore=["optim", "loss", "zeroshot"])
        self.hparams.update(optim=asdict(self.optim), loss=asdict(self.loss), zeroshot=asdict(self.zeroshot))
        self.model = create_model(model, seed=seed, **(model_overrides or {}))
        if init_from:
            self._init_weights(init_from)
        check_prefixes(self.model, list(lr_scale or {}) + list(freeze or []))
        freeze_params(self.model, freeze)
        if grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        self.tokenizer = get_tokenizer(self.model.config)
        self.loss_fn = InfoNCELoss(local_loss=self.loss.local_loss, multi_positive=self.loss.multi_positive,
                                   mask_overlaps=self.loss.mask_overlaps)
        self.level_weights = {int(k): float(v) for k, v in (self.loss.level_weights or {}).items()}
        self._val_video, self._val_text, self._val_keys, self._val_texts = [], [], [], []
        self._val_skipped = dict.fromkeys(CLIP_SKIP_REASONS, 0)
        self.last_val_metrics: dict[str, float] = {}
        self.last_val_step = -1  # global step the metrics above were computed at
        # bad training items skipped this epoch on this rank, by reason; summed over ranks at epoch end
        self._skipped = dict.fromkeys(CLIP_SKIP_REASONS, 0)
        self.skipped_total: dict[str, int] = dict.fromkeys(CLIP_SKIP_REASONS, 0)

    def _init_weights(self, source: str) -> None:
        path = Path(source)
        state = read_pretrained_dir(path)[1] if path.is_dir() else read_state_dict(path)
        load_state(self.model, state, source=source)

    def setup(self, stage: str) -> None:
        # gather across ranks only when this trainer runs several (not in a 1-process re-validation
        # started inside a DDP job)
        self.loss_fn.distributed = self._trainer is not None and self.trainer.world_size > 1
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "set_model"):
            dm.set_model(self.tokenizer, self.model.preprocess_cfg.to_dict())

    # ---- steps
    def model_step(self, batch: dict) -> dict:
        """Embed a batch and compute the loss; returns the loss dict plus the embeddings."""
        video = self.model.encode_video(batch["video"])
        text = self.model.encode_text(batch["tokens"])
        device = video.device
        meta = PairMeta(groups=stable_ids(batch["caption"], device), video=stable_ids(batch["video_id"], device),
                        level=batch["level"], start=batch["start_s"].float(), end=batch["end_s"].float(),
                        valid=batch.get("valid"))
        weights = None
        if self.level_weights:
            weights = torch.tensor([self.level_weights.get(int(lv), 1.0) for lv in batch["level"]], device=device)
        out = self.loss_fn(video, text, self.model.logit_scale, meta, weights)
        out["video"], out["text"] = video, text
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # Never returns None: under DDP a rank that skips a step leaves the others waiting. Batches
        # come full-size from PaddedCollate; its stand-ins for skipped items carry valid=False.
        for reason, n in (batch.get("skipped") or {}).items():
            self._skipped[reason] = self._skipped.get(reason, 0) + int(n)
        out = self.model_step(batch)
        loss = out["loss"]
        finite = bool(torch.isfinite(loss))
        if self.loss_fn.local_loss and self.trainer.world_size > 1:  # per-rank losses: every rank stops together
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:  # (the full-batch loss is the same on every rank)
            ids = sorted(set(batch["video_id"]))
            raise FloatingPointError(f"loss is {loss.item()} at global step {self.global_step} (epoch "
                                     f"{self.current_epoch}, batch {batch_idx}); videos in the batch: {ids}")
        valid = batch.get("valid")
        valid = torch.ones(len(batch["video_id"]), dtype=torch.bool) if valid is None else valid.cpu()
        bs = max(1, int(valid.sum()))
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/logit_scale", self.model.logit_scale.detach(), batch_size=bs)
        level = batch["level"].cpu()
        for lv in level[valid].unique().tolist():
            sel = ((level == lv) & valid).to(out["per_sample"].device)
            self.log(f"train/loss_level{lv}", out["per_sample"][sel].mean(), batch_size=int(sel.sum()))
        return loss

    def on_train_epoch_end(self) -> None:
        """Sum this epoch's skipped training items over ranks; log ``train/skipped_{reason}``, print them."""
        reasons = sorted(self._skipped)
        counts = torch.tensor([float(self._skipped[r]) for r in reasons], device=self.device)
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")  # every rank, every epoch
        self._skipped = dict.fromkeys(CLIP_SKIP_REASONS, 0)
        epoch = {r: int(c) for r, c in zip(reasons, counts.tolist())}
        for r, n in epoch.items():
            self.skipped_total[r] = self.skipped_total.get(r, 0) + n
            self.log(f"train/skipped_{r}", float(n), sync_dist=True)  # equal on every rank already
        if any(epoch.values()) and self.trainer.is_global_zero:
            print(f"epoch {self.current_epoch}: skipped {sum(epoch.values())} bad training items "
                  f"({', '.join(f'{r}: {n}' for r, n in epoch.items() if n)}); padded with valid items "
                  f"of the same batch, left out of the loss")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        for reason, n in (batch.get("skipped") or {}).items():
            self._val_skipped[reason] = self._val_skipped.get(reason, 0) + int(n)
        out = self.model_step(batch)
        valid = batch.get("valid")
        valid = torch.ones(len(batch["video_id"]), dtype=torch.bool) if valid is None else valid
        self.log("val/loss", out["loss"], prog_bar=True, batch_size=max(1, int(valid.sum())), sync_dist=True)
        self._val_video.append(out["video"].detach().float())
        self._val_text.append(out["text"].detach().float())
        self._val_keys.append(torch.where(valid.to(self.device), batch["caption_id"].to(self.device), -1))
        self._val_texts.append(stable_ids(batch["caption"], self.device))  # equal caption texts: equal ids

    def on_validation_epoch_start(self) -> None:
        self._val_video, self._val_text, self._val_keys, self._val_texts = [], [], [], []
        self._val_skipped = dict.fromkeys(CLIP_SKIP_REASONS, 0)

    def on_validation_epoch_end(self) -> None:
        """Retrieval over the whole held-out set (gathered from all ranks, each caption once) and,
        outside the sanity check, zero-shot on ``zeroshot_root`` (rank 0 scores, all ranks log)."""
        if self._val_video:
            video, text = torch.cat(self._val_video), torch.cat(self._val_text)
            keys, texts = torch.cat(self._val_keys), torch.cat(self._val_texts)
        else:  # limit_val_batches=0 on this rank: still join the collectives below
            video = text = torch.zeros(0, self.model.embed_dim, device=self.device)
            keys = texts = torch.zeros(0, dtype=torch.long, device=self.device)
        self._val_video, self._val_text, self._val_keys, self._val_texts = [], [], [], []
        if self.trainer.world_size > 1:
            video, text, keys, texts = (self.all_gather(x).flatten(0, 1) for x in (video, text, keys, texts))
        video, text, texts = _unique_by_key(keys, video, text, texts)
        metrics = {}
        if video.shape[0]:
            from ..evaluation.metrics import retrieval_chance, retrieval_metrics

            # a caption text paired with several clips answers for each of them (and each of them
            # for it): identical texts cannot be told apart, so neither counts as a miss
            groups = texts.cpu().numpy()
            sim = video @ text.T
            for direction, s in (("v2t", sim), ("t2v", sim.T)):
                for key, value in retrieval_metrics(s, groups).items():
                    metrics[f"val/{direction}_{key}"] = float(value)
            for key, value in retrieval_chance(groups).items():
                metrics[f"val/chance_{key}"] = value
            # R@1+5+10 both ways: the usual model-selection figure of video-text retrieval (CLIP4Clip),
            # far steadier on a small held-out set than R@1 alone
            metrics["val/rsum"] = sum(metrics[f"val/{d}_R@{k}"] for d in ("v2t", "t2v") for k in (1, 5, 10))
        metrics["val/num_clips"] = float(video.shape[0])
        # held-out clips that could not be read, by reason, summed over ranks (every rank, every time)
        reasons = sorted(CLIP_SKIP_REASONS)
        counts = torch.tensor([float(self._val_skipped.get(r, 0)) for r in reasons], device=self.device)
        counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        metrics["val/skipped"] = float(counts.sum())
        for r, n in zip(reasons, counts.tolist()):
            metrics[f"val/skipped_{r}"] = float(n)
        if metrics["val/skipped"] and self.trainer.is_global_zero:
            print(f"validation: skipped {int(metrics['val/skipped'])} held-out clips "
                  f"({', '.join(f'{r}: {int(n)}' for r, n in zip(reasons, counts.tolist()) if n)})")
        if self.zeroshot.root and not self.trainer.sanity_checking:
            zs, failure = None, None
            if self.trainer.is_global_zero:
                try:
                    zs = self._zero_shot()
                except Exception as err:  # re-raised below on every rank: the others must not wait forever
                    zs, failure = {"error": f"{type(err).__name__}: {err}"}, err
            zs = self.trainer.strategy.broadcast(zs, src=0)  # one scorer, same numbers everywhere
            if "error" in zs:
                if failure is not None:
                    raise failure
                raise RuntimeError(f"zero-shot validation failed on rank 0: {zs['error']}")
            metrics.update(zs)
        self.last_val_metrics, self.last_val_step = metrics, int(self.global_step)
        # every rank holds the same values and logs the same keys in the same order; sync_dist keeps
        # the monitored metric (val/rsum) identical for ModelCheckpoint on every rank regardless
        self.log_dict(metrics, prog_bar=False, sync_dist=True)
        for key in ("val/v2t_R@1", "val/zeroshot_accuracy"):
            if key in metrics:
                self.log(key.replace("val/", "val_"), metrics[key], prog_bar=True, sync_dist=True)

    def _zero_shot(self) -> dict[str, float]:
        """Cholec80-protocol zero-shot phase recognition on ``zeroshot_root`` (table and prompts cached)."""
        from ..datasets import load_benchmark, load_protocol
        from ..datasets.protocols import get_prompts
        from ..evaluation.zeroshot import evaluate_zero_shot

        if getattr(self, "_zs_table", None) is None:
            zs = self.zeroshot
            self._zs_table = load_benchmark("cholec80", zs.root, split="all", eval_fps=1.0 / zs.stride_s)
            self._zs_prompts = get_prompts(load_protocol("cholec80"), zs.prompts, self._zs_table.classes)
        result = evaluate_zero_shot(self.model, self.tokenizer, self._zs_table, self._zs_prompts,
                                    num_frames=self.model.num_frames, mode="centered", stride_s=ZEROSHOT_CLIP_STRIDE_S)
        out = {f"val/zeroshot_{k}": float(result.metrics[k]) for k in ("accuracy", "f1", "global_accuracy")
               if k in result.metrics}
        out["val/zeroshot_num_classes"] = float(len(self._zs_table.classes))
        skipped = {k: int(v) for k, v in (result.skipped or {}).items()}
        out["val/zeroshot_skipped"] = float(sum(skipped.values()))
        for reason, n in sorted(skipped.items()):
            out[f"val/zeroshot_skipped_{reason}"] = float(n)
        if out["val/zeroshot_skipped"]:
            print(f"zero-shot: skipped {sum(skipped.values())} labelled frames ({skipped})")
        return out

    def zero_shot_command(self, model_dir: str | os.PathLike) -> str | None:
        """The ``surgclip eval zeroshot`` command that scores exported weights exactly as validation does."""
        zs = self.zeroshot
        if not zs.root:
            return None
        args = ["surgclip", "eval", "zeroshot", "--benchmark", "cholec80", "--root", str(zs.root),
                "--split", "all", "--model", str(model_dir), "--prompts", str(zs.prompts),
                "--eval-fps", str(1.0 / zs.stride_s), "--stride-s", str(ZEROSHOT_CLIP_STRIDE_S),
                "--num-frames", str(self.model.num_frames), "--mode", "centered", "--metrics", "surglavi"]
        return shlex.join(args)

    # ---- optimisation
    def configure_optimizers(self):
        opt = self.optim
        groups = param_groups(self.model, opt.lr, opt.weight_decay, self.hparams.lr_scale)
        for g in groups:
            g.pop("names")
        kwargs = {"betas": tuple(opt.betas), "eps": opt.eps} if opt.optimizer != "sgd" else {"momentum": 0.9}
        if opt.optimizer != "sgd" and self.device.type in ("cpu", "cuda"):
            # one fused kernel over all parameters: a per-parameter loop is a visible share of a small model's CPU step
            kwargs["fused"] = True
        optimizer = OPTIMIZERS[opt.optimizer](groups, lr=opt.lr, **kwargs)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(opt.warmup_steps, total, opt.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_epoch_start(self) -> None:
        L.seed_everything(self.hparams.seed + self.current_epoch, workers=True, verbose=False)

    # ---- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # ModelCheckpoint saves right after validation: keep those numbers with the weights they
        # scored, so the end-of-run report need not validate the best checkpoint again
        checkpoint["surgclip_val"] = {"step": self.last_val_step, "metrics": dict(self.last_val_metrics),
                                      "skipped_total": dict(self.skipped_total)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        trained = checkpoint.get("hyper_parameters", {}).get("model")
        diff = state_dict_diff(self.state_dict(), checkpoint.get("state_dict", {}))
        if diff:
            raise CheckpointMismatchError(
                f"cannot resume: the checkpoint was trained with model {trained!r}, this run builds "
                f"{self.hparams.model!r}, and their weights differ: {diff}")
        saved = checkpoint.get("surgclip_val") or {}
        for r, n in (saved.get("skipped_total") or {}).items():
            self.skipped_total[r] = int(n)


def _unique_by_key(keys: torch.Tensor, *rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``rows`` at valid (key >= 0) items, each key once: DistributedSampler repeats items to even out
    the ranks and PaddedCollate adds stand-ins; neither may count twice in retrieval metrics."""
    keep = torch.zeros(keys.shape[0], dtype=torch.bool, device=keys.device)
    seen = set()
    for i, k in enumerate(keys.tolist()):
        if k >= 0 and k not in seen:
            seen.add(k)
            keep[i] = True
    return tuple(r[keep] for r in rows)
