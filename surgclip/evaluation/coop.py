"""CoOp: learnable prompt context for a frozen dual encoder (Zhou et al. 2022, "Learning to Prompt for
Vision-Language Models").

M context vectors ``[V_1 .. V_M]`` (shared by all classes, "unified context") replace the words
of a hand-written prompt: the text tower reads ``[CLS] V_1 .. V_M <class name tokens> ...`` and the
class's text feature is its usual pooled, projected output. Both towers stay frozen; only the
context vectors are trained, few-shot, with cross-entropy on
``logits = logit_scale * cos(video feature, text feature)`` over precomputed frozen clip features.

Text towers: the Hugging Face (BERT) tower is fed ``inputs_embeds`` built from its word
embeddings with the context spliced after ``[CLS]``; the open_clip tower is run layer by layer the
way ``open_clip.CLIP.encode_text`` does, with the context spliced after the start token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics as M
from .linear_probe import sample_shots, summarize_runs

PROTOCOL = ("CoOp (Zhou et al. 2022): {n_ctx} learnable context vectors (init: {init}) before the class-name "
            "tokens, towers frozen, trained on k labelled training frames per class (key 'k-shot') per seed with "
            "cross-entropy on logit_scale * cosine(clip feature, text feature), SGD momentum 0.9, cosine lr; "
            "test per-video macro F1 / accuracy averaged over videos")


def readable_class_name(name: str) -> str:
    """``"CalotTriangleDissection"`` / ``"calot_triangle-dissection"`` -> ``"calot triangle dissection"``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", str(name))
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


