"""Frame and clip transforms, and the published ``VideoPreprocessor``.

One path turns frames into model input, for training and inference alike: uint8 ``[T, H, W, 3]``
-> resize (bicubic, antialiased) -> float in [0, 1] -> normalise -> ``[T, 3, S, S]``. Training
adds random crops/flips/colour whose parameters are drawn once per clip, so every frame of a clip
gets the same augmentation. ``stack_clips`` puts clips into a batch ``[B, T, 3, S, S]`` for training
and evaluation alike.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .compat import storage_use_count
from .utils import frame_number, list_frame_files

SURGCLIP_MEAN = (0.5, 0.5, 0.5)
SURGCLIP_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class PreprocessCfg:
    """How frames become model input; stored with every checkpoint.

    resize: ``"squash"`` resizes straight to image_size x image_size (published SurgCLIP);
    ``"shortest"`` resizes the short side then centre-crops (CLIP); ``"laparoscopic"`` resizes
    16:9 frames to 360x640 then centre-crops (SurgVLP).
    """

    image_size: int = 224
    mean: tuple = SURGCLIP_MEAN
    std: tuple = SURGCLIP_STD
    interpolation: str = "bicubic"
    resize: str = "squash"

    @classmethod
    def from_dict(cls, cfg: dict | None) -> "PreprocessCfg":
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        for key in ("mean", "std"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        return cls(**cfg)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


def as_uint8_frames(frames) -> torch.Tensor:
    """Accept [T,H,W,3] uint8 arrays/tensors, a list of HxWx3 arrays or PIL images -> uint8 [T,3,H,W]."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("empty frame list")
        frames = np.stack([np.asarray(f.convert("RGB")) if hasattr(f, "convert") else np.asarray(f) for f in frames])
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"expected frames as an array, tensor or list of images, got {type(frames).__name__}")
    if frames.ndim == 3:
        frames = frames.unsqueeze(0)
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected frames [T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (0-255), got {frames.dtype}")
    if frames.shape[-1] == 1:
        frames = frames.expand(*frames.shape[:-1], 3)
    return frames.permute(0, 3, 1, 2)


def _mirrored(crop) -> bool:
    """Whether flipping and then resizing gives the same pixels as resizing and then flipping for
    this RandomResizedCrop: its antialiased bilinear and bicubic resizes of uint8 frames, the only
    frames a ClipTransform takes (on float frames the sums' order would move the last bits)."""
    return getattr(crop.interpolation, "value", crop.interpolation) in ("bilinear", "bicubic") and bool(crop.antialias)


class ClipTransform:
    """uint8 frames [T,H,W,3] (or a list of images) -> normalised float [T,3,S,S].

    Args:
        cfg: preprocessing config (size, mean/std, interpolation, resize mode).
        train: add clip-consistent augmentation (random resized crop, horizontal flip, and colour
            jitter when ``color_jitter > 0``).
        normalize: return normalised float frames; False returns the resized/augmented uint8 frames
            [T,3,S,S], which the model takes as they are and normalises itself (folded into its
            patch embedding) or ``normalize_frames`` finishes later. Training's batches and every
            evaluator and indexer use them: a quarter of the bytes to move between processes, to
            keep for overlapping clips and to send to a GPU, and no float pass (a reader thread's
            work) before the forward.
    """

    def __init__(self, cfg: PreprocessCfg | dict | None = None, train: bool = False,
                 crop_scale: tuple = (0.5, 1.0), hflip: float = 0.5, color_jitter: float = 0.0,
                 normalize: bool = True):
        from torchvision.transforms import InterpolationMode, v2

        self.cfg = cfg if isinstance(cfg, PreprocessCfg) else PreprocessCfg.from_dict(cfg)
        self.train, self.normalize = train, normalize
        size, interp = self.cfg.image_size, InterpolationMode(self.cfg.interpolation)
        self.interpolation = interp
        if train:
            steps = [v2.RandomResizedCrop((size, size), scale=crop_scale, interpolation=interp, antialias=True),
                     v2.RandomHorizontalFlip(hflip)]
            if color_jitter:  # off by default: ~20x the cost of crop + flip on CPU, and colour is a surgical cue
                steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter))
            self.augment = v2.Compose(steps)
        else:
            self.augment = None
        from torchvision.transforms.v2 import functional as TF

        # the augmentation's kernels, called directly (see ``_augment``); older torchvision: through v2
        self._direct = all(hasattr(TF, k) for k in ("resized_crop_image", "horizontal_flip_image")) and \
            hasattr(v2.RandomResizedCrop, "make_params")

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        size, interp = self.cfg.image_size, self.interpolation
        if self.cfg.resize == "squash":
            return TF.resize(x, [size, size], interpolation=interp, antialias=True)
        if self.cfg.resize == "shortest":
            return TF.center_crop(TF.resize(x, size, interpolation=interp, antialias=True), [size, size])
        if self.cfg.resize == "laparoscopic":
            x = TF.resize(x, [360, 640], interpolation=interp, antialias=True)
            return TF.center_crop(x, [size, size]) if size <= 360 else TF.resize(x, [size, size], antialias=True)
        raise ValueError(f"unknown resize mode {self.cfg.resize!r}; expected squash, shortest or laparoscopic")

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        """``self.augment(x)``: one draw for all frames, the same random draws in the same order and the
        same pixels, with each step's parameters drawn and its image kernel called directly. v2's
        per-call input flattening, checks and dispatch are a large share of a small clip's augmentation."""
        if not self._direct:
            return self.augment(x)
        from torchvision.transforms import v2
        from torchvision.transforms.v2 import functional as TF

        steps = list(self.augment.transforms)
        while steps:
            step = steps.pop(0)
            if type(step) is v2.RandomResizedCrop:
                p = step.make_params([x])
                top, left, h, w = p["top"], p["left"], p["height"], p["width"]
                if steps and type(steps[0]) is v2.RandomHorizontalFlip and _mirrored(step) and \
                        h * w < step.size[0] * step.size[1] and x.shape[0] > 1:
                    # a crop smaller than the output (upscaling): flip it before the resize, on fewer
                    # pixels (the same pixels: these resizes weigh mirrored positions alike). Not for
                    # one frame: v2's resize returns it contiguous, the flipped crop's channels-last
                    if torch.rand(1) < steps.pop(0).p:
                        x, top, left = TF.horizontal_flip_image(x[..., top:top + h, left:left + w]), 0, 0
                x = TF.resized_crop_image(x, top, left, h, w, size=list(step.size),
                                          interpolation=step.interpolation, antialias=step.antialias)
            elif type(step) is v2.RandomHorizontalFlip:
                if torch.rand(1) < step.p:  # v2: ``torch.rand(1) >= p`` leaves the input as it is
                    x = TF.horizontal_flip_image(x)
            else:
                x = step(x)
        return x

    def __call__(self, frames) -> torch.Tensor:
        x = as_uint8_frames(frames)
        x = self._augment(x) if self.augment is not None else self._resize(x)  # one draw for all frames
        if not self.normalize:  # (channels-last strides from the uint8 resize: the collate's stack copies once)
            return x
        return normalize_frames(x.contiguous(), self.cfg)  # normalising is faster on contiguous memory


