from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rt.mergepatch import apply, apply_in_place, compose
from rt.model import Json

# RFC 7396 appendix A, every example, in order: (original, patch, result).
RFC_7396_APPENDIX_A: list[tuple[Json, Json, Json]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "expected"), RFC_7396_APPENDIX_A)
def test_rfc_7396_appendix_a(original: Json, patch: Json, expected: Json) -> None:
    assert apply(original, patch) == expected


def test_rfc_7396_section_3_example() -> None:
    original = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {
        "title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": None},
        "tags": ["example"],
    }
    assert apply(original, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_result_shares_nothing_with_inputs() -> None:
    target: dict[str, Json] = {"keep": {"x": [1]}, "m": {"y": 1}}
    patch: dict[str, Json] = {"m": {"z": [2]}, "n": {"w": {"v": 1}}}
    result = apply(target, patch)
    result["keep"]["x"].append(9)
    result["m"]["z"].append(9)
    result["n"]["w"]["v"] = 9
    assert target == {"keep": {"x": [1]}, "m": {"y": 1}}
    assert patch == {"m": {"z": [2]}, "n": {"w": {"v": 1}}}


def test_compose_is_none_when_second_merges_into_what_first_replaced() -> None:
    # first deletes "a", second sets it to an object: applied in turn, "a" ends up exactly
    # {"y": 2}; but the patch {"a": {"y": 2}} would merge into the original {"x": 1}.
    target = {"a": {"x": 1}}
    assert apply(apply(target, {"a": None}), {"a": {"y": 2}}) == {"a": {"y": 2}}
    assert apply(target, {"a": {"y": 2}}) == {"a": {"x": 1, "y": 2}}
    assert compose({"a": None}, {"a": {"y": 2}}) is None
    assert compose({"a": 5}, {"a": {"y": 2}}) is None
    assert compose({"a": [1]}, {"a": {}}) is None
    assert compose({"a": {"b": "s"}}, {"a": {"b": {"c": 1}}}) is None


def test_compose_keeps_nulls_of_second_for_keys_first_does_not_touch() -> None:
    assert compose({"a": 1}, {"b": {"c": None}}) == {"a": 1, "b": {"c": None}}
    assert compose({"a": {"b": 1}}, {"a": {"c": None}}) == {"a": {"b": 1, "c": None}}
    assert compose({"a": {"b": 1}}, {"a": None}) == {"a": None}


# Keys from a small alphabet so that patches often touch the same members.
keys = st.sampled_from("abc")
scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["s", "t"]), st.none())
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=2), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=8,
)
patches = st.dictionaries(keys, json_values, max_size=3)
targets = st.one_of(patches, json_values)


def conflicts(first: Json, second: Json) -> bool:
    """The documented case: somewhere, second holds an object where first holds a non-object."""
    return any(
        isinstance(value, dict)
        and key in first
        and (not isinstance(first[key], dict) or conflicts(first[key], value))
        for key, value in second.items()
    )


@given(targets, patches, patches)
def test_compose_is_equivalent_to_applying_both(t: Json, p1: Json, p2: Json) -> None:
    composed = compose(p1, p2)
    if composed is None:
        assert conflicts(p1, p2)
    else:
        assert not conflicts(p1, p2)
        assert apply(t, composed) == apply(apply(t, p1), p2)


@given(targets, patches, patches, patches)
def test_compose_folds_a_backlog(t: Json, p1: Json, p2: Json, p3: Json) -> None:
    first_two = compose(p1, p2)
    folded = None if first_two is None else compose(first_two, p3)
    if folded is not None:
        assert apply(t, folded) == apply(apply(apply(t, p1), p2), p3)


@given(targets, st.one_of(patches, json_values))
def test_apply_does_not_mutate_its_inputs(t: Json, p: Json) -> None:
    t_before, p_before = copy.deepcopy(t), copy.deepcopy(p)
    apply(t, p)
    assert (t, p) == (t_before, p_before)


@given(patches, patches)
def test_compose_does_not_mutate_its_inputs(p1: Json, p2: Json) -> None:
    p1_before, p2_before = copy.deepcopy(p1), copy.deepcopy(p2)
    compose(p1, p2)
    assert (p1, p2) == (p1_before, p2_before)


@given(patches, patches)
def test_apply_in_place_matches_apply(t: Json, p: Json) -> None:
    expected = apply(t, p)
    p_before = copy.deepcopy(p)
    apply_in_place(t, p)
    assert t == expected
    assert p == p_before
