"""Which files ``surgclip serve`` may send, and thumbnail strips of clips.

Only sources registered in the index are served, looked up by video id (never by a path from the
request), and a file is sent only if, after following symlinks, it lies inside the folder the index
registered: the video file's own folder, or the frame folder. So ``../``, absolute paths, encoded
traversal and symlinks out of the library all end in 404.
"""
from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np

from .engine import LRU, QueryError

VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo"}
THUMBS_PER_CLIP = 4
THUMB_HEIGHT = 72


def _inside(path: str, root: str) -> bool:
    """Whether ``path`` is ``root`` or below it (both already resolved)."""
    return os.path.commonpath([path, root]) == root


class MediaLibrary:
    """The registered sources of an index, by video id.

    Args:
        videos: ``ClipIndex.video_info()`` ({video: {"path", "fps", ...}}).
        cache_size: thumbnail strips kept in memory (JPEG bytes).
    """

    def __init__(self, videos: dict[str, dict], cache_size: int = 4096):
        self.videos = videos
        self._thumbs = LRU(cache_size)
        self._frames = LRU(64)  # frame-folder listings
        self._decode = threading.Lock()  # decoders are not thread-safe and 2 cores are enough for one at a time

    def info(self, video: str) -> dict:
        """The index record of ``video`` (``QueryError`` 404 if the index does not hold it)."""
        if video not in self.videos:
            raise QueryError(f"unknown video {video[:80]!r}", status=404)
        return self.videos[video]

    def kind(self, video: str) -> str:
        """``frames`` for a frame folder, ``video`` for a file (by the registered path; no request input)."""
        return "frames" if Path(self.info(video).get("path", "")).is_dir() else "video"

    def _registered(self, video: str) -> tuple[Path, str]:
        """(registered path, resolved root it must stay in); 404 when the source is gone."""
        path = Path(self.info(video).get("path", ""))
        if not path.exists():
            raise QueryError(f"source of video {video!r} is missing: {path} was deleted or moved since it was "
                             f"indexed", status=404)
        root = path if path.is_dir() else path.parent
        return path, os.path.realpath(root)

    def video_file(self, video: str) -> tuple[str, str]:
        """(resolved file path, media type) of a registered video file, checked to stay in its folder."""
        path, root = self._registered(video)
        real = os.path.realpath(path)
        if path.is_dir() or not os.path.isfile(real) or not _inside(real, root):
            raise QueryError(f"video {video!r} is not a servable file (it links out of its folder or is not a "
                             f"regular file)", status=404)
        return real, VIDEO_TYPES.get(path.suffix.lower(), "application/octet-stream")

    def frame_files(self, video: str) -> list[Path]:
        """The numbered images of a registered frame folder, in frame order."""
        path, _ = self._registered(video)
        if not path.is_dir():
            raise QueryError(f"video {video!r} is a video file, not a frame folder", status=404)
        files = self._frames.get(video)
        if files is None:
            from ..utils import list_frame_files

            try:
                files = list_frame_files(path)
            except (FileNotFoundError, ValueError) as err:
                raise QueryError(f"frame folder of {video!r} is unreadable: {err}", status=404) from None
            self._frames.put(video, files)
        return files

    def frame_file(self, video: str, index) -> tuple[str, str]:
        """(resolved path, media type) of frame ``index`` of a frame folder, checked to stay in the folder."""
        files = self.frame_files(video)
        try:
            i = int(index)
        except ValueError:
            raise QueryError(f"frame index must be an integer, got {str(index)[:20]!r}", status=404) from None
        if not 0 <= i < len(files):
            raise QueryError(f"frame {i} out of range: {video!r} has {len(files)} frames", status=404)
        _, root = self._registered(video)
        real = os.path.realpath(files[i])
        if not os.path.isfile(real) or not _inside(real, root):
            raise QueryError(f"frame {i} of {video!r} links out of its folder", status=404)
        suffix = Path(real).suffix.lower().lstrip(".")
        return real, f"image/{'jpeg' if suffix == 'jpg' else suffix}"

    def thumbnail_strip(self, clip: dict, count: int = THUMBS_PER_CLIP, height: int = THUMB_HEIGHT) -> bytes:
        """A JPEG of ``count`` frames of a clip side by side (cached by clip id): the frames
        ``readers.read_clip`` reads for ``[start, end)``, spread over the span of ``sampling.clip_frame_span``."""
        key = (clip["id"], count, height)
        data = self._thumbs.get(key)
        if data is None:
            data = self._render_strip(clip, count, height)
            self._thumbs.put(key, data)
        return data

    def _render_strip(self, clip: dict, count: int, height: int) -> bytes:
        from PIL import Image

        from ..data.readers import VideoReadError, read_clip

        video = clip["video"]
        fps = self.info(video).get("fps")
        frames_folder = self.kind(video) == "frames"
        path = str(self._registered(video)[0]) if frames_folder else self.video_file(video)[0]

        def inside(indices):  # only images that stay inside the folder are read
            for i in sorted(set(np.asarray(indices).tolist())):
                self.frame_file(video, i)

        try:
            with self._decode:  # the clip's frames as every reader of a clip picks them (readers.read_clip)
                frames = read_clip(path, float(clip["start"]), float(clip["end"]), count, fps=fps,
                                   check=inside if frames_folder else None)[1]
        except (VideoReadError, OSError, ValueError) as err:
            raise QueryError(f"cannot read frames of {video!r}: {err}", status=404) from None
        h, w = frames.shape[1:3]
        width = max(1, round(w * height / h))
        strip = np.concatenate([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR))
                                for f in frames], axis=1)
        buf = io.BytesIO()
        Image.fromarray(strip).save(buf, format="JPEG", quality=80)
        return buf.getvalue()