def normalize_frames(frames: torch.Tensor, cfg: PreprocessCfg, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 frames [..., 3, S, S] (any device) -> float ``(x / 255 - mean) / std``.

    The operations and their order are torchvision's ``ToTensor`` + ``Normalize`` (the published
    preprocessing), so the result is bit-identical to it; in place after the first, so one buffer.
    ``out``: a float32 tensor of the frames' shape and device to write into (and return) instead of
    a new one; the values are the same bits.
    """
    std = torch.tensor(cfg.std, device=frames.device).view(3, 1, 1)
    mean = torch.tensor(cfg.mean, device=frames.device).view(3, 1, 1)
    x = frames.float() if out is None else out.copy_(frames)
    return x.div_(255.0).sub_(mean).div_(std)


def _memory_order(stride: tuple) -> tuple:
    """Dims from outermost to innermost in memory (ties keep their order)."""
    return tuple(sorted(range(len(stride)), key=stride.__getitem__, reverse=True))


def clip_batch_layout(clips) -> tuple[tuple, tuple]:
    """(shape, stride) of the batch ``[B, T, *F]`` that ``stack_clips`` makes of ``clips`` (each a
    ``[T, *F]`` tensor or a sequence of T ``[*F]`` frames).

    The batch keeps its frames' memory layout when they all share one: channels-last ``[3, S, S]``
    frames, as the uint8 resize and crop leave them, give a batch that is ``[B, T, S, S, 3]`` in
    memory, so filling it is a plain copy of each frame, not a transposing one. Frames of mixed
    layouts give a contiguous batch.
    """
    first = clips[0][0]
    if all(isinstance(c, torch.Tensor) for c in clips):
        strides = {c.stride()[1:] for c in clips}
    else:
        strides = {f.stride() for c in clips for f in c}
    orders = {_memory_order(s) for s in strides}
    order = orders.pop() if len(orders) == 1 else tuple(range(first.ndim))
    frame_stride, size = [0] * first.ndim, 1
    for d in reversed(order):
        frame_stride[d] = size
        size *= first.shape[d]
    T = len(clips[0])
    return (len(clips), T, *first.shape), (T * size, size, *frame_stride)


def stack_clips(clips, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T, *F]`` from B clips, each a ``[T, *F]`` tensor or a sequence of T ``[*F]`` frames
    (images ``[3, S, S]`` or features ``[W]``): every frame copied once, straight into the batch,
    laid out by ``clip_batch_layout``.

    Args:
        clips: the clips, all of the first one's frame count and frame shape.
        out: the batch to fill (e.g. in shared memory), of that shape; default: a new tensor of the
            frames' dtype and device.
    Raises:
        ValueError: a clip whose frame count or frame shape differs from the first one's (a copy
            into the batch would broadcast it).
    """
    first = clips[0][0]
    if out is None:
        shape, stride = clip_batch_layout(clips)
        out = torch.empty_strided(shape, stride, dtype=first.dtype, device=first.device)
    for b, clip in enumerate(clips):
        if len(clip) != out.shape[1] or (clip.shape[1:] != first.shape if isinstance(clip, torch.Tensor)
                                         else any(f.shape != first.shape for f in clip)):
            raise ValueError(f"clip {b}: frames {[tuple(f.shape) for f in clip]}, the batch's first clip: "
                             f"{out.shape[1]} x {tuple(first.shape)}")
        if isinstance(clip, torch.Tensor):
            out[b].copy_(clip)
        else:
            for t, frame in enumerate(clip):
                out[b, t].copy_(frame)
    return out


