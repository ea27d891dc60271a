"""The SurgCLIP dual encoder: a video tower and a text tower projected into one embedding space."""
from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .compat import mkldnn_bf16_supported
from .text_encoder import build_text_encoder
from .transform import PreprocessCfg, ReusableBuffer, normalize_frames
from .utils import graph_capturing
from .video_encoder import DividedBlock, build_video_encoder, input_conv, normalization_folded_into

MIN_TEMPERATURE = 0.01  # logit scale capped at 100, as in CLIP
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_PRECISION_ALIASES = {"32": "fp32", "32-true": "fp32", "float32": "fp32", "bf16-mixed": "bf16", "bfloat16": "bf16",
                      "16": "fp16", "16-mixed": "fp16", "float16": "fp16"}


def check_precision(precision: str) -> str:
    """Canonical inference precision name (``fp32``, ``bf16`` or ``fp16``); Lightning's spellings
    (``32-true``, ``bf16-mixed``, ``16-mixed``) are accepted. Raises ValueError for anything else."""
    name = _PRECISION_ALIASES.get(str(precision), str(precision))
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    return name


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products at least as fast as float32 (oneDNN's test for
    AVX512-BF16 / AMX / AVX512 cores). On an AVX2-only CPU (e.g. the AMD EPYC cores CI runs on) a bf16
    matmul is emulated, many times slower than float32 (``eval/bench/bench_peer.py`` prints
    both rates). True where this torch cannot tell (``compat.mkldnn_bf16_supported`` is None)."""
    return mkldnn_bf16_supported() is not False  # unknown (no probe in this torch): no warning


class SurgCLIP(nn.Module):
    """Video-text dual encoder.

    Parameter names follow the published SurgCLIP model (``vision_encoder``, ``vision_layernorm``,
    ``text_encoder``, ``vision_proj``, ``text_proj``, ``temp``).

    Similarity: with ``similarity="frame_mean"`` (SurgCLIP-B) a clip scores a text by the cosine of
    each frame's embedding with the text, averaged over frames; with ``"video"`` by the cosine of the
    mean-pooled clip embedding. Either way ``encode_video`` returns a vector ``v`` such that
    ``v @ encode_text(t).T / temp`` are the logits, so one FAISS inner-product index serves both.

    Precision: ``precision="bf16"`` (or ``"fp16"``, CUDA only) runs the video tower under
    ``torch.autocast`` on the input's device: matrix products and attention in the low precision,
    LayerNorm statistics and the residual stream in float32. The projections and the text tower stay
    float32 (text is a few prompts per run, and bf16 there doubled the logit error for no measurable
    gain); the weights stay float32 and the returned embeddings/logits are float32, so callers need
    no change.

    Inference: ``prepare_for_inference`` installs the video tower's inference-only rewrites (same
    outputs to float rounding); ``surgclip.load`` and the evaluators call it, ``train()`` removes them.

    Args:
        config: architecture config (see ``surgclip/model_configs/*.json``).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``; change it later with
            ``set_precision``.
    """

    def __init__(self, config: dict, precision: str = "fp32"):
        super().__init__()
        self.precision = check_precision(precision)
        self.config = copy.deepcopy(config)
        clip_model = _open_clip_model(config["open_clip"]) if config.get("open_clip") else None
        self.vision_encoder = build_video_encoder(config["vision"], clip_model)
        self.text_encoder = build_text_encoder(config["text"], clip_model)
        vision_width, text_width = self.vision_encoder.width, self.text_encoder.width
        ln_eps = config.get("vision_layernorm_eps")
        self.vision_layernorm = nn.LayerNorm(vision_width, eps=ln_eps) if ln_eps else nn.Identity()
        embed_dim = config.get("embed_dim")
        self.vision_proj = nn.Linear(vision_width, embed_dim) if embed_dim else nn.Identity()
        # ``text_proj: false``: the text tower's features are already in the joint space (CAMMA's models)
        self.text_proj = nn.Linear(text_width, embed_dim) if embed_dim and config.get("text_proj", True) else nn.Identity()
        self.embed_dim = embed_dim or vision_width
        if not isinstance(self.text_proj, nn.Linear) and embed_dim and text_width != embed_dim:
            raise ValueError(f"text_proj: false needs a text tower of width embed_dim={embed_dim}; it has {text_width}")
        temperature = config.get("temperature", 0.07)
        if clip_model is not None and config["open_clip"].get("pretrained"):
            temperature = float(1.0 / clip_model_logit_scale(clip_model))
        self.temp = nn.Parameter(torch.tensor(float(temperature)))
        self.similarity = config.get("similarity", "video")
        if self.similarity not in ("video", "frame_mean"):
            raise ValueError(f"unknown similarity {self.similarity!r}; expected 'video' or 'frame_mean'")
        self.num_frames = int(config.get("num_frames", 16))
        self.preprocess_cfg = PreprocessCfg.from_dict(config.get("preprocess"))
        self._pixel_buffer = ReusableBuffer()  # uint8 video's float copy (see ``_tower_input``)
        self._grad_checkpointing = False

    @property
    def name(self) -> str:
        return self.config.get("name", "custom")

    @property
    def logit_scale(self) -> torch.Tensor:
        """1 / temperature, capped at 1 / MIN_TEMPERATURE = 100."""
        return 1.0 / self.temp.clamp(min=MIN_TEMPERATURE)

    def set_precision(self, precision: str) -> "SurgCLIP":
        """Set the inference precision (``fp32``, ``bf16``, ``fp16``); returns the model."""
        self.precision = check_precision(precision)
        if self.inference_rewrites:  # whether the MLP runs in chunks depends on the precision
            self._install_inference_rewrites()
        return self

    def prepare_for_inference(self) -> "SurgCLIP":
        """Put the model in eval mode and install its inference-only rewrites; returns the model.

        Each rewrite replaces a computation of the video tower by a cheaper one with the same
        outputs up to float rounding, for a model that runs forward only. Every divided space-time
        block (``video_encoder.DividedBlock.prepare_for_inference``) gets:

        - ``fused_temporal_output``: its temporal attention's output projection and ``temporal_fc``,
          two linears in a row, run as one (``FusedLinearPair``: the product of the two weights,
          made at each call from the weights as they are, for calls of at least 2 x width tokens);
        - ``chunked_mlp``: its MLP residual over chunks of ``MLP_CHUNK`` tokens
          (``ChunkedMLPResidual``), when the tower's weights are float32 on the CPU and the
          precision is ``fp32`` at this call.

        A layer that a hook watches (forward, backward, or one registered for every module:
        ``compat.has_hooks``), or that is not the plain layer a rewrite expects (a LoRA wrapper, a
        subclass), is left as it is: its hooks and wrapper see it run as before. Frame-trunk towers
        have nothing to rewrite. Gradients reach every weight through the rewrites.

        Idempotent: each call removes the rewrites in place and installs them again, checking the
        layers, their hooks, device, dtype and precision as they are then; call it again after
        registering a hook on a layer inside a block or after moving the model to another device or
        dtype (``set_precision`` does it itself). ``train()`` (any ``train(True)``, Lightning's
        included) and ``remove_inference_rewrites`` remove them, so training never runs them.
        ``surgclip.load`` and the evaluators (zero-shot, features, the library indexer, the search
        engine) make this call; ``inference_rewrites`` says what is installed.
        """
        self.eval()
        self._install_inference_rewrites()
        return self

    def _install_inference_rewrites(self) -> None:
        weights = list(self.vision_encoder.parameters())
        chunk_mlp = self.precision == "fp32" and all(p.device.type == "cpu" and p.dtype == torch.float32
                                                     for p in weights)
        for module in self.vision_encoder.modules():
            if isinstance(module, DividedBlock):
                module.prepare_for_inference(chunk_mlp=chunk_mlp)

    def remove_inference_rewrites(self) -> "SurgCLIP":
        """Back to the plain forward everywhere (training mode is left as it is); returns the model."""
        for module in self.vision_encoder.modules():
            if isinstance(module, DividedBlock):
                module.remove_inference_rewrites()
        return self

    @property
    def inference_rewrites(self) -> dict[str, int]:
        """How many layers run each rewrite of ``prepare_for_inference`` now, e.g.
        ``{"fused_temporal_output": 12, "chunked_mlp": 12}``; empty for the plain forward."""
        counts: dict[str, int] = {}
        for module in self.vision_encoder.modules():
            if isinstance(module, DividedBlock):
                for name in module.inference_rewrites:
                    counts[name] = counts.get(name, 0) + 1
        return counts

    def autocast(self, device: torch.device | str) -> contextlib.AbstractContextManager:
        """The autocast context of ``self.precision`` for tensors on ``device`` (a no-op for fp32).

        Inside an autocast region that is already active (e.g. Lightning's ``bf16-mixed`` training)
        the outer region is left in charge.
        """
        dtype = PRECISIONS[self.precision]
        device_type = torch.device(device).type
        if dtype is None or torch.is_autocast_enabled(device_type):
            return contextlib.nullcontext()
        if dtype == torch.float16 and device_type != "cuda":
            raise ValueError(f"precision 'fp16' needs a CUDA device (input is on {device_type}); use 'bf16' there")
        if dtype == torch.bfloat16 and device_type == "cpu" and not cpu_has_fast_bf16():
            warnings.warn("precision 'bf16' on a CPU without native bf16 (no AVX512-BF16/AMX): matrix products "
                          "are emulated and run many times slower than fp32; use precision='fp32' here",
                          RuntimeWarning, stacklevel=3)
        return torch.autocast(device_type, dtype=dtype)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Trade compute for memory in both towers during training."""
        for tower in (self.vision_encoder, self.text_encoder):
            tower.set_grad_checkpointing(enable)
        self._grad_checkpointing = bool(enable)

    @staticmethod
    def _check_video(video: torch.Tensor) -> None:
        if not isinstance(video, torch.Tensor):
            raise TypeError(f"video must be a tensor [B, T, 3, H, W], got {type(video).__name__}")
        if video.ndim != 5 or video.shape[2] != 3:
            hint = " (add a batch dimension with video.unsqueeze(0))" if video.ndim == 4 and video.shape[1] == 3 else ""
            raise ValueError(f"expected video [B, T, 3, H, W], got shape {tuple(video.shape)}{hint}")

    @contextlib.contextmanager
    def _tower_input(self, video: torch.Tensor):
        """The video tower's input for ``video``: float frames as they are; uint8 frames (0-255) as a
        float copy of the raw values, with the preprocessing's ``(x / 255 - mean) / std`` folded into
        the tower's patch embedding while the tower runs (``normalization_folded_into``), or applied
        to the copy where the tower has no such layer, under tracing/compile and with gradient
        checkpointing (which could run the layer again outside the fold). With autograd on (training),
        the copy goes into a buffer reused once free (``ReusableBuffer``): a training batch's frames are
        tens of MB, and a fresh allocation of that size page-faults on every step. In inference it is a
        fresh tensor, so the model holds no copy of the last input."""
        if video.dtype != torch.uint8:
            yield video
            return
        cfg = self.preprocess_cfg
        if graph_capturing():
            yield normalize_frames(video, cfg)
            return
        # the copy keeps the frames' memory layout: a channels-last batch (as the collate ships the
        # augmentation's output) is converted in one straight pass, not transposed on the way
        layout = torch.empty_like(video, dtype=torch.float32, device="meta")
        raw = self._pixel_buffer.get(video.shape, video.device, layout.stride()) if torch.is_grad_enabled() else \
            torch.empty_strided(video.shape, layout.stride(), dtype=torch.float32, device=video.device)
        conv = None if self._grad_checkpointing else input_conv(self.vision_encoder)
        if conv is None:
            yield normalize_frames(video, cfg, out=raw)
            return
        raw.copy_(video)
        with normalization_folded_into(conv, cfg.mean, cfg.std):
            yield raw

    def encode_video_frames(self, video: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """video [B, T, 3, H, W] -> per-frame embeddings [B, T, D] (projected).

        ``video``: frames normalised by the model's preprocessing (float), or uint8 frames (0-255) at
        the model's size, which the model normalises itself (folded into its patch embedding: one
        pass over the frames instead of four).
        """
        self._check_video(video)
        with self.autocast(video.device), self._tower_input(video) as x:
            feats = self.vision_encoder(x)
        frames = self.vision_proj(feats.float())  # small; float32 keeps the embedding's rounding down
        return F.normalize(frames, dim=-1) if normalize else frames

    def encode_video(self, video: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """video [B, T, 3, H, W] -> clip embedding [B, D].

        With ``normalize=True`` the result is in similarity space: a unit vector (``video``
        similarity) or the mean of unit frame vectors (``frame_mean``, norm <= 1). With
        ``normalize=False`` it is the mean of the projected frame embeddings.
        """
        return self._pool(self.encode_video_frames(video), normalize)

    @property
    def per_frame_trunk(self) -> bool:
        """True when the video tower runs an image trunk on each frame alone before its temporal
        module (``temporal: mean | transformer``): overlapping clips can then share each frame's trunk
        features (``encode_frame_trunk`` once per frame, ``encode_video_from_trunk`` per clip). A
        divided space-time tower mixes frames in every block and has no such features."""
        return hasattr(self.vision_encoder, "trunk") and hasattr(self.vision_encoder, "temporal")

    def encode_frame_trunk(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [N, 3, H, W] (normalised float, or uint8 as ``encode_video_frames`` takes them) -> the
        trunk's features of each frame [N, W] (before the temporal module)."""
        if not self.per_frame_trunk:
            raise ValueError(f"model {self.name!r} mixes frames inside its video tower: it has no per-frame trunk features")
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames [N, 3, H, W], got shape {tuple(frames.shape)}")
        with self.autocast(frames.device), self._tower_input(frames) as x:
            return self.vision_encoder.trunk(x).reshape(frames.shape[0], -1)

    def encode_video_from_trunk(self, feats: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Per-frame trunk features [B, T, W] (``encode_frame_trunk``) -> clip embedding [B, D], as
        ``encode_video`` gives for those frames."""
        with self.autocast(feats.device):
            feats = self.vision_encoder.temporal(feats)
        return self._pool(self.vision_proj(feats.float()), normalize)

    def _pool(self, frames: torch.Tensor, normalize: bool) -> torch.Tensor:
        """Projected frame embeddings [B, T, D] -> clip embedding [B, D] (see ``encode_video``)."""
        if not normalize:
            return frames.mean(1)
        if self.similarity == "frame_mean":
            return F.normalize(frames, dim=-1).mean(1)
        return F.normalize(frames.mean(1), dim=-1)

    def encode_video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Dense token features [B, T, N, W] after ``vision_layernorm`` (divided towers only)."""
        self._check_video(video)
        with self.autocast(video.device):
            _, tokens = self.vision_encoder(video, return_tokens=True)
            if tokens is None:
                raise ValueError(f"model {self.name!r} has no token-level video features")
            return self.vision_layernorm(tokens).float()

    def encode_text(self, tokens, normalize: bool = True) -> torch.Tensor:
        """tokens (LongTensor [N, L], or a mapping with ``input_ids``/``attention_mask``) -> [N, D]."""
        input_ids, mask = unpack_tokens(tokens)
        feats = self.text_proj(self.text_encoder(input_ids, mask))  # float32 always: see the class docstring
        return F.normalize(feats, dim=-1) if normalize else feats

    def forward(self, video: torch.Tensor, tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (logits_per_video [B, N], logits_per_text [N, B]) scaled by 1 / temperature."""
        logits = self.encode_video(video) @ self.encode_text(tokens).T * self.logit_scale
        return logits, logits.T


def prepare_for_evaluation(model: SurgCLIP) -> Callable[[], None]:
    """``model.prepare_for_inference()`` for one evaluation run (eval mode, the inference rewrites);
    returns a function that hands the model back as it came: its training mode again, and the
    rewrites removed if it had none."""
    was_training, had_rewrites = model.training, bool(model.inference_rewrites)
    model.prepare_for_inference()

    def restore() -> None:
        if not had_rewrites:
            model.remove_inference_rewrites()
        model.train(was_training)

    return restore


def unpack_tokens(tokens) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Token ids and optional attention mask from a LongTensor or a BatchEncoding-like mapping."""
    mask = None
    if isinstance(tokens, Mapping) or hasattr(tokens, "input_ids"):
        get = tokens.get if isinstance(tokens, Mapping) else lambda k: getattr(tokens, k, None)
        input_ids, mask = get("input_ids"), get("attention_mask")
    else:
        input_ids = tokens
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"tokens must be a LongTensor [N, L] (see surgclip.tokenize), got {type(input_ids).__name__}")
    if input_ids.ndim == 1:
        input_ids = input_ids.unsqueeze(0)
        mask = mask.unsqueeze(0) if mask is not None else None
    if input_ids.ndim != 2 or input_ids.shape[0] == 0:
        raise ValueError(f"expected token ids [N, L] with N >= 1, got shape {tuple(input_ids.shape)}")
    return input_ids.long(), mask


def clip_model_logit_scale(clip_model: nn.Module) -> float:
    scale = getattr(clip_model, "logit_scale", None)
    return float(scale.exp()) if scale is not None else 1.0 / 0.07


def _open_clip_model(cfg: dict) -> nn.Module:
    """Build an open_clip CLIP model, with pretrained weights when a tag/file is configured."""
    import open_clip

    name, pretrained = cfg["model"], cfg.get("pretrained")
    try:
        return open_clip.create_model(name, pretrained=pretrained or None, cache_dir=cfg.get("cache_dir"))
    except Exception as err:
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load open_clip weights {name}/{pretrained} ({type(err).__name__}: {err}). Offline, pass "
            f"open_clip={{'pretrained': '/path/to/open_clip_model.safetensors'}} (a local file), put the file in "
            f"the Hugging Face cache, or build without them: create_model('CLIP-B-16', open_clip={{'pretrained': None}})"
        ) from err
