"""The public API of ``actors`` is exactly ``__all__``, and the package stands alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import types
from pathlib import Path

import actors

PUBLIC = [
    "Actor",
    "ActorError",
    "ActorRef",
    "ActorState",
    "ActorSystem",
    "AdoptChild",
    "AskFailed",
    "AskTimeout",
    "ChildSpec",
    "Down",
    "Exit",
    "ExitReason",
    "Fault",
    "FaultAction",
    "FaultPlan",
    "InjectedFault",
    "Mailbox",
    "MailboxClosed",
    "MailboxFull",
    "MailboxStatistics",
    "Monitor",
    "NameTaken",
    "NoSuchChild",
    "Overflow",
    "Registry",
    "Request",
    "Restart",
    "StartChild",
    "StopChild",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "WhichChildren",
    "current_actor_path",
    "open_system",
]

PACKAGE = Path(actors.__file__).parent


def test_all_is_the_public_api() -> None:
    assert actors.__all__ == PUBLIC  # a change here is an API change: say so in review
    exported = {
        name
        for name, value in vars(actors).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert exported == set(PUBLIC)
    for name in PUBLIC:
        assert getattr(actors, name).__module__.startswith("actors.")


def test_errors_form_one_tree() -> None:
    for name in [
        "MailboxFull",
        "MailboxClosed",
        "AskTimeout",
        "AskFailed",
        "NameTaken",
        "NoSuchChild",
        "InjectedFault",
        "SupervisorGaveUp",
    ]:
        assert getattr(actors, name).__bases__[0] is actors.ActorError, name
    assert issubclass(actors.ActorError, Exception)
    assert issubclass(actors.AskTimeout, TimeoutError)
    assert issubclass(actors.NoSuchChild, LookupError)


def test_every_public_name_has_its_own_docstring() -> None:
    for name in PUBLIC:
        value = getattr(actors, name)
        doc = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
        assert doc, name
        assert not doc.startswith(f"{name}("), f"{name} has only the dataclass signature"


def test_importing_actors_loads_nothing_of_the_server() -> None:
    code = (
        "import json, sys, actors; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('rt', 'trio_websocket', 'starlette', 'hypercorn'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_actors_imports_only_the_standard_library_trio_and_tenacity() -> None:
    allowed = set(sys.stdlib_module_names) | {"trio", "tenacity"}
    for source in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in allowed, f"{source.name} imports {root}"