class ReusableBuffer:
    """A float32 tensor handed out again for the next call of the same shape and device, once
    nothing else holds it.

    Each call returns a fresh alias of the buffer. Before reuse, the buffer's storage reference
    count (``compat.storage_use_count``) must show that no alias is alive: not the last batch,
    not a view or ``.numpy()`` of it, not a tensor autograd saved for a backward still to come.
    Otherwise (or on a torch without that count, or for a buffer made under ``torch.inference_mode``,
    e.g. by a validation, asked for outside it) a new buffer is allocated and kept instead. Writing
    into memory already mapped spares the page faults of a fresh allocation, most of the cost of
    normalising a training batch into a new tensor.
    """

    def __init__(self):
        self._buf: torch.Tensor | None = None
        self._lock = threading.Lock()  # the check that it is free and the alias that takes it: one step

    def __deepcopy__(self, memo) -> "ReusableBuffer":
        return ReusableBuffer()  # a copy of its owner starts without one (the buffer is scratch memory)

    def _free(self) -> bool:
        count = storage_use_count(self._buf)
        return count is not None and count <= 1  # the buffer's own reference only

    def get(self, shape, device, stride=None) -> torch.Tensor:
        """A float32 tensor of ``shape`` on ``device``, laid out with ``stride`` (default: contiguous)."""
        shape, device = tuple(shape), torch.device(device)
        with self._lock:
            buf = self._buf
            if buf is None or tuple(buf.shape) != shape or buf.device != device or \
                    (stride is not None and buf.stride() != tuple(stride)) or \
                    (stride is None and not buf.is_contiguous()) or not self._free() or \
                    (buf.is_inference() and not torch.is_inference_mode_enabled()):  # made in a validation:
                # an inference tensor cannot be written outside inference mode
                self._buf = buf = torch.empty(shape, dtype=torch.float32, device=device) if stride is None else \
                    torch.empty_strided(shape, tuple(stride), dtype=torch.float32, device=device)
            return buf.view(shape)  # an alias: while it lives, the buffer is not handed out again

    def __getstate__(self):
        return {}  # scratch memory: not pickled (nor is the lock)

    def __setstate__(self, state):
        self.__init__()


