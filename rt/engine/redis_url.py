"""Parsing a Redis engine URL: ``redis://[[user]:password@]host[:port][/db][?options]``.

``rediss://`` is the same over TLS, with the options ``ssl_ca_certs``, ``ssl_certfile``,
``ssl_keyfile`` (paths) and ``ssl_cert_reqs`` (required, optional or none). The password may
be percent-encoded. Pure parsing, no coredis: the errors name what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["RedisTarget", "parse_redis_url"]

_TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
_CERT_REQS = ("required", "optional", "none")


@dataclass(frozen=True, kw_only=True)
class RedisTarget:
    """Where and how to connect; `shown` is the URL without its password, for logs."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str | None = None

    @property
    def shown(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        auth = ""
        if self.password is not None:
            auth = f"{self.username or ''}:***@"
        elif self.username:
            auth = f"{self.username}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


def parse_redis_url(url: str) -> RedisTarget:
    """The target that ``url`` names; ValueError saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"engine URL {_hide(url)!r}: expected redis:// or rediss://")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"engine URL {_hide(url)!r}: the port must be a number") from None
    if not host:
        raise ValueError(f"engine URL {_hide(url)!r}: a Redis URL needs a host")
    db_text = parts.path.lstrip("/")
    if db_text and not db_text.isdigit():
        raise ValueError(
            f"engine URL {_hide(url)!r}: the path is the database number, got {db_text!r}"
        )
    if parts.fragment:
        raise ValueError(f"engine URL {_hide(url)!r}: a Redis URL has no #fragment")
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    tls = parts.scheme == "rediss"
    known = _TLS_OPTIONS if tls else ()
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(known) if known else "none (TLS options need rediss://)"
        raise ValueError(
            f"engine URL {_hide(url)!r}: unknown option {unknown[0]!r}; known: {allowed}"
        )
    reqs = options.get("ssl_cert_reqs")
    if reqs is not None and reqs not in _CERT_REQS:
        raise ValueError(
            f"engine URL {_hide(url)!r}: ssl_cert_reqs must be one of "
            f"{', '.join(_CERT_REQS)}, got {reqs!r}"
        )
    return RedisTarget(
        host=host,
        port=port or 6379,
        db=int(db_text or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        ssl_ca_certs=options.get("ssl_ca_certs"),
        ssl_certfile=options.get("ssl_certfile"),
        ssl_keyfile=options.get("ssl_keyfile"),
        ssl_cert_reqs=reqs,
    )


def _hide(url: str) -> str:
    """``url`` with any password replaced, so that an error message never shows it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    netloc = f"{user}:***@{parts.netloc.rpartition('@')[2]}"
    return parts._replace(netloc=netloc).geturl()
