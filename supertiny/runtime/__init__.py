"""The one seam between SuperTiny and how models are executed: devices and CPU cores (`cores`), jits and their
direct replay (`replay`), the CPU convolution kernels (`conv`), attention and linear layers shaped for tinygrad's
scheduler (`transformer`), tinygrad's private internals (`internals`, checked against the tinygrad version, with
public fallbacks) and the image runner every image path uses (`runner`, `pipeline`). Nothing here imports the model
zoo: a model is any callable with `scale`, `channels` and `receptive_field`. The rest of the package calls `Runner`
for images and `make_train_step` (supertiny.train) for training.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Runner", "runner_for"]


def __getattr__(name: str) -> Any:
  # lazy: supertiny.ops imports runtime.conv, and the runner imports supertiny.ops
  if name in __all__:
    from . import runner

    return getattr(runner, name)
  raise AttributeError(name)
