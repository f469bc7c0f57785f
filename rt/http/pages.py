"""Pages rt serves as files from rt/http/static/: one HTML document each, self-contained.

A page's inline script and style are allowed by their hashes in its Content-Security-Policy,
and nothing else is: no other host, no eval, no inline event handlers.

    GET /websocket-test    the live WebSocket test page, for every dialect rt serves
    GET /debug             the operators' page (served by rt/http/debug.py, admin data only
                           through its own authenticated requests)
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse


def _sha256(text: str) -> str:
    digest = hashlib.sha256(text.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@cache
def page(name: str, *, connect_src: str = "'self'") -> tuple[str, str]:
    """The page ``static/<name>`` and its Content-Security-Policy."""
    html = resources.files("rt.http").joinpath("static", name).read_text(encoding="utf-8")
    scripts = " ".join(_sha256(s) for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    styles = " ".join(_sha256(s) for s in re.findall(r"<style>(.*?)</style>", html, re.S))
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        f"connect-src {connect_src}; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, policy


def pages_router() -> APIRouter:
    router = APIRouter()

    @router.get("/websocket-test", response_class=HTMLResponse, include_in_schema=False)
    async def websocket_test() -> HTMLResponse:
        # Its URL field may name another rt (any ws: or wss: host); HTTP only to this one.
        html, policy = page("websocket-test.html", connect_src="'self' ws: wss:")
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})

    return router
