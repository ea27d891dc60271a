"""``surgclip serve`` thumbnails read a clip's frames as every other reader of a clip does
(``readers.read_clip`` over ``sampling.clip_frame_span``), and every video suffix has a media type."""
import io
import json

import numpy as np
from PIL import Image

from surgclip.data.readers import read_clip
from surgclip.sampling import clip_frame_span, sample_indices
from surgclip.serve.media import VIDEO_TYPES, MediaLibrary
from surgclip.utils import VIDEO_EXTENSIONS

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def test_the_strip_and_the_sampler_agree_on_a_window_ending_inside_a_frame(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for i, colour in enumerate(COLOURS):  # frame i: one solid colour, at 1 fps
        Image.fromarray(np.full((16, 16, 3), colour, np.uint8)).save(folder / f"{i}.png")
    (folder / "frames.json").write_text(json.dumps({"fps": 1.0}))
    # at 1 fps, [0, 2.5) holds frames 0, 1 and 2: frame 2 is on screen from 2.0 s to 3.0 s
    assert clip_frame_span(0.0, 2.5, 1.0) == (0, 2) == clip_frame_span(0.0, 3.0, 1.0)
    wanted = sample_indices(0.0, 2.5, 1.0, 3, "uniform", num_frames_in_video=len(COLOURS)).tolist()
    assert wanted == [0, 1, 2] and read_clip(folder, 0.0, 2.5, 3)[0].tolist() == wanted
    media = MediaLibrary({"v": {"path": str(folder), "fps": 1.0}})
    jpeg = media.thumbnail_strip({"id": 0, "video": "v", "start": 0.0, "end": 2.5}, count=3, height=16)
    strip = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(float)
    assert strip.shape == (16, 3 * 16, 3)
    tiles = [strip[4:12, 16 * j + 4:16 * j + 12].reshape(-1, 3).mean(0) for j in range(3)]
    shown = [int(np.argmin([np.abs(t - np.array(c)).sum() for c in COLOURS])) for t in tiles]
    assert shown == wanted


def test_every_video_suffix_has_a_media_type():
    assert set(VIDEO_EXTENSIONS) <= set(VIDEO_TYPES)
