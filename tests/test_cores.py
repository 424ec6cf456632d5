"""Every CPU core for one model (supertiny.runtime.cores and the Runner): tiles on a thread per core and training
steps on copies of the model on CPU:0 and CPU:1 give PyTorch's results, and tiles on two cores give the one-core
image bit for bit."""

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from tinygrad import Tensor
from tinygrad.nn.optim import Adam
from tinygrad.nn.state import get_parameters

from supertiny.data.images import read_image
from supertiny.errors import SuperTinyError
from supertiny.infer import upscale_tiled
from supertiny.models import create_model
from supertiny.models.weights import load_weights
from supertiny.runtime import internals
from supertiny.runtime.cores import CorePool, SplitTrainStep, core_devices, flat_cat, replicate
from supertiny.runtime.runner import Runner
from supertiny.train import l1_loss, masked_l1, training

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


@pytest.mark.parametrize("shape", [(40, 23), (16, 90)], ids=["bands", "tiles"])
def test_runner_on_two_cores_equals_pytorch(tmp_path, shape):
  """An image cut into one band of rows per core, or into tiles, on two cores: four calls (compiled, captured one
  device at a time, then replayed on two threads), each on new values, give PyTorch's result."""
  model, reference = espcn_pair(tmp_path)
  runner = Runner(model, cores=2, tile=48)
  for k in range(4):
    values = np.random.default_rng(k).random(shape, dtype=np.float32)
    with torch.no_grad():
      theirs = reference(torch.from_numpy(values)[None, None]).numpy()[0, 0].clip(0, 1)
    np.testing.assert_allclose(runner(values), theirs, atol=1e-4, rtol=0)
  runners = runner.pool.runners
  assert all(len(r.jits) == 1 for r in runners)  # every tile of an image has the same shape: one jit a core
  if internals.USABLE:
    assert len(runners) == 2 and all(jit.bound is not None for r in runners for jit, *_ in r.jits.values())


def test_captures_stay_on_the_calling_thread(tmp_path):
  model, _ = espcn_pair(tmp_path)
  pool = CorePool(model, TWO)
  ran_on = []

  def call(runner, x):
    out = runner(x)  # the plain model forward of an NCHW batch
    ran_on.append((runner.device, threading.current_thread() is threading.main_thread()))
    return out

  items = [np.full((1, 1, 8, 8), i / 8, dtype=np.float32) for i in range(8)]
  outputs = pool.map(call, items)
  # each device compiles and captures on its first call, on this thread; later calls replay, the second device's
  # on a worker thread where the replay is by direct calls (tinygrad's own replays stay on this thread)
  assert ran_on[:2] == [("CPU", True), ("CPU:1", True)]
  assert (("CPU:1", False) in ran_on[2:]) == internals.USABLE
  for x, out in zip(items, outputs, strict=True):
    np.testing.assert_array_equal(out, model(Tensor(x)).numpy())


def clouded(rng: np.random.Generator, hr: np.ndarray) -> np.ndarray:
  """`hr` with a clear mask as its last channel: the first share (two images) all clear, the second mostly cloud,
  so a split that averaged the shares' masked means would weight the few clear pixels of the second 10 times."""
  clear = np.ones((hr.shape[0], 1, *hr.shape[2:]), np.float32)
  clear[2:] = rng.random((2, 1, *hr.shape[2:])) < 0.1
  return np.concatenate([hr, clear], axis=1)


@pytest.mark.parametrize("clip,masked", [(0.0, False), (0.05, False), (0.0, True)], ids=["l1", "clip", "masked"])
def test_split_training_steps_equal_pytorch(tmp_path, clip, masked):
  model, reference = espcn_pair(tmp_path)
  rng = np.random.default_rng(2)
  batches = [(rng.random((4, 1, 9, 9), dtype=np.float32), rng.random((4, 1, 27, 27), dtype=np.float32))
             for _ in range(4)]
  if masked:
    batches = [(lr, clouded(rng, hr)) for lr, hr in batches]
  step = SplitTrainStep(model, Adam(get_parameters(model), lr=1e-3), masked_l1 if masked else l1_loss, TWO, clip=clip)
  optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
  for i, (lr, hr) in enumerate(batches):  # steps 3 and 4 run the two shares on two threads
    with training():
      ours = step(lr, hr, 1e-3 * (i + 1)).item()
    for group in optimizer.param_groups:
      group["lr"] = 1e-3 * (i + 1)
    optimizer.zero_grad()
    target = torch.from_numpy(hr)
    if masked:  # the whole batch's mean over its clear pixels
      clear = target[:, -1:]
      loss = ((reference(torch.from_numpy(lr)) - target[:, :-1]).abs() * clear).sum() / clear.sum()
    else:
      loss = (reference(torch.from_numpy(lr)) - target).abs().mean()
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(reference.parameters(), clip)
    optimizer.step()
    assert ours == pytest.approx(loss.item(), rel=1e-4)  # as close as the one-device step (L1 gradients are signs)
  theirs = reference.state_dict()
  for name, ours in {"extract.layer.weight": model.extract.layer.weight, "map.layer.bias": model.map.layer.bias,
                     "subpixel.weight": model.subpixel.weight}.items():
    np.testing.assert_allclose(ours.numpy(), theirs[name].numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
  if internals.USABLE:  # steps 3 and 4: direct calls
    assert all(j.bound is not None for j in step.grad_jits + step.update_jits)
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
  from tinygrad import dtypes

  from supertiny.runtime import internals
  from supertiny.runtime.internals import input_slot, write_into

  slot = input_slot((2, 3), dtypes.float32, "CPU")
  buffer = slot.uop.base.realized
  write_into(slot, np.arange(6).reshape(2, 3))
  np.testing.assert_array_equal(slot.numpy(), np.arange(6).reshape(2, 3))
  monkeypatch.setattr(internals, "on_cpu", lambda device: False)  # as on a GPU
  write_into(slot, np.ones((2, 3)))
  assert slot.uop.base.realized is buffer  # the jit's input buffer itself
  np.testing.assert_array_equal(slot.numpy(), np.ones((2, 3)))


def test_every_colour_route_replays_by_direct_calls_on_two_cores(assets):
  """RGB through a Y model (chroma upscaled in the jit from constant taps), alpha beside an RGB model: the captured
  tiles replay as direct calls on both threads, and give the one-core image."""
  image = read_image(assets / "Set5" / "bird.png")[:60, :70]
  rgba = np.concatenate([image, image[..., :1]], axis=2)
  for model, picture in ((create_model("espcn", scale=3, channels=1), image),
                         (create_model("fsrcnn", scale=2, channels=3), rgba)):
    two, one = Runner(model, cores=2, tile=40), Runner(model, cores=1, tile=40)
    for _ in range(3):  # captured on the first call, replayed after
      np.testing.assert_array_equal(two(picture), one(picture))
    if internals.USABLE:
      assert all(jit.bound is not None for lane in two.pool.runners for jit, *_ in lane.jits.values())
