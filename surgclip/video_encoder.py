"""Video towers: a TimeSformer with divided space-time attention, or an image trunk run per frame
followed by a temporal module.

Every tower maps ``video [B, T, 3, H, W]`` to per-frame features ``[B, T, width]``; the model
projects them and pools over time.
"""
from __future__ import annotations

import contextlib
import math
import threading

import torch
import torch.nn.functional as F
from torch import nn

from .compat import has_hooks


def _resize_nearest_1d(embed: torch.Tensor, length: int) -> torch.Tensor:
    """[1, L, D] -> [1, length, D] by nearest-neighbour interpolation (as TimeSformer does)."""
    if embed.shape[1] == length:
        return embed
    return F.interpolate(embed.transpose(1, 2), size=length, mode="nearest").transpose(1, 2)


MLP_CHUNK = 1024  # tokens per MLP call of a prepared block on a float32 CPU model (see ChunkedMLPResidual)


class FusedLinearPair:
    """``second(first(y))`` for two plain ``nn.Linear`` layers in a row, as one linear: weight
    ``W2 @ W1``, bias ``W2 @ b1 + b2``. Equal to the two linears up to float rounding.

    The fused weight and bias are made at each call from the weights as they are then (no copy to go
    stale, whatever changes them; autograd reaches the weights through them), in float32 outside
    any autocast, then cast to the layers' dtype. Over ``rows`` rows of width ``D`` this replaces
    two rows x D x D products by one D x D x D and one rows x D x D product, so it is used for calls
    of at least ``2 * D`` rows; fewer rows run the two linears. The layers themselves are not called
    (their hooks would not run): ``DividedBlock.prepare_for_inference`` installs this only for
    unhooked ``nn.Linear`` layers with biases.
    """

    def __init__(self, first: nn.Linear, second: nn.Linear):
        self.first, self.second = first, second

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        first, second = self.first, self.second
        if y.numel() // y.shape[-1] < 2 * first.in_features:  # rows
            return second(first(y))
        with torch.autocast(first.weight.device.type, enabled=False):
            w2 = second.weight.float()
            weight = w2 @ first.weight.float()
            bias = torch.addmv(second.bias.float(), w2, first.bias.float())
        return F.linear(y, weight.to(second.weight.dtype), bias.to(second.bias.dtype))


