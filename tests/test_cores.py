"""Every CPU core for one model (supertiny.cores): copies of the model on CPU:0 and CPU:1, each driven from its own
thread, give PyTorch's results for inference and for training steps, and tiles on two cores give the one-core
image bit for bit."""

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from tinygrad import Tensor, TinyJit
from tinygrad.nn.optim import Adam
from tinygrad.nn.state import get_parameters

from supertiny.cores import (
  CorePool,
  SplitForward,
  SplitTrainStep,
  Stage,
  StagedForward,
  channel_shares,
  core_devices,
  flat_cat,
  replicate,
  split_context,
)
from supertiny.data.images import read_image
from supertiny.errors import SuperTinyError
from supertiny.infer import upscale_tiled
from supertiny.models import create_model
from supertiny.models.weights import load_weights
from supertiny.train import l1_loss, training

sys.path.insert(0, str(Path(__file__).parent / "models"))
import torch_reference as ref  # noqa: E402

TWO = ("CPU", "CPU:1")


def espcn_pair(tmp_path: Path, scale: int = 3) -> tuple[object, torch.nn.Module]:
  """Our ESPCN and PyTorch's reference with the same random weights."""
  torch.manual_seed(0)
  reference = ref.ESPCN(scale, 1)
  torch.save(reference.state_dict(), tmp_path / "espcn.pth")
  model = create_model("espcn", scale=scale, channels=1)
  load_weights(model, tmp_path / "espcn.pth")
  return model, reference


def test_core_devices_follow_the_setting(monkeypatch):
  monkeypatch.setenv("SUPERTINY_CORES", "2")
  assert core_devices() == TWO
  monkeypatch.setenv("SUPERTINY_CORES", "1")
  assert core_devices() == ("CPU",)
  assert core_devices(3) == ("CPU", "CPU:1", "CPU:2")
  for bad in ("0", "two", "-1"):
    monkeypatch.setenv("SUPERTINY_CORES", bad)
    with pytest.raises(SuperTinyError, match="SUPERTINY_CORES"):
      core_devices()


def test_a_replica_lives_on_its_device_and_computes_the_same(tmp_path):
  model, _ = espcn_pair(tmp_path)
  copy = replicate(model, "CPU:1")
  params = get_parameters(copy)
  assert len(params) == len(get_parameters(model)) and all(p.device == "CPU:1" for p in params)
  x = np.random.default_rng(0).random((1, 1, 11, 13), dtype=np.float32)
  np.testing.assert_array_equal(copy(Tensor(x, device="CPU:1")).numpy(), model(Tensor(x)).numpy())


@pytest.mark.parametrize("shape", [(1, 1, 40, 23), (2, 1, 16, 21)], ids=["rows", "images"])
def test_split_forward_equals_pytorch(tmp_path, shape):
  model, reference = espcn_pair(tmp_path)
  split = SplitForward(model, TWO, split_context(model.receptive_field))
  x = np.random.default_rng(1).random(shape, dtype=np.float32)
  assert len(split._pieces(x)) == 2  # really cut: into bands of rows, or by image
  assert_parallel_calls_match(split, x, model, reference, atol=1e-4)
  assert all(jit.bound is not None for runner in split.cores.runners for jit, _ in runner.jits.values())