class _TextTowerAdapter:
    """Runs a frozen text tower on token embeddings with the context spliced after the first token."""

    def __init__(self, model):
        from ..text_encoder import HFTextEncoder, OpenCLIPTextEncoder

        tower = model.text_encoder
        if isinstance(tower, HFTextEncoder):
            self.kind = "hf"
            self.embedding = tower.transformer.get_input_embeddings()
        elif isinstance(tower, OpenCLIPTextEncoder):
            self.kind = "open_clip"
            self.embedding = tower.clip.token_embedding
        else:
            raise ValueError(f"CoOp needs a text tower that takes token embeddings (the Hugging Face BERT tower of "
                            f"SurgCLIP-B, tiny, SurgVLP, HecVL, PeskaVLP, or open_clip's of CLIP); model "
                            f"{getattr(model, 'name', '?')!r} has {type(tower).__name__}, which does not")
        self.model, self.tower = model, tower
        self.width = int(self.embedding.weight.shape[1])

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(ids)

    def pooled(self, embeds: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """embeds [C, L, W] (spliced), ids [C, L] (spliced, context slots = pad), mask [C, L] -> [C, text width]."""
        tower = self.tower
        if self.kind == "hf":  # the tower's own pooling (cls, mean or CAMMA's layer sum)
            return tower.encode(mask, inputs_embeds=embeds)
        from open_clip.transformer import text_global_pool

        clip = tower.clip
        cast = clip.transformer.get_cast_dtype()
        x = embeds.to(cast) + clip.positional_embedding.to(cast)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
        # the spliced ids keep the end token where the tower looks for it (argmax / eos id); context slots are 0
        x = text_global_pool(x, ids, clip.text_pool_type, eos_token_id=getattr(clip, "text_eos_id", None))
        if clip.text_projection is not None:
            x = clip.text_projection(x) if isinstance(clip.text_projection, torch.nn.Linear) else x @ clip.text_projection
        return x


@dataclass
class CoOpPrompts:
    """Learned context vectors for a set of classes on one frozen model.

    Attributes:
        ctx: [M, W] context vectors (W = the text tower's token-embedding width).
        class_names: the class texts, in class-id order.
        ids: [C, L] token ids of the class names (as the tokenizer writes them, first token = start).
        mask: [C, L] attention mask of ``ids``.
        history: training loss per epoch.
    """

    model: torch.nn.Module = field(repr=False)
    ctx: torch.Tensor
    class_names: list
    ids: torch.Tensor
    mask: torch.Tensor
    init: str = "random"
    history: list = field(default_factory=list)

    @property
    def n_ctx(self) -> int:
        return int(self.ctx.shape[0])

    def _splice(self, ctx: torch.Tensor) -> torch.Tensor:
        adapter = _TextTowerAdapter(self.model)
        ids, mask, m = self.ids, self.mask, ctx.shape[0]
        L = ids.shape[1]
        tokens = adapter.embed(ids)
        embeds = torch.cat([tokens[:, :1], ctx.unsqueeze(0).expand(len(ids), -1, -1).to(tokens.dtype),
                            tokens[:, 1:L - m]], dim=1)
        spliced_ids = torch.cat([ids[:, :1], torch.zeros_like(ids[:, :m]), ids[:, 1:L - m]], dim=1)
        spliced_mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, :m]), mask[:, 1:L - m]], dim=1)
        pooled = adapter.pooled(embeds, spliced_ids, spliced_mask)
        return self.model.text_proj(pooled)

    def text_features(self, normalize: bool = True, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """[C, D] class text features from the prompts ``[start] ctx <class name>`` (unit rows by default)."""
        feats = self._splice(self.ctx if ctx is None else ctx)
        return F.normalize(feats, dim=-1) if normalize else feats

    def logits(self, features: torch.Tensor, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """features [N, D] (clip features) -> [N, C] = logit_scale * cosine."""
        scale = self.model.logit_scale.detach()
        return scale * F.normalize(features, dim=-1) @ self.text_features(ctx=ctx).T

    @torch.no_grad()
    def predict(self, features) -> np.ndarray:
        """features [N, D] -> [N] predicted class ids (argmax cosine)."""
        feats = torch.as_tensor(np.asarray(features), dtype=torch.float32, device=self.ctx.device)
        return self.logits(feats).argmax(1).cpu().numpy()


def _tokenize_classes(tokenizer, class_names: list[str], n_ctx: int) -> tuple[torch.Tensor, torch.Tensor]:
    pad = int(getattr(tokenizer, "pad_id", 0))
    ids = tokenizer(list(class_names))
    mask = (ids != pad).long()
    L = ids.shape[1]
    lengths = mask.sum(1)
    too_long = [n for n, k in zip(class_names, lengths.tolist()) if k + n_ctx > L]
    if too_long:
        raise ValueError(f"{n_ctx} context vectors leave {L - n_ctx} of {L} tokens for the class names, too few for "
                         f"{too_long}; use a smaller n_ctx or shorter class names")
    return ids, mask


def init_context(model, tokenizer, n_ctx: int = 16, ctx_init: str | None = None, seed: int = 0) -> torch.Tensor:
    """[M, W] initial context: the token embeddings of ``ctx_init`` (then M = its token count), else N(0, 0.02²).

    Args:
        model: a SurgCLIP model (its text tower's embedding table is read, not changed).
        tokenizer: the model's tokenizer.
        n_ctx: M for random initialisation.
        ctx_init: a phrase such as ``"a surgical video of"``; its tokens (without start/end tokens) become the context.
        seed: seed of the random initialisation.
    """
    adapter = _TextTowerAdapter(model)
    device = adapter.embedding.weight.device
    if ctx_init:
        ids = tokenizer([ctx_init])[0]
        pad = int(getattr(tokenizer, "pad_id", 0))
        body = ids[1:][ids[1:] != pad]
        end_id = ids.max() if adapter.kind == "open_clip" else None  # open_clip's end token is its largest id
        if end_id is not None:
            body = body[body != end_id]
        if getattr(tokenizer, "append_sep", False):  # drop the trailing [SEP]
            body = body[:-1]
        if len(body) == 0:
            raise ValueError(f"ctx_init {ctx_init!r} has no tokens")
        with torch.no_grad():
            return adapter.embed(body.to(device)).detach().clone().float()
    if n_ctx < 1:
        raise ValueError(f"n_ctx must be >= 1, got {n_ctx}")
    g = torch.Generator().manual_seed(int(seed))
    return (torch.randn(n_ctx, adapter.width, generator=g) * 0.02).to(device)


def make_prompts(model, tokenizer, class_names: list[str], n_ctx: int = 16, ctx_init: str | None = None,
                 seed: int = 0) -> CoOpPrompts:
    """Untrained CoOp prompts (with ``ctx_init`` they reproduce the hand-written prompt ``f"{ctx_init} {name}"``)."""
    ctx = init_context(model, tokenizer, n_ctx, ctx_init, seed)
    ids, mask = _tokenize_classes(tokenizer, class_names, ctx.shape[0])
    device = ctx.device
    return CoOpPrompts(model, ctx, list(class_names), ids.to(device), mask.to(device), ctx_init or "random")


def train_coop(model, tokenizer, class_names: list[str], train_features, train_labels, n_ctx: int = 16,
               ctx_init: str | None = None, epochs: int = 50, lr: float = 2e-3, batch_size: int = 32,
               seed: int = 0) -> CoOpPrompts:
    """Learn CoOp context vectors on frozen clip features.

    Args:
        model: a SurgCLIP model; never modified (its parameters get no gradient, its mode is restored).
        tokenizer: the model's tokenizer.
        class_names: C class texts in class-id order (e.g. ``readable_class_name`` of the benchmark's classes).
        train_features: [N, D] frozen clip features (``model.encode_video`` / ``extract_features``).
        train_labels: [N] class ids in 0..C-1.
        n_ctx: number of context vectors M (random init); ignored with ``ctx_init``.
        ctx_init: a phrase to initialise the context from (M = its token count), e.g. ``"a surgical video of"``.
        epochs, lr, batch_size: SGD (momentum 0.9) with a cosine learning-rate schedule, as CoOp.
        seed: seeds the context initialisation and the batch order.
    Returns:
        CoOpPrompts with the learned context and the loss per epoch in ``history``.
    """
    x = torch.as_tensor(np.asarray(train_features), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(train_labels), dtype=torch.long)
    if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"train_features must be [N, D] and train_labels [N] with N >= 1, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if int(y.min()) < 0 or int(y.max()) >= len(class_names):
        raise ValueError(f"train_labels must be in 0..{len(class_names) - 1}, found {int(y.min())}..{int(y.max())}")
    prompts = make_prompts(model, tokenizer, class_names, n_ctx, ctx_init, seed)
    device = prompts.ctx.device
    x, y = x.to(device), y.to(device)
    ctx = torch.nn.Parameter(prompts.ctx.clone())
    opt = torch.optim.SGD([ctx], lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    g = torch.Generator().manual_seed(int(seed))
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()  # no dropout in the frozen towers
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for _ in range(epochs):
            order, total = torch.randperm(len(x), generator=g).to(device), 0.0
            for start in range(0, len(x), batch_size):
                batch = order[start:start + batch_size]
                loss = F.cross_entropy(prompts.logits(x[batch], ctx=ctx), y[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(batch)
            sched.step()
            prompts.history.append(total / len(x))
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)
    prompts.ctx = ctx.detach()
    return prompts


def evaluate_coop(prompts: CoOpPrompts, test_features, test_labels, test_videos,
                  convention: str = M.DEFAULT_CONVENTION) -> tuple[dict, np.ndarray]:
    """(single-label metrics of the prompts' argmax, [N, C] logits) on test clip features [N, D]."""
    with torch.no_grad():
        feats = torch.as_tensor(np.asarray(test_features), dtype=torch.float32, device=prompts.ctx.device)
        scores = prompts.logits(feats).float().cpu().numpy()
    m = M.single_label_metrics(np.asarray(test_labels), scores.argmax(1), np.asarray(test_videos),
                               len(prompts.class_names), convention)
    return m, scores


def coop_probe(model, tokenizer, class_names: list[str], train_x, train_y, test_x, test_y, test_videos,
               shots=(1, 2, 4, 8, 16), seeds=(0, 1, 2), n_ctx: int = 16, ctx_init: str | None = None,
               epochs: int = 50, lr: float = 2e-3, batch_size: int = 32,
               convention: str = M.DEFAULT_CONVENTION) -> dict:
    """CoOp over shots and seeds, in the linear probe's report format.

    Args:
        train_x, train_y: [N, D] frozen training clip features and [N] class ids (k frames per class are drawn
            per seed with ``linear_probe.sample_shots``).
        test_x, test_y, test_videos: test features [M, D], class ids [M], video ids [M].
        shots, seeds: one CoOp fit per (k, seed).
        n_ctx, ctx_init, epochs, lr, batch_size: see ``train_coop``.
    Returns:
        ``{"protocol", "results": {"k-shot": {"f1_mean", "f1_std", "accuracy_mean", ..., "runs", "shots"}}}``;
        with ``ctx_init`` also ``results["zero-shot"]``: the untrained prompt ``f"{ctx_init} {name}"``;
        ``scores``: ``{"<entry>/seed<k>": [M, C] test logits}`` for the predictions files.
    """
    train_y, test_y = np.asarray(train_y), np.asarray(test_y)
    keys = ("f1", "accuracy", "global_f1", "global_accuracy")
    results, scores = {}, {}
    if ctx_init:
        m, scores["zero-shot/seed0"] = evaluate_coop(make_prompts(model, tokenizer, class_names, n_ctx, ctx_init),
                                                     test_x, test_y, test_videos, convention)
        results["zero-shot"] = summarize_runs([{"seed": None, **{k: m[k] for k in keys}}], shots=0)
    for k in shots:
        runs = []
        for seed in seeds:
            rows = sample_shots(train_y, int(k), seed)
            prompts = train_coop(model, tokenizer, class_names, np.asarray(train_x)[rows], train_y[rows], n_ctx,
                                 ctx_init, epochs, lr, batch_size, seed)
            m, scores[f"{int(k)}-shot/seed{seed}"] = evaluate_coop(prompts, test_x, test_y, test_videos, convention)
            runs.append({"seed": seed, "num_train_frames": int(len(rows)), "final_loss": prompts.history[-1]
                         if prompts.history else None, **{key: m[key] for key in keys}})
        results[f"{int(k)}-shot"] = summarize_runs(runs, shots=int(k))
    protocol = PROTOCOL.format(n_ctx="M (from the init phrase)" if ctx_init else n_ctx, init=ctx_init or "N(0, 0.02)")
    return {"protocol": protocol + f"; metric convention {convention}", "results": results, "scores": scores}
