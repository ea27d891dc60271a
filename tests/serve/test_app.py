"""The JSON API, media serving and error pages of ``surgclip serve`` (FastAPI TestClient, no browser)."""
import io

import numpy as np
import pytest
import torch

from surgclip.sampling import uniform_indices
from surgclip.serve.engine import MAX_K


def _brute_force(engine, query_vec, k, videos=None, exclude=None):
    """Top-k (id, score) by explicit dot products over every stored clip."""
    emb, clips = engine.index.embeddings(), [engine.index.clip(i) for i in range(len(engine.index))]
    scores = emb @ query_vec
    order = [i for i in np.argsort(-scores, kind="stable")
             if (videos is None or clips[i]["video"] in videos) and i != exclude]
    return [int(i) for i in order[:k]], scores


def _text_vec(tiny_model, text):
    from surgclip.tokenizer import tokenize

    model, _, tokenizer = tiny_model
    with torch.no_grad():
        return model.encode_text(tokenize([text], tokenizer)).numpy()[0]


def test_search_matches_brute_force(client, engine, tiny_model):
    r = client.get("/api/search", params={"q": "  the grasper retracts the gallbladder ", "k": 7})
    assert r.status_code == 200
    body = r.json()
    ids, scores = _brute_force(engine, _text_vec(tiny_model, "the grasper retracts the gallbladder"), 7)
    assert [h["id"] for h in body["hits"]] == ids
    np.testing.assert_allclose([h["score"] for h in body["hits"]], scores[ids], rtol=1e-4, atol=1e-5)
    hit = body["hits"][0]
    assert hit == dict(engine.index.clip(hit["id"]), score=hit["score"], available=True)
    assert body["query"] == "the grasper retracts the gallbladder" and body["k"] == 7
    assert (body["model"], body["num_clips"], body["index"]) == ("tiny", len(engine.index), str(engine.index.path))


def test_video_filter_and_similar_match_brute_force(client, engine, tiny_model):
    r = client.get("/api/search", params=[("q", "hook"), ("k", "5"), ("video", "b"), ("video", "frames1")])
    ids, _ = _brute_force(engine, _text_vec(tiny_model, "hook"), 5, videos={"b", "frames1"})
    assert [h["id"] for h in r.json()["hits"]] == ids
    assert {h["video"] for h in r.json()["hits"]} <= {"b", "frames1"}

    r = client.get("/api/similar", params={"id": 3, "k": 4})
    ids, scores = _brute_force(engine, engine.index.embedding(3), 4, exclude=3)
    assert [h["id"] for h in r.json()["hits"]] == ids
    np.testing.assert_allclose([h["score"] for h in r.json()["hits"]], scores[ids], rtol=1e-5)
    assert r.json()["similar_to"] == engine.index.clip(3)

    r = client.get("/api/similar", params={"id": 3, "k": 3, "video": "b"})
    assert [h["id"] for h in r.json()["hits"]] == _brute_force(engine, engine.index.embedding(3), 3, {"b"})[0]


def test_videos_lists_the_index(client, engine):
    body = client.get("/api/videos").json()
    assert body["num_clips"] == len(engine.index) and body["model"] == "tiny"
    by_id = {v["id"]: v for v in body["videos"]}
    assert set(by_id) == set(engine.index.video_info())
    assert by_id["a"]["kind"] == "video" and by_id["frames1"]["kind"] == "frames"
    assert by_id["a"]["clips"] == engine.index.video_info()["a"]["clips"] and by_id["a"]["fps"] == 5.0


@pytest.mark.parametrize("params, status, message", [
    ({"q": "", "k": 5}, 400, "empty query"),
    ({"q": "   ", "k": 5}, 400, "empty query"),
    ({"k": 5}, 400, "empty query"),
    ({"q": "x" * 301}, 400, "query too long: 301 characters, at most 300"),
    ({"q": "hook", "k": 0}, 400, f"k must be between 1 and {MAX_K}, got 0"),
    ({"q": "hook", "k": MAX_K + 1}, 400, f"got {MAX_K + 1}"),
    ({"q": "hook", "k": "ten"}, 400, "k must be an integer"),
    ({"q": "hook", "video": "nope"}, 400, "unknown video 'nope'"),
])
def test_search_bad_input(client, params, status, message):
    r = client.get("/api/search", params=params)
    assert r.status_code == status and message in r.json()["error"]
    assert client.get("/api/search", params={"q": "hook", "k": 1}).status_code == 200  # still serving