def assert_parallel_calls_match(call, x: np.ndarray, model, reference: torch.nn.Module, atol: float) -> None:
  """Four calls (compiled, captured one device at a time, then replayed on two threads), each on new values of x's
  shape, give PyTorch's result and, within float rounding, the one-device model's."""
  one = TinyJit(lambda t: model(t).realize())
  for k in range(4):
    values = x if k == 0 else np.random.default_rng(k).random(x.shape, dtype=np.float32)
    with torch.no_grad():
      theirs = reference(torch.from_numpy(values)).numpy()
    ours = call(values)
    np.testing.assert_allclose(ours, theirs, atol=atol, rtol=0)
    np.testing.assert_allclose(ours, one(Tensor(values)).numpy(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scale", [3, 4])
def test_staged_forward_equals_pytorch(tmp_path, scale):
  """EDSR layer by layer, each core computing a share of every layer's output channels, and of the RGB output
  layer's rows (blocks and width cut down to keep the test short; the stages are the same code at any size)."""
  torch.manual_seed(0)
  reference = ref.EDSR(scale, blocks=2, width=16)
  torch.save(reference.state_dict(), tmp_path / "edsr.pth")
  model = create_model("edsr-baseline", scale=scale, channels=3, blocks=2, width=16)
  load_weights(model, tmp_path / "edsr.pth")
  staged = StagedForward(model, TWO)
  x = np.random.default_rng(2).random((1, 3, 9, 11), dtype=np.float32)
  assert_parallel_calls_match(staged, x, model, reference, atol=2e-5)
  shares = [s for device_shares in staged.plans[x.shape].shares for s in device_shares.values() if s is not None]
  assert all(s.jit.cnt >= 2 and s.jit.bound is not None for s in shares)  # really replayed, by direct kernel calls
  # ... reading the values in host memory, and writing there all but the RGB layer's bands of rows
  assert all(s.reads_host for s in shares)
  assert sum(not s.writes_host for s in shares) == len(TWO)


class BandThenShares:
  """Two elementwise stages: one shared by rows whose output keeps a border, one reading that border."""

  def channel_stages(self) -> list[Stage]:
    return [Stage((0,), 2, lambda m, part, x: x[:, :, 1:-1, 1:-1] + 1, reach=1, border=1),
            Stage((1,), 2, lambda m, part, v: v[:, part] * 3, block=1)]


def test_row_shared_stage_output_keeps_its_border():
  staged = StagedForward(BandThenShares(), TWO)
  for k in range(4):  # compiled, captured, then replayed on two threads
    x = np.random.default_rng(k).random((1, 2, 5, 6), dtype=np.float32)
    want = np.pad((x + 1) * 3, ((0, 0), (0, 0), (1, 1), (1, 1)))  # the second stage keeps the zero border
    np.testing.assert_array_equal(staged(x), want)


def test_channel_shares_are_whole_blocks():
  assert channel_shares(64, 2, 8) == [slice(0, 32), slice(32, 64)]
  assert channel_shares(3, 2, 1) == [slice(0, 2), slice(2, 3)]
  assert channel_shares(24, 2, 8) == [slice(0, 16), slice(16, 24)]
  assert channel_shares(3, 4, 1) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # fewer shares than devices
  assert channel_shares(12, 2, 8) == [slice(0, 6), slice(6, 12)]  # not whole blocks: shares of single channels


def test_captures_stay_on_the_calling_thread(tmp_path):
  model, _ = espcn_pair(tmp_path)
  pool = CorePool(model, TWO)
  ran_on = []

  def call(runner, x):
    out = runner(x)
    ran_on.append((runner.device, threading.current_thread() is threading.main_thread()))
    return out

  items = [np.full((1, 1, 8, 8), i / 8, dtype=np.float32) for i in range(8)]
  outputs = pool.map(call, items)
  # each device compiles on its first call and captures on its second: both on this thread; later calls replay,
  # the second device's on a worker thread
  assert ran_on[:4] == [("CPU", True), ("CPU:1", True), ("CPU", True), ("CPU:1", True)]
  assert ("CPU:1", False) in ran_on[4:]
  for x, out in zip(items, outputs, strict=True):
    np.testing.assert_array_equal(out, model(Tensor(x)).numpy())


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_split_training_steps_equal_pytorch(tmp_path, clip):
  model, reference = espcn_pair(tmp_path)
  rng = np.random.default_rng(2)
  batches = [(rng.random((4, 1, 9, 9), dtype=np.float32), rng.random((4, 1, 27, 27), dtype=np.float32))
             for _ in range(4)]
  step = SplitTrainStep(model, Adam(get_parameters(model), lr=1e-3), l1_loss, TWO, clip=clip)
  optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
  for i, (lr, hr) in enumerate(batches):  # steps 3 and 4 run the two shares on two threads
    with training():
      ours = step(lr, hr, 1e-3 * (i + 1)).item()
    for group in optimizer.param_groups:
      group["lr"] = 1e-3 * (i + 1)
    optimizer.zero_grad()
    loss = (reference(torch.from_numpy(lr)) - torch.from_numpy(hr)).abs().mean()
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)
    optimizer.step()
    assert ours == pytest.approx(loss.item(), rel=1e-4)  # as close as the one-device step (L1 gradients are signs)
  theirs = reference.state_dict()
  for name, ours in {"extract.layer.weight": model.extract.layer.weight, "map.layer.bias": model.map.layer.bias,
                     "subpixel.weight": model.subpixel.weight}.items():
    np.testing.assert_allclose(ours.numpy(), theirs[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
  assert all(j.bound is not None for j in step.grad_jits + step.update_jits)  # steps 3 and 4: direct calls
  for mine, copy in zip(step.replica_params[0], step.replica_params[1], strict=True):  # the copy follows
    np.testing.assert_array_equal(copy.numpy(), mine.numpy())


def test_batchnorm_models_are_refused():
  model = create_model("espcn", scale=2, channels=1, variant="paper")
  with pytest.raises(ValueError, match="BatchNorm"):
    SplitTrainStep(model, Adam(get_parameters(model)), l1_loss, TWO)


def test_tiles_on_two_cores_equal_one_core(assets):
  model = create_model("espcn", scale=3, channels=1)
  image = read_image(assets / "Set5" / "baby.png")[:90, :70]
  one = upscale_tiled(model, image, tile=32, cores=1)
  two = upscale_tiled(model, image, tile=32, cores=2)
  np.testing.assert_array_equal(two, one)
  # weights changed in place (as training does) reach the copies on the other core too
  for p in get_parameters(model):
    p.assign(p * 0.9).realize()
  changed = upscale_tiled(model, image, tile=32, cores=1)
  assert not np.array_equal(changed, one)
  np.testing.assert_array_equal(upscale_tiled(model, image, tile=32, cores=2), changed)


def test_flat_cat_joins_more_pieces_than_a_kernel_takes():
  pieces = [Tensor(np.arange(k, k + 3, dtype=np.float32)) for k in range(0, 300, 3)]  # 100 > 63 buffers
  np.testing.assert_array_equal(flat_cat(pieces).numpy(), np.arange(300, dtype=np.float32))


def test_input_slots_are_refilled_in_place_or_by_assign(monkeypatch):
  """Host memory is written in place; device memory that is not host memory (a GPU's) through an assign."""
  from tinygrad import Device, dtypes

  from supertiny.cores import input_slot, write_into

  slot = input_slot((2, 3), dtypes.float32, "CPU")
  buffer = slot.uop.base.realized
  write_into(slot, np.arange(6).reshape(2, 3))
  np.testing.assert_array_equal(slot.numpy(), np.arange(6).reshape(2, 3))
  monkeypatch.delattr(type(Device["CPU"].allocator), "_as_buffer")
  write_into(slot, np.ones((2, 3)))
  assert slot.uop.base.realized is buffer  # the jit's input buffer itself
  np.testing.assert_array_equal(slot.numpy(), np.ones((2, 3)))
