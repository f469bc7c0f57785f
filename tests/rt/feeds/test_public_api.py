"""rt.feeds re-exports its public API, and only that."""

from __future__ import annotations

import types

import rt.feeds


def test_every_exported_name_exists_and_nothing_else_is_public() -> None:
    for name in rt.feeds.__all__:
        assert hasattr(rt.feeds, name), name
    assert rt.feeds.__all__ == sorted(rt.feeds.__all__, key=lambda n: (not n.isupper(), n))
    public = {
        name
        for name, value in vars(rt.feeds).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(rt.feeds.__all__)
