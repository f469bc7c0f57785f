"""docs/feeds.md: every example message is valid, and the tables name every field and option."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from rt.feeds import (
    HubSink,
    SnapshotRequest,
    UpstreamFeed,
    decode_request,
    decode_upstream,
    encode,
)
from rt.feeds.cli import add_sim_parser
from rt.feeds.messages import to_json
from tests.rt.harness import open_core

DOC = (Path(__file__).parents[3] / "docs" / "feeds.md").read_text()
UPSTREAM = re.findall(r"```json upstream\n(.*?)```", DOC, re.S)
RT = re.findall(r"```json rt\n(.*?)```", DOC, re.S)


def test_every_message_type_has_an_example() -> None:
    types = {json.loads(text)["type"] for text in UPSTREAM + RT}
    assert types == {
        "alive",
        "odds_change",
        "bet_stop",
        "bet_settlement",
        "snapshot",
        "snapshot_request",
    }


@pytest.mark.parametrize("text", UPSTREAM)
def test_upstream_examples_decode_and_encode_back(text: str) -> None:
    message = decode_upstream(text)
    assert to_json(message) == json.loads(text)


@pytest.mark.parametrize("text", RT)
def test_rt_examples_decode(text: str) -> None:
    message = decode_request(text)
    assert isinstance(message, SnapshotRequest)
    assert json.loads(encode(message)) == json.loads(text)


def test_the_topic_state_example_is_a_valid_snapshot_event() -> None:
    state = re.search(r"## The event topic model.*?```json\n(.*?)```", DOC, re.S)
    assert state is not None
    event = json.loads(state.group(1))
    (decoded,) = decode_upstream(json.dumps({"type": "snapshot", "events": [event]})).events
    assert decoded.event_id == "sr:match:1" and set(decoded.markets) == {"1", "2", "3"}


async def test_every_field_the_feed_shows_is_documented() -> None:
    async with open_core() as core:
        fields = UpstreamFeed("ws://x", HubSink(core.hub)).describe()
    assert len(fields) == 18
    for field in fields:
        assert f"`{field}`" in DOC, field


def test_every_sim_option_is_documented() -> None:
    parser = argparse.ArgumentParser()
    sim = add_sim_parser(parser.add_subparsers())
    options = [
        o for a in sim._actions for o in a.option_strings if o.startswith("--") and o != "--help"
    ]
    assert len(options) == 7
    for option in options:
        assert f"`{option}`" in DOC, option