class ImageTransform:
    """The single-image ``preprocess`` returned by ``load``: PIL image or HxWx3 array -> [3, S, S]."""

    def __init__(self, cfg: PreprocessCfg | dict | None = None):
        self.clip = ClipTransform(cfg)
        self.cfg = self.clip.cfg

    def __call__(self, image) -> torch.Tensor:
        return self.clip([image])[0]


def get_preprocess(image_res: int = 224, **cfg) -> ImageTransform:
    """Single-image transform (published API); extra keys are PreprocessCfg fields."""
    return ImageTransform(PreprocessCfg(image_size=image_res, **cfg))


def _read_image(path: Path):
    """A file -> RGB PIL image; a clear error naming the file when it is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err


class VideoPreprocessor:
    """Load, sample and preprocess a clip into ``[1, T, 3, S, S]`` (the published SurgCLIP API).

    Accepts an anchor frame path (its neighbours are read from the same folder, ordered by frame
    number), a list of PIL images or HxWx3 arrays, or a ``[T, H, W, 3]`` uint8 array.

    Output equals the published package's tensor for tensor: each frame is resized by PIL
    (antialiased bicubic, as the published ``transforms.Resize`` on a PIL image does) and normalised
    with its operations in its order. This differs from ``ClipTransform`` (training and the video
    evaluators, torchvision's uint8 resize) by one or two grey levels on a few pixels (fixed-point
    rounding).

    Frame folders are fast on repeated use: the folder listing is kept until the folder changes
    (its mtime), and the last ``cache_frames`` resized frames are kept (keyed by path, mtime and
    size), so sliding the anchor through a video decodes each frame once instead of ``num_frames``
    times.

    Args:
        num_frames: frames in the output clip.
        image_res: output size S (ignored if ``preprocess`` is given).
        sample_rate: stride between frames read from a folder.
        mode: ``"centered"`` (window centred on the anchor, offline) or ``"online"`` (anchor last).
        sample_type: ``"uniform"``, ``"first"`` or ``"middle"``, used when more frames are given
            than needed; fewer are padded by repeating the last frame.
        preprocess: a ``PreprocessCfg``/dict (e.g. ``model.preprocess_cfg``) overriding size and
            normalisation.
        cache_frames: preprocessed frames kept between calls (0 disables the cache); default
            ``2 * num_frames`` (600 KB each at 224 px).
    """

    def __init__(self, num_frames: int = 16, image_res: int = 224, sample_rate: int = 1, mode: str = "centered",
                 sample_type: str = "uniform", preprocess: PreprocessCfg | dict | None = None,
                 cache_frames: int | None = None):
        if mode not in ("centered", "online"):
            raise ValueError(f"unknown mode {mode!r}; expected 'centered' or 'online'")
        if sample_type not in ("uniform", "first", "middle"):
            raise ValueError(f"unknown sample_type {sample_type!r}; expected uniform, first or middle")
        if num_frames < 1 or sample_rate < 1:
            raise ValueError(f"num_frames and sample_rate must be >= 1, got {num_frames}, {sample_rate}")
        self.num_frames, self.sample_rate, self.mode, self.sample_type = num_frames, sample_rate, mode, sample_type
        cfg = preprocess if preprocess is not None else PreprocessCfg(image_size=image_res)
        self.transform = ClipTransform(cfg, normalize=False)
        self.cfg = self.transform.cfg
        self.cache_frames = 2 * num_frames if cache_frames is None else int(cache_frames)
        self._frames: OrderedDict = OrderedDict()  # (path, mtime_ns, size) -> float32 [3, S, S]
        self._listings: dict = {}  # folder -> (mtime_ns, files)

    def __call__(self, video, add_batch_dim: bool = True) -> torch.Tensor:
        if isinstance(video, (str, Path)):
            frames = self._folder_window(Path(video))
        else:
            frames = [self._normalize(self._resize(f)) for f in self._sample(self._as_list(video))]
        clip = torch.from_numpy(np.stack(frames))
        return clip.unsqueeze(0) if add_batch_dim else clip

    def _normalize(self, frame: torch.Tensor) -> np.ndarray:
        """uint8 [3, S, S] -> float32 through a per-channel table of ``normalize_frames`` values.

        A uint8 input has 256 values per channel, so a lookup gives the same bits as the torch ops;
        numpy does it in one single-threaded pass (torch's small multi-threaded ops stalled on a
        busy machine).
        """
        if getattr(self, "_lut", None) is None:
            levels = torch.arange(256, dtype=torch.uint8).view(1, 256, 1).expand(3, 256, 1).contiguous()
            self._lut = normalize_frames(levels, self.cfg)[:, :, 0].numpy()  # [3, 256]
        frame = frame.numpy()
        out = np.empty(frame.shape, np.float32)
        for c in range(frame.shape[0]):
            np.take(self._lut[c], frame[c], out=out[c])
        return out

    def window(self, anchor_idx: int, count: int) -> tuple[int, int]:
        """[start, end) of the window of frame positions around ``anchor_idx`` among ``count``.

        The positions are ``sampling.window_indices`` (stride 1: ``sample_rate`` is applied to the
        file list before); ``_sample`` pads a window shorter than ``num_frames`` with its last frame.
        """
        from .sampling import window_indices

        pos = window_indices(anchor_idx, self.num_frames, 1, self.mode, count)
        return int(pos[0]), int(pos[-1]) + 1

    def _resize(self, frame) -> torch.Tensor:
        """One PIL image or HxWx3 array -> uint8 [3, S, S], exactly as the published package."""
        from PIL import Image

        if isinstance(frame, torch.Tensor):
            frame = frame.numpy()
        img = frame.convert("RGB") if hasattr(frame, "convert") else Image.fromarray(np.asarray(frame)).convert("RGB")
        if self.cfg.resize == "squash" and self.cfg.interpolation in ("bicubic", "bilinear", "nearest"):
            size = self.cfg.image_size
            img = img.resize((size, size), getattr(Image.Resampling, self.cfg.interpolation.upper()))
            # contiguous once here, so stacking the cached frames on every call is a plain copy
            return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()
        return self.transform(np.asarray(img)[None])[0]  # other resize modes have no published counterpart

    def _list(self, folder: Path) -> list[Path]:
        """The folder's frames every ``sample_rate``, listed again only when the folder changes."""
        mtime = folder.stat().st_mtime_ns if folder.is_dir() else None
        cached = self._listings.get(folder)
        if cached is None or cached[0] != mtime:
            cached = self._listings[folder] = (mtime, list_frame_files(folder)[:: self.sample_rate])
        return cached[1]

    def _frame(self, path: Path) -> np.ndarray:
        """Resized, normalised float32 frame [3, S, S] of a file, from the cache when the file is
        unchanged (a sliding window then costs one decode, one resize and one stack per call)."""
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._normalize(self._resize(_read_image(path)))
            if self.cache_frames > 0:
                self._frames[key] = frame
                while len(self._frames) > self.cache_frames:
                    self._frames.popitem(last=False)
        else:
            self._frames.move_to_end(key)
        return frame

    def _folder_window(self, anchor: Path) -> list[torch.Tensor]:
        files = self._list(anchor.parent)
        names = [f.name for f in files]
        if anchor.name not in names:
            hint = "" if frame_number(anchor) is not None else " (its name has no frame number)"
            raise ValueError(f"anchor frame {anchor.name} not found among the frames of {anchor.parent} "
                             f"with sample_rate={self.sample_rate}{hint}")
        start, end = self.window(names.index(anchor.name), len(files))
        # sample positions first, so only the frames that end up in the clip are read
        return [self._frame(f) for f in self._sample(files[start:end])]

    @staticmethod
    def _as_list(video) -> list:
        if isinstance(video, (list, tuple)):
            if not video:
                raise ValueError("empty frame list")
            return list(video)
        if isinstance(video, (np.ndarray, torch.Tensor)):
            if video.ndim != 4:
                raise ValueError(f"video array must be [T, H, W, C], got shape {tuple(video.shape)}")
            return list(video)
        raise TypeError(f"unsupported video input {type(video).__name__}; expected a frame path, a list of "
                        f"images or a [T, H, W, 3] array")

    def _sample(self, frames: list) -> list:
        count, n = len(frames), self.num_frames
        if count <= n:
            return frames + [frames[-1]] * (n - count)
        if self.sample_type == "uniform":
            idx = np.linspace(0, count - 1, n, dtype=int)
        elif self.sample_type == "first":
            idx = np.arange(n)
        else:
            start = (count - n) // 2
            idx = np.arange(start, start + n)
        return [frames[i] for i in idx]
