"""``surgclip serve --index DIR [--host 127.0.0.1] [--port 8000] [--model M]`` (registered by ``surgclip.cli``)."""
from __future__ import annotations

import importlib.util
import ipaddress
import sys

from .engine import MAX_K, MAX_QUERY_CHARS


def register(subparsers) -> None:
    """Add ``serve`` to the ``surgclip`` parser."""
    p = subparsers.add_parser("serve", help="search an index in the browser (FastAPI + uvicorn, localhost only by default)")
    p.add_argument("--index", required=True, help="index directory written by `surgclip index`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 exposes the library)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default=None, help="model name or directory (default: the one recorded in the index)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", help="fp32 (default) or bf16: run the video tower under bf16 autocast (CPU or GPU; fp16 on GPU)")
    p.add_argument("--max-k", type=int, default=MAX_K, help="largest k a query may ask for")
    p.add_argument("--max-query-chars", type=int, default=MAX_QUERY_CHARS)
    p.set_defaults(func=cmd_serve)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str] | None:
    """The Host headers to answer when bound to ``host``: bound to loopback, only this machine's own
    names (so a page on another site cannot reach the library by DNS rebinding); else any."""
    if not is_loopback(host) or ":" in host:  # (Starlette's host check does not parse IPv6 literals)
        return None
    return sorted({"127.0.0.1", "localhost", host})


def build(index: str, model: str | None = None, device: str = "cpu", precision: str = "fp32", host: str | None = None,
          **bounds):
    """The app for ``index``: the search app, or the error app (with the reason) when the index is unusable."""
    from .app import create_app
    from .engine import ServeError, load_engine

    hosts = allowed_hosts(host) if host else None
    try:
        engine = load_engine(index, model=model, device=device, precision=precision, **bounds)
    except ServeError as err:
        print(f"surgclip serve: {err}\n  serving a page that says so; fix the index and restart", file=sys.stderr)
        return create_app(None, error=str(err), allowed_hosts=hosts), None
    return create_app(engine, allowed_hosts=hosts), engine


WEB_STACK = ("fastapi", "starlette", "uvicorn")


def cmd_serve(args) -> int:
    missing = [m for m in WEB_STACK if importlib.util.find_spec(m) is None]
    if missing:
        print(f"surgclip serve: error: the web page needs {', '.join(missing)}: pip install 'surgclip[serve]'",
              file=sys.stderr)
        return 1
    import uvicorn

    if not 1 <= args.max_k <= 10_000 or args.max_query_chars < 1:
        raise ValueError(f"--max-k must be in [1, 10000] and --max-query-chars positive, got {args.max_k}, "
                         f"{args.max_query_chars}")
    if not is_loopback(args.host):
        print(f"surgclip serve: WARNING: binding {args.host}: anyone who can reach this address can search the "
              f"library and play its videos", file=sys.stderr)
    app, engine = build(args.index, args.model, args.device, precision=args.precision, host=args.host,
                        max_k=args.max_k, max_query_chars=args.max_query_chars)
    if engine is not None:
        d = engine.describe()
        print(f"surgclip serve: model {d['model']} · index {d['index']} · {d['num_clips']} clips in "
              f"{d['num_videos']} videos")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"surgclip serve: open http://{host}:{args.port}/", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
