"""Small actors and helpers shared by the actors tests.

Every actor here records what happens to it in a ``Journal`` along with the virtual time, so
tests wait on journal entries (events) instead of sleeping, and assert exact times.
"""

from __future__ import annotations

from typing import Any

import trio

from actors import Actor, ActorSystem, Down, Request

#: Virtual seconds any test wait may take. On the autojump clock it costs nothing, and a
#: regression that leaves a test waiting fails with TooSlowError instead of hanging.
GUARD_S = 10_000.0


async def wait(event: trio.Event) -> None:
    with trio.fail_after(GUARD_S):
        await event.wait()


class Journal:
    """An append-only list of (event, name, time) that tests can wait on."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, float]] = []
        self._changed = trio.Event()

    def add(self, event: str, name: str) -> None:
        self.entries.append((event, name, trio.current_time()))
        self._changed.set()
        self._changed = trio.Event()

    def events(self, *kinds: str) -> list[tuple[str, str]]:
        return [(e, n) for e, n, _ in self.entries if not kinds or e in kinds]

    def times(self, event: str, name: str) -> list[float]:
        return [t for e, n, t in self.entries if (e, n) == (event, name)]

    def count(self, event: str, name: str) -> int:
        return len(self.times(event, name))

    async def wait_for(self, event: str, name: str, *, count: int = 1) -> None:
        with trio.fail_after(GUARD_S):
            while self.count(event, name) < count:
                await self._changed.wait()


class Worker(Actor):
    """Replies to asks with the message; ``"crash"`` raises, ``"exit"`` returns from run().

    Journals ``start`` (after on_start), ``crash``, ``exit`` (returned by itself) and
    ``stop`` (its mailbox closed and was drained: a graceful stop).
    """

    kind = "worker"

    def __init__(self, journal: Journal | None = None) -> None:
        self.journal = journal if journal is not None else Journal()

    async def on_start(self) -> None:
        self.journal.add("start", self.path)

    async def run(self) -> None:
        async for message in self.mailbox:
            body = message.body if type(message) is Request else message
            if body == "exit":
                if type(message) is Request:
                    message.reply("bye")
                self.journal.add("exit", self.path)
                return
            await self.dispatch(message)
        self.journal.add("stop", self.path)

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            self.journal.add("crash", self.path)
            raise ValueError(f"{self.path} was told to crash")
        return message


class Flaky(Worker):
    """Crashes right after starting while ``budget["crashes"]`` is positive (counting down)."""

    kind = "flaky"

    def __init__(self, journal: Journal, budget: dict[str, int], *, life_s: float = 0.0):
        super().__init__(journal)
        self.budget = budget
        self.life_s = life_s

    async def run(self) -> None:
        if self.budget["crashes"] > 0:
            self.budget["crashes"] -= 1
            await trio.sleep(self.life_s)
            self.journal.add("crash", self.path)
            raise ValueError(f"{self.path} is flaky")
        await super().run()


class Stubborn(Actor):
    """Ignores a graceful stop: it never reads its mailbox and only ends when cancelled."""

    kind = "stubborn"

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def on_start(self) -> None:
        self.journal.add("start", self.path)

    async def run(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self.journal.add("cancelled", self.path)


class Watcher(Actor):
    """Collects the Down notices it is sent; ``ask("downs")`` returns them."""

    kind = "watcher"

    def __init__(self) -> None:
        self.downs: list[Down] = []

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Down):
            self.downs.append(message)
            return None
        if message == "downs":
            return list(self.downs)
        return await super().receive(message)


async def crash_and_wait(system: ActorSystem, path: str, journal: Journal) -> None:
    """Make the actor at ``path`` crash and return once its supervisor has decided and, if
    it restarts the child, once the child runs again.

    The supervisor handles the crash notice before the ``WhichChildren`` asked here (its
    mailbox is FIFO, and the notice is posted as the child ends). A restart waits out its
    backoff in a timer task while the supervisor goes on answering: a child listed without
    a ref is waited for until it starts again.
    """
    from actors import WhichChildren

    ref = system.lookup(path)
    assert ref is not None, f"nothing at {path}"
    starts = journal.count("start", path)
    ended = trio.Event()
    system.monitor(path, lambda down: ended.set())
    ref.tell_nowait("crash")
    await wait(ended)
    parent_path, _, name = path.rpartition("/")
    parent = system.lookup(parent_path) if parent_path else system.root
    assert parent is not None
    children = dict(await parent.ask(WhichChildren(), timeout_s=GUARD_S))
    if name in children and children[name] is None:  # its restart backoff is running
        await journal.wait_for("start", path, count=starts + 1)
        await parent.ask(WhichChildren(), timeout_s=GUARD_S)  # and the rest of its group


def count_tasks() -> int:
    """Every task in this run, found by walking the task tree from the root task."""

    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(
            walk(child) for nursery in task.child_nurseries for child in nursery.child_tasks
        )

    return walk(trio.lowlevel.current_root_task())
