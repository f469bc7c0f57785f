"""The runnable examples in docs/actors.md print what the document says they print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "actors.md"

# A python block immediately followed by a text block holding its exact output.
EXAMPLE = re.compile(r"```python\n(?P<code>[^`]*)```\n\n```text\n(?P<output>[^`]*)```")


def examples() -> list[tuple[str, str]]:
    return [(m["code"], m["output"]) for m in EXAMPLE.finditer(DOC.read_text())]


def test_the_document_has_runnable_examples() -> None:
    assert len(examples()) == 3


@pytest.mark.parametrize(("code", "output"), examples(), ids=["counter", "restart", "faults"])
def test_example_prints_what_the_document_says(
    code: str, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out == output
