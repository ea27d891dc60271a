"""The FastAPI app of ``surgclip serve``: the search page, its JSON API and the media it plays.

Routes::

    GET /                        the page (query in the URL: /?q=...&k=...&video=... or /?similar=ID)
    GET /api/search?q=&k=&video= text -> top-k clips            (JSON)
    GET /api/similar?id=&k=&video= stored clip -> top-k clips   (JSON)
    GET /api/videos              model, index, clip count, videos (JSON)
    GET /thumb/{clip_id}         JPEG strip of frames from the clip (cached)
    GET /media/{video}           the registered video file (HTTP range requests: 206)
    GET /frames/{video}/{i}      frame i of a registered frame folder

Bad input answers 4xx with ``{"error": message}``; with no usable index every route says why (503).
"""
from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .engine import DEFAULT_K, QueryError, SearchEngine
from .media import MediaLibrary

PACKAGE = resources.files(__package__)


def _page(name: str) -> str:
    return (PACKAGE / "templates" / name).read_text(encoding="utf-8")


def error_page(message: str) -> str:
    """The HTML shown instead of the search page when no index can answer."""
    return _page("error.html").replace("__MESSAGE__", html.escape(message))


def create_app(engine: SearchEngine | None, error: str | None = None, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The web app over a loaded ``SearchEngine``, or, when ``engine`` is None, one that answers
    every request with ``error`` (index missing, corrupt or built by another model).

    Args:
        engine: the loaded engine (model + index), or None.
        error: why there is no engine (shown on the page and in API errors).
        allowed_hosts: ``Host`` headers answered (others get 400), e.g. the loopback names when
            bound to 127.0.0.1: a web page elsewhere cannot reach the library through DNS rebinding.
            None answers any.
    Returns:
        A FastAPI app (serve it with uvicorn; test it with ``fastapi.testclient.TestClient``).
    """
    app = FastAPI(title="surgclip serve", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.mount("/static", StaticFiles(directory=str(PACKAGE / "static")), name="static")
    media = MediaLibrary(engine.videos) if engine is not None else None

    @app.exception_handler(QueryError)
    async def _query_error(request: Request, err: QueryError):
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException):
        message = "not found" if err.status_code == 404 else str(err.detail)
        return JSONResponse({"error": f"{message}: {request.url.path}"}, status_code=err.status_code)

    def ready() -> SearchEngine:
        if engine is None:
            raise QueryError(f"no usable index: {error}", status=503)
        return engine

    @app.get("/", response_class=HTMLResponse)
    def page():
        if engine is None:
            return HTMLResponse(error_page(error or "no index loaded"), status_code=503)
        return _page("index.html").replace("__MAX_K__", str(engine.max_k)).replace(
            "__MAX_QUERY_CHARS__", str(engine.max_query_chars)).replace("__DEFAULT_K__", str(DEFAULT_K))

    @app.get("/api/search")
    def api_search(request: Request):
        p = request.query_params
        return ready().search(p.get("q", ""), p.get("k", DEFAULT_K), p.getlist("video"))

    @app.get("/api/similar")
    def api_similar(request: Request):
        p = request.query_params
        if "id" not in p:
            raise QueryError("missing clip id: /api/similar?id=CLIP_ID&k=K")
        return ready().similar(p["id"], p.get("k", DEFAULT_K), p.getlist("video"))

    @app.get("/api/videos")
    def api_videos():
        eng = ready()
        videos = []
        for vid, info in sorted(eng.videos.items()):
            videos.append({"id": vid, "kind": media.kind(vid), "fps": info.get("fps"), "clips": info.get("clips"),
                           "available": bool(info.get("path")) and Path(info["path"]).exists()})
        return dict(eng.describe(), videos=videos, max_k=eng.max_k, max_query_chars=eng.max_query_chars)

    @app.get("/thumb/{clip_id}")
    def thumb(clip_id: str):
        eng = ready()
        clip = eng.index.clip(eng.check_clip_id(clip_id))
        return Response(media.thumbnail_strip(clip), media_type="image/jpeg",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/media/{video}")
    def video_file(video: str):
        ready()
        path, media_type = media.video_file(video)
        return FileResponse(path, media_type=media_type)  # Starlette answers Range requests with 206

    @app.get("/frames/{video}/{index}")
    def frame(video: str, index: str):
        ready()
        path, media_type = media.frame_file(video, index)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    return app

