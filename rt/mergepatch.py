"""RFC 7396 JSON merge patch: apply a patch, and compose two patches into one.

A merge patch is a JSON object that mirrors the shape of the target: each member replaces the
target's member of the same name, ``null`` deletes it, and an object member is merged
recursively. Anything that is not an object replaces the target whole. rt keeps every topic's
state as a JSON object and publishes changes to it as merge patches.

Composition is what lets a lagging subscriber receive one conflated update instead of many: the
patches pending for it are folded with `compose` into one that has the same effect. Merge patches
are not closed under composition, though. If ``first`` sets a member to ``null`` or to a
non-object and ``second`` then sets the same member to an object, applying both *replaces* the
original member with that object (minus its nulls), while no single patch can say "replace with
this object": an object member always merges into whatever the target holds. `compose` returns
``None`` in exactly that case and the caller sends a snapshot instead.
"""

from __future__ import annotations

from rt.model import Json

__all__ = ["apply", "apply_in_place", "compose"]


def apply(target: Json, patch: Json) -> Json:
    """Return the result of applying ``patch`` to ``target`` (RFC 7396, section 2).

    Neither input is mutated and the result shares no mutable object with them. A patch that is
    not an object replaces the target; an object patch applied to a target that is not an object
    applies to ``{}``; a ``null`` member deletes that member of the target.
    """
    if not isinstance(patch, dict):
        return _copy(patch)
    result = {k: _copy(v) for k, v in target.items()} if isinstance(target, dict) else {}
    apply_in_place(result, patch)
    return result


def apply_in_place(target: dict[str, Json], patch: dict[str, Json]) -> None:
    """Apply the object ``patch`` to the object ``target``, mutating ``target``.

    The same result as `apply`, without copying the untouched parts of ``target``: the engine
    calls this on its own state for every published patch. Values taken from ``patch`` are
    copied, so ``target`` never shares a mutable object with ``patch`` and a later patch can
    never reach back into an earlier one.
    """
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            current = target.get(key)
            if isinstance(current, dict):
                apply_in_place(current, value)
            else:
                fresh: dict[str, Json] = {}
                apply_in_place(fresh, value)
                target[key] = fresh
        else:
            target[key] = _copy(value)


def compose(first: dict[str, Json], second: dict[str, Json]) -> dict[str, Json] | None:
    """Return one patch equivalent to applying ``first`` then ``second``, or None if there is none.

    For every target ``t``: ``apply(t, compose(first, second)) == apply(apply(t, first), second)``
    whenever the result is not None. It is None exactly when, at some path, ``second`` holds an
    object where ``first`` holds ``null`` or a non-object (see the module docstring); the caller
    then falls back to a full snapshot. Neither input is mutated.
    """
    result = {k: _copy(v) for k, v in first.items()}
    for key, value in second.items():
        if isinstance(value, dict) and key in first:
            earlier = first[key]
            if not isinstance(earlier, dict):
                return None
            merged = compose(earlier, value)
            if merged is None:
                return None
            result[key] = merged
        else:
            # A non-object (or null) replaces (or deletes) whatever `first` left there; an object
            # whose key `first` does not touch merges into the original target, nulls included.
            result[key] = _copy(value)
    return result


def _copy(value: Json) -> Json:
    """A deep copy of a JSON value; much cheaper than copy.deepcopy for JSON's few types."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
