"""rt/dialects: the registry picks a dialect by WebSocket path, exact or with {name} segments."""

from __future__ import annotations

from rt.dialects import DIALECTS, _compile, anonymous_claims, match
from rt.dialects.kmarket import DIALECT as KMARKET
from rt.dialects.uof import DIALECT as UOF


def test_exact_paths_pick_their_dialect() -> None:
    assert match("/ws/odds") == (KMARKET, {})
    assert match("/ws") == (UOF, {})
    assert match("/ws/odds/") is None
    assert match("/nowhere") is None


def test_every_path_is_claimed_once() -> None:
    paths = [path for dialect in DIALECTS for path in dialect.paths]
    assert len(paths) == len(set(paths))


def test_a_pattern_captures_one_segment_each() -> None:
    pattern = _compile("/api/v1/ws/{client_id}")
    found = pattern.fullmatch("/api/v1/ws/abc-1")
    assert found is not None and found.groupdict() == {"client_id": "abc-1"}
    assert pattern.fullmatch("/api/v1/ws/a/b") is None
    assert pattern.fullmatch("/api/v1/ws/") is None
    assert _compile("/x.y/{a}").fullmatch("/xzy/1") is None  # the rest is literal


def test_anonymous_claims_are_a_user_of_their_own() -> None:
    claims = anonymous_claims("c7")
    assert claims.user_id == "anon:c7"
    assert claims.scope_markets is None