class ChunkedMLPResidual:
    """``x + mlp(norm(x))`` over equal chunks of at most ``chunk`` tokens (the same values to float
    rounding: every op is per token).

    The MLP's 4x-wide hidden activations of a whole 16-frame clip are tens of MB per call, above
    glibc's mmap threshold, so each call page-faults fresh buffers in; chunks of about a thousand
    tokens reuse cached ones and stay closer to the CPU caches. Installed by
    ``DividedBlock.prepare_for_inference`` only for a float32 model on the CPU with precision
    ``fp32``: under bf16 autocast oneDNN's product for ``fc2`` (K = 3072, N = 768) runs at a
    fraction of its rate over chunks of this size, and a GPU gains nothing from chunks.
    """

    def __init__(self, norm: nn.Module, mlp: nn.Module, chunk: int):
        self.norm, self.mlp, self.chunk = norm, mlp, int(chunk)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        rows = flat.shape[0]
        size = max(1, -(-rows // max(1, -(-rows // self.chunk))))  # equal chunks: no small GEMM left at the end
        out = torch.empty_like(flat)
        for start in range(0, rows, size):
            chunk = flat[start:start + size]
            out[start:start + size] = chunk + self.mlp(self.norm(chunk))
        return out.view_as(x)


_REWRITES = ("_temporal_output", "_mlp_residual")  # the methods a prepared block replaces


class DividedBlock(nn.Module):
    """One TimeSformer block: temporal attention, spatial attention, MLP (divided space-time).

    Reproduces the published SurgCLIP/TimeSformer block exactly, including two quirks that its
    checkpoints were trained with: the token prepended to each frame for spatial attention is that
    frame's *first patch token* (the per-frame class tokens are dropped), and the class-token slots
    leave the block holding twice the spatial-attention output at that position (no residual).

    Layout: tokens stay frame-major, ``[B, T, 1 + N, D]`` (slot 0 of each frame is its class slot),
    for the whole tower. Linear layers, LayerNorm and the MLP act per token, so only attention cares
    about the grouping: spatial attention reads each frame as one contiguous sequence, and temporal
    attention takes a strided view of the same qkv output. The published model instead shuffles
    every block's tokens between the ``(n t)`` and ``(t n)`` orders (six full copies per block), which
    made it, and our first port of it, memory-bound; under bf16 those copies dominated.

    ``forward`` runs one computation, whatever the mode: two of its steps (``_temporal_output``,
    ``_mlp_residual``) are methods that ``prepare_for_inference`` replaces on this block with
    cheaper equivalents, and that ``remove_inference_rewrites`` or ``train()`` put back.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float,
                 ln_eps: float):
        super().__init__()
        from timm.layers import DropPath, Mlp
        from timm.models.vision_transformer import Attention

        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.temporal_attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.temporal_fc = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _temporal(self, x: torch.Tensor) -> torch.Tensor:
        """The temporal branch, ``temporal_fc(drop_path(attention over time))`` at every token slot:
        [B, T, S, D] -> [B, T, S, D].

        The class slots are attended too (0.5% of the work) and their result discarded by the caller,
        which keeps every tensor contiguous and avoids slicing them out and back in.
        """
        attn = self.temporal_attn
        B, T, S, D = x.shape
        H = attn.num_heads
        qkv = attn.qkv(x).view(B, T, S, 3, H, D // H).permute(3, 0, 2, 4, 1, 5)  # [3, B, S, H, T, d]
        q, k, v = (t.reshape(B * S, H, T, D // H) for t in qkv.unbind(0))  # a view when B == 1
        out = F.scaled_dot_product_attention(q, k, v)  # [B*S, H, T, d]
        out = out.view(B, S, H, T, D // H).permute(0, 3, 1, 2, 4).reshape(B, T, S, D)
        return self._temporal_output(out)

    def _temporal_output(self, y: torch.Tensor) -> torch.Tensor:
        """The temporal branch's output layers, ``temporal_fc(drop_path(temporal_attn.proj(y)))``
        (a prepared block runs them as one ``FusedLinearPair``)."""
        return self.temporal_fc(self.drop_path(self.temporal_attn.proj(y)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, 1 + N, D] frame-major tokens (slot 0 = class slot) -> same shape."""
        B, T, S, D = x.shape
        first_patch = x[:, :, 1:2].clone()  # spatial attention's leading token (quirk 1), pre-temporal
        xt = x + self._temporal(self.temporal_norm1(x))
        xt[:, :, :1] = first_patch  # the class slots' temporal result is discarded (as published)
        res_s = self.drop_path(self.attn(self.norm1(xt.view(B * T, S, D)))).view(B, T, S, D)
        x = xt + res_s
        x[:, :, :1] = 2 * res_s[:, :, :1]  # quirk 2: class slot = 2 x its spatial output
        return self._mlp_residual(x)

    def _mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + drop_path(mlp(norm2(x)))`` (a prepared block may run it as a ``ChunkedMLPResidual``)."""
        return x + self.drop_path(self.mlp(self.norm2(x)))

    @property
    def inference_rewrites(self) -> tuple[str, ...]:
        """The rewrites ``prepare_for_inference`` installed and that are still in place:
        ``"fused_temporal_output"``, ``"chunked_mlp"``; empty for the plain block."""
        names = {"_temporal_output": "fused_temporal_output", "_mlp_residual": "chunked_mlp"}
        return tuple(names[n] for n in _REWRITES if n in self.__dict__)

    def prepare_for_inference(self, chunk_mlp: bool = True) -> tuple[str, ...]:
        """Install this block's inference rewrites (see ``SurgCLIP.prepare_for_inference``); returns
        ``inference_rewrites``. Idempotent: the rewrites in place are removed first and the layers
        checked again.

        - ``fused_temporal_output``: ``temporal_attn.proj`` and ``temporal_fc`` as one
          ``FusedLinearPair`` (drop-path between them is the identity in eval mode), when both are
          plain ``nn.Linear`` layers with biases and no hook watches either (``compat.has_hooks``):
          a subclass or wrapper (LoRA) runs as itself.
        - ``chunked_mlp`` (only with ``chunk_mlp``): the MLP residual as a ``ChunkedMLPResidual`` of
          ``MLP_CHUNK`` tokens, when no hook watches ``norm2``, ``mlp`` or a layer inside it (a hook
          would see each chunk instead of the whole input).

        Raises:
            RuntimeError: the block is in training mode (drop-path and dropout are live there).
        """
        self.remove_inference_rewrites()
        if self.training:
            raise RuntimeError("prepare_for_inference on a block in training mode: call eval() first")
        proj, fc = self.temporal_attn.proj, self.temporal_fc
        if all(type(m) is nn.Linear and m.bias is not None and not has_hooks(m) for m in (proj, fc)):
            self._temporal_output = FusedLinearPair(proj, fc)
        if chunk_mlp and not any(has_hooks(m) for m in (self.norm2, *self.mlp.modules())):
            self._mlp_residual = ChunkedMLPResidual(self.norm2, self.mlp, MLP_CHUNK)
        return self.inference_rewrites

    def remove_inference_rewrites(self) -> None:
        """Back to the plain block (a no-op on one)."""
        for name in _REWRITES:
            self.__dict__.pop(name, None)

    def train(self, mode: bool = True) -> "DividedBlock":
        """As ``nn.Module.train``; training mode also removes the inference rewrites."""
        if mode:
            self.remove_inference_rewrites()
        return super().train(mode)


class DividedSpaceTimeViT(nn.Module):
    """TimeSformer ViT with divided space-time attention; parameter names follow the published model."""

    def __init__(self, image_size: int = 224, patch_size: int = 16, width: int = 768, depth: int = 12,
                 heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.1,
                 num_frames: int = 16, ln_eps: float = 1e-6):
        super().__init__()
        from timm.layers import PatchEmbed, trunc_normal_

        self.patch_embed = PatchEmbed(image_size, patch_size, 3, width, strict_img_size=False)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, width))
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, width))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(
            DividedBlock(width, heads, mlp_ratio, qkv_bias, rate, ln_eps) for rate in rates)
        self.norm = nn.LayerNorm(width, eps=ln_eps)
        self.pool_norm = nn.LayerNorm(width, eps=ln_eps)
        self.gradient_checkpointing = False

        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        for block in list(self.blocks)[1:]:  # temporal branches start as identity, as in TimeSformer
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def _pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.pos_embed
        if pos.shape[1] == grid_h * grid_w + 1:
            return pos
        side = int(math.sqrt(pos.shape[1] - 1))
        grid = pos[:, 1:].transpose(1, 2).reshape(1, -1, side, side)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="nearest").flatten(2).transpose(1, 2)
        return torch.cat([pos[:, :1], grid], dim=1)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """video: [B, T, 3, H, W] -> (tokens [B, T, 1 + N, D] after `norm`, pooled [B, T, D])."""
        B, T = video.shape[:2]
        x = self.patch_embed(video.flatten(0, 1))  # [(B T), N, D]
        grid_h, grid_w = (s // p for s, p in zip(video.shape[-2:], self.patch_embed.patch_size))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = (x + self._pos_embed(grid_h, grid_w)).unflatten(0, (B, T))  # [B, T, 1 + N, D], frame-major
        if T > 1:  # time embedding on the patch tokens only
            time = _resize_nearest_1d(self.time_embed, T).unsqueeze(2)  # [1, T, 1, D]
            x = torch.cat([x[:, :, :1], x[:, :, 1:] + time], dim=2)

        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        x = self.norm(x)
        # The published model keeps tokens in (n t) order and at the end regroups them as (t n): each
        # "frame" below is a contiguous run of 1 + N tokens of the (n t) order. Kept as is, because the
        # checkpoints were trained with it; it costs one copy here.
        tokens = x.transpose(1, 2).reshape(B, T, -1, x.shape[-1])
        return tokens, self.pool_norm(tokens[:, :, 1:].mean(2))


class TimeSformerEncoder(nn.Module):
    """Video tower with divided space-time attention (``temporal: divided``)."""

    def __init__(self, width: int = 768, **kwargs):
        super().__init__()
        self.width = width
        self.model = DividedSpaceTimeViT(width=width, **kwargs)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.model.gradient_checkpointing = enable

    def forward(self, video: torch.Tensor, return_tokens: bool = False):
        tokens, pooled = self.model(video)
        return (pooled, tokens) if return_tokens else pooled


class TemporalTransformer(nn.Module):
    """A few pre-norm transformer layers over time with a learned temporal position embedding."""

    def __init__(self, width: int, depth: int = 1, heads: int = 4, num_frames: int = 16, mlp_ratio: float = 4.0):
        super().__init__()
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames, width))
        layer = nn.TransformerEncoderLayer(width, heads, int(width * mlp_ratio), dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        nn.init.trunc_normal_(self.time_embed, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, T, D] -> [B, T, D]."""
        embed = self.time_embed
        if embed.shape[1] != x.shape[1]:
            embed = F.interpolate(embed.transpose(1, 2), size=x.shape[1], mode="linear",
                                  align_corners=True).transpose(1, 2)
        return self.layers(x + embed)


class FrameEncoder(nn.Module):
    """Image trunk applied per frame ([B, T] folded into the batch) + temporal module.

    ``temporal='mean'`` leaves frames independent (the model then averages them, CLIP4Clip's
    parameter-free baseline); ``'transformer'`` mixes them with a small temporal transformer.
    """

    def __init__(self, trunk: nn.Module, width: int, temporal: str = "mean", temporal_cfg: dict | None = None):
        super().__init__()
        self.trunk = trunk
        self.width = width
        if temporal == "mean":
            self.temporal = nn.Identity()
        elif temporal == "transformer":
            self.temporal = TemporalTransformer(width, **(temporal_cfg or {}))
        else:
            raise ValueError(f"unknown temporal module {temporal!r}; expected 'mean', 'transformer' or 'divided'")

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        if hasattr(self.trunk, "set_grad_checkpointing"):
            self.trunk.set_grad_checkpointing(enable)

    def forward(self, video: torch.Tensor, return_tokens: bool = False):
        B, T = video.shape[:2]
        feats = self.trunk(video.flatten(0, 1)).reshape(B, T, -1)
        feats = self.temporal(feats)
        return (feats, None) if return_tokens else feats


def build_video_encoder(cfg: dict, clip_model: nn.Module | None = None) -> nn.Module:
    """Build a video tower from the ``vision`` section of an architecture config.

    Args:
        cfg: ``{"temporal": "divided"|"mean"|"transformer", ...}``; for frame trunks either
            ``"timm": {"model": name, "pretrained": bool, **kwargs}`` or ``"open_clip": true``.
        clip_model: an open_clip model whose ``visual`` is used when ``cfg["open_clip"]`` is set.
    Returns:
        module mapping [B, T, 3, H, W] -> [B, T, width], with a ``width`` attribute.
    """
    cfg = dict(cfg)
    temporal = cfg.pop("temporal", "mean")
    if temporal == "divided":
        allowed = {"image_size", "patch_size", "width", "depth", "heads", "mlp_ratio", "qkv_bias",
                   "drop_path_rate", "num_frames", "ln_eps"}
        unknown = set(cfg) - allowed
        if unknown:
            raise ValueError(f"unknown keys for a divided space-time tower: {sorted(unknown)}; allowed: {sorted(allowed)}")
        return TimeSformerEncoder(**cfg)
    temporal_cfg = cfg.pop("temporal_cfg", None)
    if cfg.get("open_clip"):
        if clip_model is None:
            raise ValueError("vision tower 'open_clip' needs the open_clip model")
        trunk = clip_model.visual
        width = int(trunk.output_dim)
    elif "timm" in cfg:
        trunk, width = _timm_trunk(dict(cfg["timm"]))
    elif "hf_siglip" in cfg:  # a Hugging Face SigLIP image tower (MedSigLIP)
        from .baselines.siglip import SiglipImageTrunk

        trunk = SiglipImageTrunk(cfg["hf_siglip"])
        width = trunk.width
    else:
        raise ValueError(f"vision config needs 'temporal: divided', 'timm', 'open_clip' or 'hf_siglip'; "
                         f"got keys {sorted(cfg)}")
    return FrameEncoder(trunk, width, temporal, temporal_cfg)


def _timm_trunk(cfg: dict) -> tuple[nn.Module, int]:
    import timm

    name = cfg.pop("model")
    pretrained = bool(cfg.pop("pretrained", False))
    try:
        trunk = timm.create_model(name, pretrained=pretrained, num_classes=0, **cfg)
    except Exception as err:  # a missing weight file offline surfaces as many different errors
        if not pretrained:
            raise
        raise RuntimeError(
            f"could not load pretrained timm weights for {name!r} ({type(err).__name__}: {err}). "
            f"Offline, put the weights in the Hugging Face cache (HF_HOME) or set "
            f"vision.timm.pretrained=false") from err
    return trunk, int(trunk.num_features)


def input_conv(tower: nn.Module) -> nn.Conv2d | None:
    """The patch embedding a video tower applies first to its frames, when the preprocessing's
    per-channel normalisation folds into it exactly: a plain 3-channel ``nn.Conv2d`` whose kernel is
    its stride and that pads nothing (padding zeros are not the normalised zeros); None otherwise.
    Looked for where this package's towers keep it: ``model.patch_embed.proj`` (divided space-time),
    ``trunk.patch_embed.proj`` (timm frame trunks) and ``trunk.conv1`` (open_clip ViTs)."""
    embed = _submodule(tower, "model.patch_embed") or _submodule(tower, "trunk.patch_embed")
    if embed is not None and getattr(embed, "dynamic_img_pad", False):  # pads odd-sized frames with zeros first
        return None
    conv = getattr(embed, "proj", None) if embed is not None else _submodule(tower, "trunk.conv1")
    if type(conv) is not nn.Conv2d or conv.in_channels != 3 or conv.groups != 1 or conv.padding_mode != "zeros":
        return None
    padding = (0, 0) if conv.padding == "valid" else tuple(conv.padding)
    if tuple(conv.kernel_size) != tuple(conv.stride) or any(padding) or tuple(conv.dilation) != (1, 1):
        return None
    return conv


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


_FOLD_LOCK = threading.RLock()  # re-entrant: a hook inside the tower may fold again on its thread


@contextlib.contextmanager
def normalization_folded_into(conv: nn.Conv2d, mean, std):
    """Inside, ``conv`` maps raw pixel values x (0-255) to ``conv((x / 255 - mean) / std)`` for calls
    from this thread: weight ``W / (255 std_c)``, bias ``b - sum W mean_c / std_c``, made from the
    weights as they are (autograd reaches them through the fold). Equal to normalising first up to
    float rounding, without the passes over the frames. The folded layer runs in float32 even under
    autocast: its weights scaled by 1 / (255 std) meet inputs up to 255 that are not centred, and
    bf16-rounded weights there shifted every patch token alike (embeddings 3-5x further from fp32 than
    normalising first; the layer is under 1% of a ViT's work). Calls from other threads meanwhile run
    the layer as it is; folds of several threads take turns.
    """
    weight = conv.weight
    std = torch.as_tensor(std, dtype=weight.dtype, device=weight.device).view(1, -1, 1, 1)
    mean = torch.as_tensor(mean, dtype=weight.dtype, device=weight.device).view(1, -1, 1, 1)
    with _FOLD_LOCK:
        folded_w = weight / (255.0 * std)
        folded_b = (weight * (-mean / std)).sum((1, 2, 3))
        if conv.bias is not None:
            folded_b = folded_b + conv.bias
        owner, previous = threading.get_ident(), conv.__dict__.get("forward")
        plain = previous or type(conv).forward.__get__(conv)

        def forward(x: torch.Tensor) -> torch.Tensor:
            if threading.get_ident() == owner:
                with torch.autocast(x.device.type, enabled=False):  # ``input_conv``'s layer: zero padding
                    return F.conv2d(x.to(folded_w.dtype), folded_w, folded_b, conv.stride, conv.padding,
                                    conv.dilation, conv.groups)
            return plain(x)

        conv.forward = forward
        try:
            yield
        finally:
            if previous is None:
                del conv.forward
            else:
                conv.forward = previous
