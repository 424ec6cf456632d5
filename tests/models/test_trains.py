"""Every zoo model trains: a few hundred Adam steps on a tiny batch of real patches drive the L1 loss down.

The light models train in their canonical configuration. The four heavy ones (VDSR, EDSR-baseline, SwinIR-light,
conv-transformer) train at reduced depth/width to keep the suite within CI's time on 2 CPU cores; their full
configurations are checked against PyTorch in test_zoo.py, and depth does not change what gradients flow through.
"""

from pathlib import Path

import numpy as np
import pytest
from tinygrad import Tensor
from tinygrad.nn.optim import Adam

from supertiny.data.images import read_image, to_float
from supertiny.models import create_model
from supertiny.ops import imresize, rgb_to_y
from supertiny.train import make_train_step, training

SAMPLE = Path(__file__).parents[2] / "supertiny" / "samples" / "butterfly.png"

# name, scale, channels, options, steps
CASES = [
  ("single-kernel", 3, 1, {}, 200),
  ("transposed-conv", 2, 1, {}, 200),
  ("srcnn", 2, 1, {}, 120),
  ("espcn", 3, 1, {}, 200),
  ("espcn", 4, 3, {"variant": "paper"}, 200),  # the paper's BatchNorm variant
  ("fsrcnn", 3, 1, {}, 200),
  ("vdsr", 2, 1, {"depth": 6}, 100),
  ("edsr-baseline", 2, 3, {"blocks": 2}, 100),
  ("swinir-light", 2, 3, {"depths": (2,), "window": 4, "dim": 24, "heads": 2}, 60),
  ("conv-transformer", 2, 3, {"depth": 2, "dim": 64, "patch": 2}, 100),
]


def patches(scale: int, channels: int, count: int = 4, lr_size: int = 8) -> tuple[Tensor, Tensor]:
  """(LR, HR) NCHW batches cut from the bundled sample, LR made with MATLAB bicubic."""
  image = to_float(read_image(SAMPLE))
  if channels == 1:
    image = rgb_to_y(image)[..., None]
  rng = np.random.default_rng(0)
  size = lr_size * scale
  hr = [image[y: y + size, x: x + size] for y, x in rng.integers(0, image.shape[0] - size, (count, 2))]
  lr = [imresize(h, 1 / scale) for h in hr]
  as_batch = lambda xs: Tensor(np.stack(xs).transpose(0, 3, 1, 2).astype(np.float32))  # noqa: E731
  return as_batch(lr), as_batch(hr)


# the two transformers spend most of a minute compiling in CI; tests/test_paper.py trains the conv-transformer too
SLOW_TO_TRAIN = ("swinir-light", "conv-transformer")


@pytest.mark.parametrize("name,scale,channels,options,steps", [
  pytest.param(*c, marks=pytest.mark.slow) if c[0] in SLOW_TO_TRAIN else c for c in CASES],
  ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_model_trains(name, scale, channels, options, steps):
  Tensor.manual_seed(0)
  lr, hr = patches(scale, channels)
  model = create_model(name, scale=scale, channels=channels, **options)
  step = make_train_step(model, Adam(model.parameters(), lr=1e-3), loss="l1")
  with training():
    losses = [step(lr, hr).item() for _ in range(steps)]
  assert np.all(np.isfinite(losses))
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), f"{name}: loss {losses[0]:.4f} -> {losses[-1]:.4f}"



@pytest.mark.parametrize("name,scale,channels,options", [
  pytest.param(*c[:4], marks=pytest.mark.slow) if c[0] == "swinir-light" else c[:4]  # 30-50 s of compile in CI
  for c in CASES if c[0] in ("edsr-baseline", "swinir-light")])
def test_sharded_forward_equals_one_device(name, scale, channels, options):
  """The models that build constant tensors inside forward place them with the input, so a batch sharded over two
  devices (data-parallel training, tests/test_train.py) computes what one device does."""
  Tensor.manual_seed(0)
  lr, _ = patches(scale, channels, count=2, lr_size=8)
  model = create_model(name, scale=scale, channels=channels, **options)
  single = model(lr).numpy()
  for p in model.parameters():
    p.shard_(("CPU", "CPU:1"))
  sharded = model(lr.shard(("CPU", "CPU:1"), axis=0))
  assert sharded.device == ("CPU", "CPU:1")
  np.testing.assert_allclose(sharded.numpy(), single, rtol=1e-5, atol=1e-6)
