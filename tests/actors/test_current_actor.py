"""current_actor_path(): the path of the actor whose task is running, for log lines."""

from __future__ import annotations

from typing import ClassVar

import trio

from actors import Actor, ChildSpec, Supervisor, current_actor_path, open_system


class Probe(Actor):
    kind: ClassVar[str] = "probe"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    async def on_start(self) -> None:
        self.seen.append(("on_start", current_actor_path()))

    async def receive(self, message: str) -> list[tuple[str, str | None]]:
        self.seen.append(("receive", current_actor_path()))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._task)
        return self.seen

    async def _task(self) -> None:
        self.seen.append(("task", current_actor_path()))


async def test_each_actor_and_its_tasks_see_its_path() -> None:
    specs = [ChildSpec("sup", lambda: Supervisor([ChildSpec("probe", Probe)]))]
    assert current_actor_path() is None
    async with open_system(specs) as system:
        probe = system.lookup("sup/probe")
        assert probe is not None
        assert await probe.ask("hi") == [
            ("on_start", "sup/probe"),
            ("receive", "sup/probe"),
            ("task", "sup/probe"),
        ]
        assert current_actor_path() is None  # the caller's task is not an actor's
