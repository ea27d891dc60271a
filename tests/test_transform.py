from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

import surgclip
from surgclip.transform import ClipTransform, PreprocessCfg, VideoPreprocessor
from helpers import write_frames


def _reference(arrays, size=224, mean=0.5, std=0.5):
    """PIL bicubic resize + normalise, frame by frame (the published preprocessing)."""
    out = []
    for a in arrays:
        img = Image.fromarray(a).resize((size, size), Image.BICUBIC)
        out.append((torch.from_numpy(np.asarray(img)).permute(2, 0, 1).float() / 255 - mean) / std)
    return torch.stack(out)


def test_anchor_window_centered_uses_frame_number_order(tmp_path):
    # lexicographic order would put 100 before 20: the window must follow frame numbers
    arrays = write_frames(tmp_path / "v", [0, 20, 40, 60, 80, 100, 120], ext=".png")
    proc = VideoPreprocessor(num_frames=3, image_res=16, mode="centered")
    clip = proc(tmp_path / "v" / "60.png")
    assert clip.shape == (1, 3, 3, 16, 16)
    assert torch.equal(clip[0], _reference([arrays[40], arrays[60], arrays[80]], size=16))


@pytest.mark.parametrize("mode,anchor,expected", [
    ("centered", 0, [0, 1, 2, 3]),      # clamped at the start
    ("centered", 5, [2, 3, 4, 5]),      # clamped at the end
    ("online", 1, [0, 1, 1, 1]),        # anchor last, padded by repeating the last frame
    ("online", 4, [1, 2, 3, 4]),
])
def test_window_clamping_and_padding(tmp_path, mode, anchor, expected):
    arrays = write_frames(tmp_path / "v", range(6), ext=".png")
    clip = VideoPreprocessor(num_frames=4, image_res=16, mode=mode)(tmp_path / "v" / f"{anchor}.png")
    assert torch.equal(clip[0], _reference([arrays[i] for i in expected], size=16))


def test_matches_pil_bicubic_reference():
    rng = np.random.default_rng(0)
    frames = [np.kron(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
              for _ in range(2)]
    clip = VideoPreprocessor(num_frames=2)(frames)[0]
    assert torch.equal(clip, _reference(frames))  # the published path, bit for bit
    # ClipTransform (training, video evaluators) uses torchvision's uint8 resize: a grey level or two off
    fast = ClipTransform(PreprocessCfg())(np.stack(frames))
    diff = (fast - clip).abs() * 255 / 2  # in grey levels
    assert diff.max().item() <= 2 + 1e-4 and diff.mean().item() < 0.05, (diff.max(), diff.mean())


def test_inputs_pil_list_and_array_agree():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    proc = VideoPreprocessor(num_frames=5, image_res=16)
    a = proc(arr)
    b = proc([Image.fromarray(x) for x in arr])
    c = proc(list(arr))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_subsampling_types():
    arr = np.stack([np.full((4, 4, 3), i * 10, np.uint8) for i in range(10)])
    first = VideoPreprocessor(num_frames=3, image_res=4, sample_type="first")(arr)[0, :, 0, 0, 0]
    middle = VideoPreprocessor(num_frames=3, image_res=4, sample_type="middle")(arr)[0, :, 0, 0, 0]
    expected = lambda idx: torch.tensor([(i * 10 / 255 - 0.5) / 0.5 for i in idx])
    torch.testing.assert_close(first, expected([0, 1, 2]))
    torch.testing.assert_close(middle, expected([3, 4, 5]))


def test_bad_inputs(tmp_path):
    write_frames(tmp_path / "v", [1, 2, 3])
    proc = VideoPreprocessor(num_frames=2, image_res=16)
    with pytest.raises(ValueError, match=r"anchor frame 9.jpg not found among the frames of .*v"):
        proc(tmp_path / "v" / "9.jpg")
    (tmp_path / "v" / "4.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*4.jpg"):
        proc(tmp_path / "v" / "4.jpg")
    with pytest.raises(ValueError, match=r"\[T, H, W, C\]"):
        proc(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="empty frame list"):
        proc([])
    with pytest.raises(ValueError, match="unknown mode"):
        VideoPreprocessor(mode="causal")


@pytest.mark.parametrize("jitter,frames,height,width,interpolation", [
    (0.0, 4, 50, 70, "bicubic"), (0.3, 4, 50, 70, "bicubic"),  # crops larger than the output
    (0.0, 4, 20, 26, "bicubic"), (0.0, 4, 20, 26, "bilinear"),  # smaller: the flip comes before the resize
    (0.3, 4, 20, 26, "bicubic"), (0.0, 4, 20, 26, "nearest"),  # nearest: after
    (0.0, 4, 33, 40, "bicubic"), (0.0, 1, 20, 26, "bicubic")])  # both; one frame (v2's strides)
def test_direct_augmentation_equals_the_v2_pipeline(jitter, frames, height, width, interpolation):
    """``_augment`` calls the kernels itself: same pixels, same strides and the same RNG draws as v2."""
    frames = np.random.default_rng(3).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    tr = ClipTransform(PreprocessCfg(image_size=32, interpolation=interpolation), train=True, normalize=False,
                       color_jitter=jitter)
    assert tr._direct
    from torchvision.transforms.v2 import functional as TF

    with mock.patch.object(TF, "horizontal_flip_image", wraps=TF.horizontal_flip_image) as flip:
        for seed in range(12):
            x = torch.from_numpy(frames).permute(0, 3, 1, 2)
            torch.manual_seed(seed)
            ref = tr.augment(x)
            after_ref = torch.rand(1)
            torch.manual_seed(seed)
            out = tr(frames)
            assert torch.equal(out, ref) and out.stride() == ref.stride(), seed
            assert torch.equal(torch.rand(1), after_ref), seed  # no draw skipped or added
    assert 0 < flip.call_count < 12  # both branches ran (v2 reaches its kernels through its own registry)
    tr._direct = False
    torch.manual_seed(7)
    slow = tr(frames)
    tr._direct = True
    torch.manual_seed(7)
    assert torch.equal(tr(frames), slow)


def test_train_augmentation_is_shared_by_all_frames():
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    torch.manual_seed(5)
    out = ClipTransform(PreprocessCfg(image_size=24), train=True)(np.stack([frame] * 4))
    assert out.shape == (4, 3, 24, 24)
    for t in range(1, 4):
        assert torch.equal(out[t], out[0])
    plain = ClipTransform(PreprocessCfg(image_size=24))(frame[None])
    assert not torch.allclose(out[0], plain[0])


def test_load_returns_single_image_preprocess():
    _, preprocess, _ = surgclip.load("tiny", device="cpu")
    img = Image.fromarray(np.zeros((50, 70, 3), np.uint8))
    x = preprocess(img)
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x, torch.full_like(x, -1.0))


