"""The ``rt`` command line: serve, sim, token, tail.

Every option of ``rt serve`` can also come from an RT_* environment variable (the flag wins),
and so can every other field of Settings (RT_IDLE_TIMEOUT_S, RT_HISTORY_SIZE, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from rt.feeds.cli import add_sim_parser, run_sim
from rt.logs import configure_logging
from rt.settings import Settings

#: Where ``rt serve`` listens for seed 003's clients unless told otherwise.
DEFAULT_TRADING_PORT = 8081

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _env_bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise SystemExit(f"rt: {name} must be true or false, got {value!r}")


def _optional_port(raw: str) -> int | None:
    """A port number, or None for "off" (or nothing)."""
    return None if raw.strip().lower() in ("", "off", "none") else int(raw)


def settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings fields found in the environment as RT_<FIELD> (RT_ENGINE for engine_url)."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        if field.name == "wall_ms":
            continue
        name = "RT_ENGINE" if field.name == "engine_url" else f"RT_{field.name.upper()}"
        if name not in env:
            continue
        raw = env[name]
        default = field.default
        try:
            if isinstance(default, bool):
                found[field.name] = _env_bool(raw, name)
            elif isinstance(default, int):
                found[field.name] = int(raw)
            elif isinstance(default, float):
                found[field.name] = float(raw)
            elif isinstance(default, tuple):
                found[field.name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            elif field.type == "int | None":
                found[field.name] = _optional_port(raw)
            elif field.name == "demo_seed":
                found[field.name] = int(raw)
            else:
                found[field.name] = raw
        except ValueError:
            raise SystemExit(f"rt: {name} has an invalid value {raw!r}") from None
    return found


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the server")
    p.add_argument("--host", help="address to listen on (RT_HOST, default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="the port for HTTP and WebSocket, 0 = any free (RT_PORT, 8080)"
    )
    p.add_argument(
        "--admin-port",
        type=int,
        help="a second port for operators: /debug, /metrics, admin routes "
        "(RT_ADMIN_PORT, default off)",
    )
    p.add_argument(
        "--admin-routes-on-public-port",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --admin-port, whether the public port still serves the operator routes "
        "(RT_ADMIN_ROUTES_ON_PUBLIC_PORT, default on)",
    )
    p.add_argument(
        "--trading-port",
        metavar="PORT",
        help="a port whose /ws speaks the trading dialect, for seed 003's clients; 0 = any "
        f"free, off = none (RT_TRADING_PORT, default {DEFAULT_TRADING_PORT})",
    )
    p.add_argument(
        "--engine",
        help="engine URL: memory, or redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS) to "
        "share topics with other nodes (RT_ENGINE, else REDIS_URL, default memory)",
    )
    p.add_argument(
        "--demo-feed",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the built-in demo feeds: odds, UOF events, ticks, predictions "
        "(RT_DEMO_FEED, default on)",
    )
    p.add_argument(
        "--dev",
        action="store_true",
        default=None,
        help="development mode: generate missing secrets, token route open (RT_DEV)",
    )
    p.add_argument(
        "--feed",
        action="append",
        metavar="URL",
        help="an upstream odds feed to connect to, ws://... (repeatable; RT_FEED_URLS=a,b)",
    )
    p.add_argument(
        "--feed-grace",
        type=float,
        metavar="SECONDS",
        help="a feed silent this long has its markets suspended (RT_FEED_GRACE_S, default 5)",
    )
    p.add_argument(
        "--require-token",
        action="append",
        metavar="DIALECT",
        help="require ?token= on the WebSockets of a dialect that takes anonymous clients "
        "by default: topics (repeatable; RT_REQUIRE_TOKEN=topics)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="on a failure at start, print the whole traceback instead of one line",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="run N server processes on the same port (SO_REUSEPORT), supervised by this one; "
        "more than 1 needs --engine redis://",
    )
    p.add_argument(
        "--log-json",
        action="store_true",
        default=None,
        help="log one JSON object per line, each with its actor's path (RT_LOG_JSON)",
    )


def build_settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    values = settings_from_env(env)
    if "engine_url" not in values and env.get("REDIS_URL"):
        values["engine_url"] = env["REDIS_URL"]  # seed 001's name for it
    flags = {
        "host": args.host,
        "port": args.port,
        "admin_port": args.admin_port,
        "admin_routes_on_public_port": args.admin_routes_on_public_port,
        "engine_url": args.engine,
        "demo_feed": args.demo_feed,
        "dev": args.dev,
        "feed_urls": tuple(args.feed) if args.feed else None,
        "feed_grace_s": args.feed_grace,
        "require_token": tuple(args.require_token) if args.require_token else None,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.trading_port is not None:
        try:
            values["trading_port"] = _optional_port(args.trading_port)
        except ValueError:
            raise ValueError(
                f"--trading-port: expected a port or off, got {args.trading_port!r}"
            ) from None
    elif "RT_TRADING_PORT" not in env:
        values["trading_port"] = DEFAULT_TRADING_PORT
    settings = Settings(**values)
    if settings.trading_port and settings.trading_port in (settings.port, settings.admin_port):
        raise ValueError(
            f"--trading-port / RT_TRADING_PORT {settings.trading_port} is already the public or "
            "the admin port: choose another, or off"
        )
    from rt.dialects import DIALECTS

    names = [d.name for d in DIALECTS]
    unknown = [name for name in settings.require_token if name not in names]
    if unknown:
        raise ValueError(
            f"--require-token / RT_REQUIRE_TOKEN names no dialect: {', '.join(unknown)} "
            f"(the dialects: {', '.join(names)})"
        )
    in_band = [d.name for d in DIALECTS if d.auth == "none" and d.name in settings.require_token]
    if in_band:
        raise ValueError(
            f"--require-token / RT_REQUIRE_TOKEN: {', '.join(in_band)} authenticates in-band "
            "(its clients send their token in an auth message), not with ?token="
        )
    from rt.dialects.trading import instruments_of, runs_exchange

    runs_exchange(settings)
    instruments_of(settings)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from rt.engine import check_engine_url
    from rt.server import dev_settings, serve_until_signalled

    try:
        settings, generated = dev_settings(build_settings(args, os.environ))
        check_engine_url(settings.engine_url)
    except ValueError as exc:
        print(f"rt: {exc}", file=sys.stderr)
        return 2
    for line in generated:
        print(f"rt dev: generated {line}", flush=True)

    def ready(line: str) -> None:
        print(line, flush=True)

    if args.workers != 1:
        from rt.workers import refusal, serve_workers

        problem = refusal(settings, args.workers)
        if problem is not None:
            print(f"rt: {problem}", file=sys.stderr, flush=True)
            return 2
    busy = None if settings.reuse_port else busy_port(settings)  # a worker shares its port
    if busy is not None:
        print(f"rt: {busy}", file=sys.stderr, flush=True)
        return 1
    if args.workers > 1:
        serve_args = args.argv[args.argv.index("serve") + 1 :]
        return serve_workers(settings, args.workers, serve_args, ready)
    try:
        trio.run(serve_until_signalled, settings, ready)
    except Exception as exc:
        if args.debug:
            raise
        print(f"rt: {startup_failure(exc, settings)}", file=sys.stderr, flush=True)
        return 1
    return 0


def busy_port(settings: Settings) -> str | None:
    """Why a port of ``settings`` cannot be listened on, checked before anything starts (a
    listener that cannot bind would otherwise crash and be restarted under supervision)."""
    import socket

    ports = [("RT_PORT / --port", settings.port)]
    if settings.admin_port:
        ports.append(("RT_ADMIN_PORT / --admin-port", settings.admin_port))
    if settings.trading_port:
        ports.append(("RT_TRADING_PORT / --trading-port", settings.trading_port))
    for name, port in ports:
        if not port:
            continue
        try:
            infos = socket.getaddrinfo(settings.host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"cannot listen on {settings.host} (RT_HOST / --host): {exc.strerror or exc}"
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(address)
                except OSError as exc:
                    return (
                        f"cannot listen on {settings.host}:{port} ({name}): "
                        f"{(exc.strerror or str(exc)).lower()}"
                    )
    return None


def startup_failure(exc: BaseException, settings: Settings) -> str:
    """One line that names why the server stopped: the port, the setting, the cause."""
    import errno

    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(startup_failure(e, settings) for e in exc.exceptions)
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {settings.host}: a port is already in use "
            f"(port {settings.port}, RT_PORT / --port; admin port {settings.admin_port}); "
            "stop what holds it or choose another"
        ).replace("; admin port None", "")
    if isinstance(cause, OSError) and cause.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {settings.host} (RT_HOST / --host): no such address here"
    if isinstance(cause, OSError) and cause.errno == errno.EACCES:
        return f"not allowed to listen on port {settings.port} (RT_PORT / --port)"
    return f"the server stopped: {type(cause).__name__}: {cause} (--debug shows the traceback)"


def cmd_token(args: argparse.Namespace) -> int:
    from rt.auth import issue_token

    secret = os.environ.get("RT_JWT_SECRET", "")
    if not secret:
        print("rt: RT_JWT_SECRET is not set", file=sys.stderr)
        return 2
    scope = [m.strip() for m in args.markets.split(",")] if args.markets else None
    user: int | str = int(args.user) if args.user.isdigit() else args.user
    try:
        token, _ = issue_token(
            secret=secret, user_id=user, scope_markets=scope, ttl_s=args.ttl, now_s=time.time()
        )
    except ValueError as exc:
        print(f"rt: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    import logging

    from rt.client import tail

    # stdout is for the stream alone (one JSON object per line); say nothing of each request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("rt.client").setLevel(logging.WARNING)
    try:
        http_url = args.url.rstrip("/")
        ws_url = "ws" + http_url.removeprefix("http") if http_url.startswith("http") else http_url
        return trio.run(tail, ws_url, http_url, args.market, args.token, args.user)
    except KeyboardInterrupt:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rt", description="rt realtime push server")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    add_sim_parser(sub)

    t = sub.add_parser("token", help="print a client token signed with RT_JWT_SECRET")
    t.add_argument("--user", required=True)
    t.add_argument("--markets", help="comma-separated market ids the token allows")
    t.add_argument("--ttl", type=int, default=600, help="lifetime in seconds (default 600)")

    tl = sub.add_parser(
        "tail",
        help="print the live stream of a market",
        description="Print every message of the markets as one JSON object per line on stdout "
        "(KMarket, /ws/odds), resuming after every drop. Errors and retries go to stderr. "
        "Exit status: 0 on Ctrl-C, 1 on a delivery-contract violation, 2 when the server "
        "refuses for good (401, 403).",
    )
    tl.add_argument(
        "--market", action="append", required=True, help="a market id to follow (repeatable)"
    )
    tl.add_argument(
        "--url",
        default=os.environ.get("RT_URL", "http://127.0.0.1:8080"),
        help="the server's address, for its token route and its WebSocket "
        "(RT_URL, default http://127.0.0.1:8080)",
    )
    tl.add_argument(
        "--token",
        help="a client token; by default one is asked of the server's token route "
        "(open with --dev, else it needs RT_ADMIN_TOKEN in the environment)",
    )
    tl.add_argument("--user", default="tail", help="the user id to ask a token for (default: tail)")

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    json_lines = bool(getattr(args, "log_json", None)) or _env_bool(
        os.environ.get("RT_LOG_JSON", "false"), "RT_LOG_JSON"
    )
    configure_logging(json_lines=json_lines, level=os.environ.get("RT_LOG_LEVEL", "INFO"))
    handlers = {"serve": cmd_serve, "token": cmd_token, "tail": cmd_tail, "sim": run_sim}
    return handlers[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
