"""Figures: matplotlib without a display, and PNGs written atomically (a reader never sees half a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data.images import atomic_output


def pyplot() -> Any:
  """matplotlib.pyplot on the Agg backend (no display needed), imported only when a figure is drawn."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
  """Write `fig` to `path` (its format from the suffix, PNG by default) atomically, making the folder, then close
  it."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_output(path, suffix=path.suffix or ".png") as tmp:
    fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi)
  pyplot().close(fig)
  return path