def test_uint8_output_then_normalize_equals_float_output():
    from surgclip.transform import normalize_frames

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (4, 40, 60, 3), dtype=np.uint8)
    for train in (False, True):
        torch.manual_seed(9)
        ref = ClipTransform(PreprocessCfg(image_size=24), train=train)(frames)
        torch.manual_seed(9)
        raw = ClipTransform(PreprocessCfg(image_size=24), train=train, normalize=False)(frames)
        assert raw.dtype == torch.uint8 and raw.shape == (4, 3, 24, 24)
        torch.testing.assert_close(normalize_frames(raw, PreprocessCfg(image_size=24)), ref)


def test_folder_cache_reuses_frames_and_notices_changes(tmp_path, monkeypatch):
    import surgclip.transform as T

    arrays = write_frames(tmp_path / "v", range(8), ext=".png")
    reads = []
    real_read = T._read_image
    monkeypatch.setattr(T, "_read_image", lambda path: reads.append(path.name) or real_read(path))
    proc = VideoPreprocessor(num_frames=4, image_res=16, mode="online")
    for anchor in range(3, 8):  # slide the window: each frame is decoded once
        clip = proc(tmp_path / "v" / f"{anchor}.png")
        assert torch.equal(clip[0], _reference([arrays[i] for i in range(anchor - 3, anchor + 1)], size=16))
    assert sorted(reads) == [f"{i}.png" for i in range(8)]
    # a rewritten frame (new mtime/size) is read again, and a new frame joins the listing
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(tmp_path / "v" / "7.png")
    write_frames(tmp_path / "v", [8], ext=".png", seed=3)
    reads.clear()
    clip = proc(tmp_path / "v" / "8.png")
    assert reads == ["7.png", "8.png"]
    assert torch.equal(clip[0, 2], torch.full((3, 16, 16), -1.0))


def test_reusable_buffer_is_written_over_only_when_nothing_holds_it():
    from surgclip.transform import ReusableBuffer, normalize_frames

    cfg = PreprocessCfg(image_size=8)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8, generator=g) for _ in range(2))
    buffers = ReusableBuffer()
    first = normalize_frames(a, cfg, out=buffers.get(a.shape, "cpu"))
    assert torch.equal(first, normalize_frames(a, cfg))  # the same bits as a fresh tensor
    ptr = first.data_ptr()

    def holders():  # each keeps something aliasing the last result alive
        yield lambda t: t
        yield lambda t: t[:, 0]
        yield lambda t: t.detach()
        yield lambda t: t.numpy()
        w = torch.ones(8, requires_grad=True)
        yield lambda t: t @ w  # autograd saves t for the backward

    for hold in holders():
        kept = hold(first)
        before = torch.as_tensor(kept).detach().clone()
        second = normalize_frames(b, cfg, out=buffers.get(b.shape, "cpu"))
        assert second.data_ptr() != ptr and torch.equal(torch.as_tensor(kept).detach(), before)
        del kept, first
        first, ptr = second, second.data_ptr()
    del first, second
    again = buffers.get(b.shape, "cpu")  # nothing holds the last buffer now: handed out again
    assert again.data_ptr() == ptr
    assert buffers.get((1, 3, 3, 8, 8), "cpu").data_ptr() != ptr  # another shape: another buffer


def test_reusable_buffer_made_in_inference_mode_serves_training():
    """A validation (Lightning runs it under inference_mode, the sanity check before any training
    step) makes the first buffer; training must still get a buffer it can write."""
    from surgclip.transform import ReusableBuffer, normalize_frames

    cfg = PreprocessCfg(image_size=8)
    x = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    buffers = ReusableBuffer()
    with torch.inference_mode():
        val = normalize_frames(x, cfg, out=buffers.get(x.shape, "cpu"))
        assert val.is_inference()
    del val
    train = normalize_frames(x, cfg, out=buffers.get(x.shape, "cpu"))
    assert not train.is_inference() and torch.equal(train, normalize_frames(x, cfg))
    ptr = train.data_ptr()
    del train
    with torch.inference_mode():  # a normal buffer serves a later validation in place
        assert buffers.get(x.shape, "cpu").data_ptr() == ptr