@pytest.mark.parametrize("params, status, message", [
    ({"id": 10 ** 6}, 404, "unknown clip id 1000000"),
    ({"id": -1}, 404, "unknown clip id -1"),
    ({"id": "abc"}, 400, "clip id must be an integer"),
    ({}, 400, "missing clip id"),
    ({"id": 0, "k": -3}, 400, "k must be between"),
])
def test_similar_bad_input(client, params, status, message):
    r = client.get("/api/similar", params=params)
    assert r.status_code == status and message in r.json()["error"]


def test_media_range_requests(client, library):
    data = (library["root"] / "a" / "a.mp4").read_bytes()
    r = client.get("/media/a", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == data[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(data)}" and r.headers["content-type"] == "video/mp4"
    r = client.get("/media/a", headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = client.get("/media/a")
    assert r.status_code == 200 and r.content == data and r.headers["accept-ranges"] == "bytes"
    assert client.get("/media/a", headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416


def test_frames_of_a_frame_folder(client, library):
    from surgclip.utils import list_frame_files

    files = list_frame_files(library["root"] / "frames1")
    r = client.get("/frames/frames1/7")
    assert r.status_code == 200 and r.content == files[7].read_bytes() and r.headers["content-type"] == "image/jpeg"
    for bad in ("30", "-1", "x"):
        assert client.get(f"/frames/frames1/{bad}").status_code == 404
    assert "not a frame folder" in client.get("/frames/a/0").json()["error"]


@pytest.mark.parametrize("url", [
    "/media/../../etc/passwd", "/media/%2e%2e/%2e%2e/etc/passwd", "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/media/..%2F..%2Fetc%2Fpasswd", "/media/%252e%252e%252fetc%252fpasswd", "/media//etc/passwd",
    "/media/%2Fetc%2Fpasswd", "/media/%2e%2e", "/media/a%2F..%2F..%2Foutside%2Freal.mp4",
    "/frames/frames1/..%2F..%2Foutside%2F99.jpg", "/frames/..%2Foutside/0", "/frames/%2Ftmp/0",
    "/static/..%2Fengine.py", "/static/%2e%2e/app.py", "/thumb/..%2F1",
    "/media/evil",          # registered, but a symlink to a file outside the library
    "/frames/leaky/2",      # a frame that is a symlink out of its folder
])
def test_traversal_and_symlinks_out_of_the_library_are_404(client, library, url):
    r = client.get(url)
    assert r.status_code == 404, (url, r.status_code)
    assert "error" in r.json()
    assert (library["outside"] / "real.mp4").read_bytes()[:64] not in r.content
    assert library["secret"].read_bytes()[:64] not in r.content


def test_symlinked_sources_keep_their_neighbours_servable(client):
    assert client.get("/frames/leaky/1").status_code == 200
    assert client.get("/frames/leaky/2").status_code == 404
    assert client.get("/thumb/0").status_code == 200


def test_thumbnail_strip_matches_decoded_frames_and_is_cached(client, engine, library, monkeypatch):
    import av
    from PIL import Image

    clip_id = next(i for i in range(len(engine.index)) if engine.index.clip(i)["start"] == 20.0
                   and engine.index.clip(i)["video"] == "a")
    r = client.get(f"/thumb/{clip_id}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    strip = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(float)
    assert strip.shape == (72, 4 * 72, 3)  # 4 frames of a square video, 72 px high
    with av.open(str(library["root"] / "a" / "a.mp4")) as c:  # reference frames decoded by PyAV
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    wanted = uniform_indices(100, 119, 4)  # clip 20-24 s at 5 fps: frames 100..119
    small = np.stack([np.asarray(Image.fromarray(f).resize((72, 72), Image.BILINEAR)) for f in frames]).astype(float)
    for j, fi in enumerate(wanted):
        err = np.abs(small - strip[None, :, 72 * j:72 * (j + 1)]).mean(axis=(1, 2, 3))
        assert err[fi] < 6, f"tile {j} differs from frame {fi} by {err[fi]:.1f} grey levels"
        assert abs(int(np.argmin(err)) - fi) <= 3, f"tile {j} looks most like frame {np.argmin(err)}, not {fi}"

    from surgclip.serve import media as media_mod

    calls = []
    original = media_mod.MediaLibrary._render_strip
    monkeypatch.setattr(media_mod.MediaLibrary, "_render_strip", lambda self, *a: calls.append(a) or original(self, *a))
    assert client.get(f"/thumb/{clip_id}").content == r.content and calls == []  # served from the cache
    assert client.get(f"/thumb/{clip_id + 1}").status_code == 200 and len(calls) == 1
    assert client.get("/thumb/99999").status_code == 404


def test_deleted_source_video(client, engine, library):
    doomed = library["root"] / "doomed" / "doomed.mp4"
    first = next(i for i in range(len(engine.index)) if engine.index.clip(i)["video"] == "doomed")
    assert client.get("/media/doomed", headers={"Range": "bytes=0-9"}).status_code == 206
    doomed.unlink()
    r = client.get("/media/doomed")
    assert r.status_code == 404 and "deleted or moved since it was indexed" in r.json()["error"]
    assert r.json()["error"].startswith("source of video 'doomed' is missing")
    assert client.get(f"/thumb/{first + 1}").status_code == 404
    hits = client.get("/api/similar", params={"id": first, "k": 100, "video": "doomed"}).json()["hits"]
    assert hits and all(h["available"] is False for h in hits)
    videos = {v["id"]: v["available"] for v in client.get("/api/videos").json()["videos"]}
    assert videos["doomed"] is False and videos["a"] is True
    assert client.get("/api/search", params={"q": "hook"}).status_code == 200  # still serving


def test_page_carries_the_bounds(client):
    r = client.get("/")
    assert r.status_code == 200 and 'id="q"' in r.text
    assert f'max="{MAX_K}"' in r.text and 'maxlength="300"' in r.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/nope").status_code == 404 and client.get("/nope").json()["error"] == "not found: /nope"


def test_missing_index_serves_a_clear_page(tmp_path):
    from fastapi.testclient import TestClient

    from surgclip.serve.cli import build

    app, engine = build(str(tmp_path / "nowhere"))
    assert engine is None
    client = TestClient(app)
    r = client.get("/")
    assert r.status_code == 503 and "No usable index" in r.text and "manifest.json missing" in r.text
    assert str(tmp_path / "nowhere") in r.text
    r = client.get("/api/search", params={"q": "hook"})
    assert r.status_code == 503 and r.json()["error"].startswith("no usable index: no clip index at")
    assert client.get("/media/a").status_code == 503


def test_index_built_by_another_model_serves_a_clear_page(tmp_path):
    from fastapi.testclient import TestClient

    from helpers import small_model
    from surgclip.evaluation.index import ClipIndex, model_fingerprint
    from surgclip.serve.cli import build

    other = small_model("tiny")  # same name, other config: another model
    index = ClipIndex(tmp_path / "idx", fingerprint=model_fingerprint(other))
    index.add_video("v", np.ones((1, other.embed_dim), np.float32), [(0.0, 4.0)], {"path": "/nowhere.mp4", "fps": 5})
    app, engine = build(str(tmp_path / "idx"), model="tiny")
    assert engine is None
    r = TestClient(app).get("/")
    assert r.status_code == 503 and "was built by model" in r.text and "refusing to use it with model" in r.text


def test_error_page_escapes_the_message():
    from surgclip.serve.app import error_page

    assert "<script>" not in error_page("<script>alert(1)</script>")


def test_cli_defaults_to_localhost():
    from surgclip.cli import build_parser
    from surgclip.serve.cli import is_loopback

    args = build_parser("serve").parse_args(["serve", "--index", "x"])
    assert (args.host, args.port, args.model, args.max_k) == ("127.0.0.1", 8000, None, MAX_K)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")


def test_bound_to_loopback_only_this_machine_s_host_names_are_answered(engine):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 sends Host: evil.example."""
    from fastapi.testclient import TestClient

    from surgclip.serve.app import create_app
    from surgclip.serve.cli import allowed_hosts

    assert allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost"] and allowed_hosts("0.0.0.0") is None
    with TestClient(create_app(engine, allowed_hosts=allowed_hosts("127.0.0.1"))) as c:
        assert c.get("/api/videos", headers={"host": "127.0.0.1:8000"}).status_code == 200
        assert c.get("/api/videos", headers={"host": "localhost:8000"}).status_code == 200
        bad = c.get("/api/videos", headers={"host": "evil.example:8000"})
        assert bad.status_code == 400 and "Invalid host header" in bad.text
