"""Every HTTP error rt answers: JSON ``{"code", "message"}`` (and any extra fields), one type.

A route raises `ApiError` (or returns `error_response`); `install` makes the app answer with
it, and turns FastAPI's and Starlette's own errors (a bad body, no such route, a method the
route does not take, a body over the limit) into the same shape. Errors are never cached; a
401 says how to authenticate (``WWW-Authenticate: Bearer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rt.engine import EngineUnavailable

__all__ = ["ApiError", "error_response", "install"]


class ApiError(Exception):
    """Answer the request with ``status`` and ``{"code", "message", **extra}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    sent = {"Cache-Control": "no-store", **(headers or {})}
    if status == 401:
        sent.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(
        {"code": code, "message": message, **extra}, status_code=status, headers=sent
    )


def install(app: FastAPI, describe_problem: Any) -> None:
    """Answer every error of ``app`` in rt's form. ``describe_problem`` words one pydantic
    validation error for a client (naming the field)."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    @app.exception_handler(EngineUnavailable)
    async def engine_down(_: Request, exc: EngineUnavailable) -> JSONResponse:
        # The shared store (Redis) is out of reach: nothing was published; try again later.
        return error_response(503, "ENGINE_UNAVAILABLE", str(exc), headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(describe_problem(e) for e in exc.errors())
        return error_response(400, "INVALID_REQUEST", problems)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Starlette's own answers (no such route, a method the route does not take).
        path = request.url.path
        if exc.status_code == 404:
            return error_response(404, "NOT_FOUND", f"no route {path}", headers=exc.headers)
        if exc.status_code == 405:
            message = f"{path} does not take {request.method}"
            return error_response(405, "METHOD_NOT_ALLOWED", message, headers=exc.headers)
        if exc.status_code == 413:  # rt/http/limits.py: a body over the limit
            return error_response(413, "PAYLOAD_TOO_LARGE", str(exc.detail), headers=exc.headers)
        code = f"HTTP_{exc.status_code}"
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)
