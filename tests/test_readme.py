"""Every ```python block of the README runs on its own, as a reader would paste it."""
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 2  # the block's first line, 1-based
        # padded to its place in the file: a traceback names the README's own line
        blocks.append(pytest.param("\n" * (line - 1) + match.group(1), id=f"README.md:{line}"))
    return blocks


def test_the_readme_has_python_blocks():
    assert len(python_blocks()) >= 8


@pytest.mark.parametrize("code", python_blocks())
def test_block_runs_on_its_own(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # files a block writes (runs, exports) land in a fresh folder
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # a fresh namespace per block: a name the block uses but does not define fails here
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_num_threads(before)
