"""The README's Python example runs as written (from the repository root, where its paths point)."""

import os
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_python_example_runs(capsys):
  blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
  assert blocks, "README has no Python example"
  here = os.getcwd()
  os.chdir(ROOT)
  try:
    for block in blocks:
      exec(compile(block, "README.md", "exec"), {})
  finally:
    os.chdir(here)
  assert "(1, 3, 24, 24)" in capsys.readouterr().out
