"""Caption shards: the on-disk format ``surgclip data pack`` writes, where it lives, and the training
dataset that reads it.

Format (``FORMAT``): a folder or object-store prefix (any fsspec URL: ``/data/packed``,
``s3://bucket/prefix``) holding

- ``shard-000000.tar`` ...: WebDataset tar shards (plain POSIX tar, ustar headers). Caption row ``key``
  (``c`` + its caption_id, 9 digits) is the members ``{key}.json`` (caption, level, video_id,
  start_s, end_s, caption_id, fps, num_frames, source_fps, source_frames) and ``{key}.0000.jpg``,
  ``{key}.0001.jpg`` ...: its frames over ``[start_s, end_s)`` in time order, resized and
  JPEG-encoded. ``webdataset.WebDataset(url)`` (what open_clip reads) groups them by key.
- ``shard-000000.json`` ...: each shard's index, written after its tar is complete: the shard's
  byte size and SHA-256, the hash of the rows it was planned to hold (``plan``), and per row its
  metadata and where its frames lie in the tar (``offset`` of the first frame's data and each
  frame's ``sizes``; members follow each other, each a 512-byte header and data padded to 512), so a
  reader fetches any row's chosen frames with ranged reads instead of scanning the tar; ``skipped``:
  the rows whose clip could not be read, with their reason (``utils.SKIP_REASONS``).
- ``manifest.json``: the pack's settings and selection, the ``content_hash`` of what was asked (the
  selected rows and the settings), the planned shards, and once complete the counts, the skipped
  rows by reason and ``shards_sha256`` (a hash of the shards' bytes).

Stored frames are a frame source of their own: a row's ``num_frames`` frames span ``[0, end_s -
start_s)`` at ``fps = num_frames / (end_s - start_s)``, so training picks its T frames with
``sampling.sample_indices`` exactly as it does from a video or a frame folder.

Object storage: credentials and the endpoint come from the environment as the AWS SDKs read them
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ...); they are never put in a
message or a log.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from ..sampling import sample_indices
from .dataset import BadItemError, ClipDataset
from .db import ClipTable
from .readers import VideoReadError, decode_image

log = logging.getLogger(__name__)

FORMAT = "surgclip-shards/1"
MANIFEST = "manifest.json"
BLOCK = 512  # tar block: every member is a header block and its data padded to a multiple of it


class ShardError(ValueError):
    """Shards that cannot be written or read as asked: the message names the folder/URL and file."""


class ShardReadError(Exception):
    """Why a packed row could not be read: ``reason`` (``utils.SKIP_REASONS``) and ``shard`` (its file)."""

    def __init__(self, reason: str, shard: str):
        super().__init__(f"{reason}: {shard}")
        self.reason, self.shard = reason, shard


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.tar"


def index_name(index: int) -> str:
    return f"shard-{index:06d}.json"


def row_key(caption_id: int) -> str:
    """The WebDataset key of a caption row (no dot: WebDataset splits keys at the first one)."""
    return f"c{int(caption_id):09d}"


def sha256_json(obj) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- storage ---------------------------------------------------------------------------------------
class Store:
    """A folder or object-store prefix: ``Store("s3://bucket/prefix")``, ``Store("/data/packed")``.

    Paths are relative names (``manifest.json``); every error names the URL and the file, never a
    credential. Picklable: a DataLoader worker reopens the filesystem in its own process.
    """

    def __init__(self, url: str):
        self.url = str(url).rstrip("/") or "/"
        self.local = "://" not in self.url or self.url.startswith("file://")
        self._fs, self._pid, self._fds = None, None, {}

    def __getstate__(self):
        return {"url": self.url, "local": self.local}

    def __setstate__(self, state):
        self.__init__(state["url"])

    @property
    def fs(self):
        """The fsspec filesystem (remote stores only), opened once per process."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.url)
            except (ImportError, ValueError) as err:  # e.g. s3:// without s3fs installed
                raise ShardError(f"{self.url}: cannot open this storage URL: {err}") from None
            self._pid = os.getpid()
        return self._fs

    def path(self, name: str) -> str:
        if self.local:
            return os.path.join(self.url.removeprefix("file://"), name)
        self.fs
        return f"{self._root.rstrip('/')}/{name}"

    def where(self, name: str) -> str:
        """``url/name`` for messages."""
        return f"{self.url}/{name}"

    def _remote(self, what: str, name: str, fn, *args):
        try:
            return fn(*args)
        except FileNotFoundError:
            raise
        except Exception as err:  # botocore/aiohttp errors: a message naming the URL, not the secrets
            hint = (" - the store refused the credentials: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and "
                    "AWS_ENDPOINT_URL" if isinstance(err, PermissionError) else "")
            raise ShardError(f"{self.where(name)}: {what} failed ({type(err).__name__}: {str(err)[:300]}){hint}") from None

    def exists(self, name: str) -> bool:
        if self.local:
            return os.path.exists(self.path(name))
        return self._remote("checking", name, self.fs.exists, self.path(name))

    def read_bytes(self, name: str) -> bytes:
        """The whole file; FileNotFoundError when absent."""
        if self.local:
            with open(self.path(name), "rb") as f:
                return f.read()
        return self._remote("reading", name, self.fs.cat_file, self.path(name))

    def read_json(self, name: str):
        data = self.read_bytes(name)
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as err:
            raise ShardError(f"{self.where(name)}: not valid JSON ({err})") from None

    def sizes(self) -> dict[str, int]:
        """name -> byte size of the files directly under the folder/prefix (none: empty)."""
        if self.local:
            root = self.path("")
            if not os.path.isdir(root):
                return {}
            return {e.name: e.stat().st_size for e in os.scandir(root) if e.is_file()}
        root = self.path("").rstrip("/")
        try:
            entries = self._remote("listing", "", self.fs.ls, root, True)
        except FileNotFoundError:
            return {}
        return {e["name"].rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in entries if e.get("type") == "file"}

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file so that readers see the old one or the new one, never a part."""
        if self.local:
            from ..utils import atomic_path

            with atomic_path(self.path(name)) as tmp:
                tmp.write_bytes(data)
            return
        self._remote("writing", name, self.fs.pipe_file, self.path(name), data)

    def write_json(self, name: str, obj) -> None:
        self.write_bytes(name, (json.dumps(obj, indent=1) + "\n").encode())

    def put_file(self, local_path: str, name: str) -> None:
        """Move a finished local file to ``name`` (a rename on the same disk; an upload to a bucket,
        where an object appears whole)."""
        if self.local:
            from ..utils import _fsync

            os.replace(local_path, self.path(name))
            _fsync(os.path.dirname(self.path(name)) or ".")
            return
        self._remote("uploading", name, self.fs.put_file, local_path, self.path(name))
        os.unlink(local_path)

    def read_ranges(self, name: str, starts: list[int], ends: list[int]) -> list[bytes]:
        """Byte ranges ``[start, end)`` of one file. A range past the end comes back short (the
        caller names a truncated file); FileNotFoundError when the file is absent. Remote stores fetch
        the span from the first start to the last end in one request (a row's frames lie together in
        its shard) rather than a request per range."""
        if self.local:
            if self._pid != os.getpid():
                self._fds, self._pid = {}, os.getpid()  # never use a parent's descriptors (shared offsets)
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = os.open(self.path(name), os.O_RDONLY)
            return [os.pread(fd, e - s, s) for s, e in zip(starts, ends)]
        path, lo, hi = self.path(name), min(starts), max(ends)
        (span,) = self._remote("reading", name, lambda: self.fs.cat_ranges([path], [lo], [hi], on_error="raise"))
        return [span[s - lo:e - lo] for s, e in zip(starts, ends)]


# -- the index of a packed folder -----------------------------------------------------------------
@dataclass
class ShardIndex:
    """Every packed row of a shard folder: its metadata as a ClipTable and where its frames lie.

    table: the rows (``video_fps`` holds the stored frames' rate); shard: int32 [N] shard number of
    each row; first: int64 [N] index of its first frame in ``offsets``/``sizes``; count: int32 [N] its
    stored frames; offsets, sizes: int64 [F] byte offset and size of every stored frame's data in its
    shard. manifest: the manifest dict.
    """

    store: Store
    manifest: dict
    table: ClipTable
    shard: np.ndarray
    first: np.ndarray
    count: np.ndarray
    offsets: np.ndarray
    sizes: np.ndarray

    def subset(self, keep: np.ndarray) -> "ShardIndex":
        """Rows where ``keep`` (bool [N]) is true, or the rows ``keep`` (int [M]) lists in that order;
        the frame arrays are shared."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, dtype=np.int64)
        return ShardIndex(self.store, self.manifest, self.table.subset(idx), self.shard[idx], self.first[idx],
                          self.count[idx], self.offsets, self.sizes)


def frame_offsets(offset: int, sizes: list[int]) -> np.ndarray:
    """Data offsets of consecutive tar members whose first data starts at ``offset``."""
    sizes = np.asarray(sizes, dtype=np.int64)
    padded = -(-sizes // BLOCK) * BLOCK + BLOCK  # data padded to a block, then the next header
    return offset + np.concatenate([[0], np.cumsum(padded[:-1])]).astype(np.int64)


def load_index(url: str) -> ShardIndex:
    """Read a packed folder's manifest and shard indexes, checking that they agree.

    Raises:
        ShardError: no manifest (or not a complete pack), a shard index or tar missing, or one whose
            size, SHA-256 or row count differs from the manifest, each naming the manifest and the shard;
            storage errors (missing bucket, refused credentials) naming the URL.
    """
    store = Store(url)
    try:
        manifest = store.read_json(MANIFEST)
    except FileNotFoundError as err:
        raise ShardError(f"{store.where(MANIFEST)} not found ({err}): {url} holds no packed shards "
                         f"(make them with `surgclip data pack --out {url}`)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardError(f"{store.where(MANIFEST)}: not a {FORMAT} manifest (format {manifest.get('format')!r})"
                         if isinstance(manifest, dict) else f"{store.where(MANIFEST)}: not a JSON object")
    if not manifest.get("complete"):
        raise ShardError(f"{store.where(MANIFEST)}: the pack is not complete ({len(manifest.get('shards', []))} "
                         f"shards planned); run the same `surgclip data pack` again to finish it")
    on_disk = store.sizes()
    cols = {k: [] for k in ("caption_id", "video_name", "level", "start_s", "end_s", "caption", "video_fps")}
    shard, first, count, offsets, sizes = [], [], [], [], []
    n_frames = 0
    for k, entry in enumerate(manifest["shards"]):
        tar, idx_name = entry["name"], index_name(k)
        if tar not in on_disk:
            raise ShardError(f"{store.where(MANIFEST)} lists {tar}, which is missing from {url}")
        if on_disk[tar] != entry["size"]:
            raise ShardError(f"{store.where(MANIFEST)} says {tar} has {entry['size']} bytes; "
                             f"{store.where(tar)} has {on_disk[tar]}")
        try:
            index = store.read_json(idx_name)
        except FileNotFoundError:
            raise ShardError(f"{store.where(MANIFEST)} lists {tar}, whose index {store.where(idx_name)} "
                             f"is missing") from None
        for key in ("sha256", "size", "plan"):
            if index.get(key) != entry.get(key):
                raise ShardError(f"{store.where(MANIFEST)} and {store.where(idx_name)} disagree on {tar}'s "
                                 f"{key}: {entry.get(key)!r} vs {index.get(key)!r}")
        if len(index["rows"]) != entry["rows"]:
            raise ShardError(f"{store.where(MANIFEST)} says {tar} holds {entry['rows']} rows; "
                             f"{store.where(idx_name)} lists {len(index['rows'])}")
        for row in index["rows"]:
            cols["caption_id"].append(row["caption_id"]), cols["video_name"].append(row["video_id"])
            cols["level"].append(row["level"]), cols["start_s"].append(row["start_s"])
            cols["end_s"].append(row["end_s"]), cols["caption"].append(row["caption"])
            cols["video_fps"].append(row["fps"])
            shard.append(k), first.append(n_frames), count.append(len(row["sizes"]))
            offsets.append(frame_offsets(row["offset"], row["sizes"])), sizes.extend(row["sizes"])
            n_frames += len(row["sizes"])
    n = len(shard)
    table = ClipTable(np.asarray(cols["caption_id"], np.int64), cols["video_name"], np.asarray(cols["level"], np.int64),
                      np.asarray(cols["start_s"], np.float64), np.asarray(cols["end_s"], np.float64), cols["caption"],
                      np.asarray(cols["video_fps"], np.float64), [""] * n)
    return ShardIndex(store, manifest, table, np.asarray(shard, np.int32), np.asarray(first, np.int64),
                      np.asarray(count, np.int32),
                      np.concatenate(offsets) if offsets else np.zeros(0, np.int64), np.asarray(sizes, np.int64))


# -- training from shards --------------------------------------------------------------------------
class ShardDataset(ClipDataset):
    """Clips of packed caption rows: item ``i`` picks its T frames from row ``i``'s stored frames with
    ``sampling.sample_indices`` (mode, and (seed, epoch, i) for the random draw, as ``ClipDataset``),
    fetches only those frames' bytes (one ranged read each) and decodes them; then the same
    transform, item dict and skip counting as ``ClipDataset``.

    A frame that cannot be fetched or decoded (a shard that is missing, truncated or corrupt) makes
    the item a ``SKIPPED`` marker counted by reason (``missing_file`` / ``undecodable_media``) and
    logged once per shard and process, whatever ``skip_errors`` says: a damaged shard must neither
    stop nor desynchronise the ranks (``PaddedCollate`` keeps every batch full).

    Args:
        index: ``load_index(url)`` (or a subset of it).
        num_frames, mode, transform, seed: as ``ClipDataset``.
    """

    def __init__(self, index: ShardIndex, num_frames: int = 8, mode: str = "uniform", transform=None, seed: int = 0):
        super().__init__(index.table, video_root=index.store.url, num_frames=num_frames, mode=mode,
                         transform=transform, skip_errors=True, seed=seed)
        self.index = index
        self._warned: set = set()

    def source_path(self, name: str):
        return self.index.store.url

    def load_frames(self, i: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices into the stored frames int64 [T], uint8 frames [T, H, W, 3]); raises BadItemError."""
        ix, t = self.index, self.table
        n = int(ix.count[i])
        dur = float(t.end_s[i] - t.start_s[i])
        idx = sample_indices(0.0, dur, n / dur, self.num_frames, self.mode, rng, num_frames_in_video=n)
        wanted = np.unique(idx)
        first = int(ix.first[i])
        starts = ix.offsets[first + wanted]
        ends = starts + ix.sizes[first + wanted]
        name = shard_name(int(ix.shard[i]))
        try:
            blobs = ix.store.read_ranges(name, starts.tolist(), ends.tolist())
            frames = {}
            for k, s, e, data in zip(wanted.tolist(), starts.tolist(), ends.tolist(), blobs):
                where = f"{ix.store.where(name)} (caption {int(t.caption_id[i])}, frame {k}, bytes {s}-{e})"
                if len(data) != e - s:
                    raise VideoReadError(f"{where}: truncated shard ({len(data)} of {e - s} bytes)")
                frames[k] = decode_image(data, where)
        except FileNotFoundError:
            raise BadItemError(f"caption {int(t.caption_id[i])} (video {t.video_name[i]!r}): shard "
                               f"{ix.store.where(name)} is missing") from ShardReadError("missing_file", name)
        except (VideoReadError, ShardError) as err:
            raise BadItemError(f"caption {int(t.caption_id[i])} (video {t.video_name[i]!r}): {err}") \
                from ShardReadError("undecodable_media", name)
        shapes = {f.shape for f in frames.values()}
        if len(shapes) > 1:
            raise BadItemError(f"caption {int(t.caption_id[i])} in {ix.store.where(name)}: frames differ in size "
                               f"{sorted(shapes)}")
        return idx, np.stack([frames[k] for k in idx.tolist()])

    def skip_reason(self, name: str, err: BadItemError) -> str:
        """``missing_file`` (the shard is absent) or ``undecodable_media`` (truncated or corrupt); the
        first skip of each shard and reason in a process is logged with the item's error."""
        cause = err.__cause__
        reason, shard = (cause.reason, cause.shard) if isinstance(cause, ShardReadError) else ("undecodable_media", "")
        if (shard, reason) not in self._warned:
            self._warned.add((shard, reason))
            log.warning("shard data skipped (%s): %s", reason, err)
        return reason


def training_rows(index: ShardIndex, levels, videos, text_field: str = "caption", clean: bool = True,
                  min_duration: float = 0.0, max_duration: float = 500.0) -> ShardIndex:
    """The packed rows training selects: the given levels and videos (a split), within the duration
    bounds, in caption_id order (as ``CaptionDB.select`` gives them: the same seed then deals the
    same captions in the same order as from the videos or frame folders).

    Raises:
        ShardError: the pack's selection cannot give what training asks for (a level it did not
            pack, another text field or cleaning, narrower duration bounds), naming both.
    """
    sel, where = index.manifest.get("selection", {}), index.store.where(MANIFEST)
    missing = sorted(set(int(lv) for lv in levels) - set(sel.get("levels", [])))
    if missing:
        raise ShardError(f"training asks for level(s) {missing}; {where} packed levels {sel.get('levels')}")
    for key, want in (("text_field", text_field), ("clean", bool(clean))):
        if sel.get(key) != want:
            raise ShardError(f"training reads {key}={want!r}; {where} was packed with {key}={sel.get(key)!r}")
    if sel.get("min_duration", 0.0) > min_duration or sel.get("max_duration", 500.0) < max_duration:
        raise ShardError(f"training keeps clips of {min_duration}-{max_duration} s; {where} packed "
                         f"{sel.get('min_duration')}-{sel.get('max_duration')} s")
    t = index.table
    dur = t.end_s - t.start_s
    keep = (np.isin(t.level, list(levels)) & np.isin(np.asarray(t.video_name, dtype=object), list(videos))
            & (dur > min_duration) & (dur <= max_duration))
    rows = np.flatnonzero(keep)
    return index.subset(rows[np.argsort(t.caption_id[rows], kind="stable")])
