"""supertiny.runtime.replay: a FastJit's direct kernel calls give TinyJit's own replay bit for bit (the reference), read
their input slots' current values, and fall back to TinyJit's replay where a binding would not hold. Split
inference and training steps, which replay through FastJits, are checked against PyTorch in test_cores.py."""

import numpy as np
import pytest
from tinygrad import Device, Tensor, TinyJit, dtypes

from supertiny.models import create_model
from supertiny.runtime import replay
from supertiny.runtime.internals import input_slot, write_into
from supertiny.runtime.replay import FastJit

pytestmark = pytest.mark.fast_path

pytestmark = pytest.mark.skipif(Device.DEFAULT != "CPU", reason="direct calls bind CPU kernels only")


def both(fxn, shape: tuple[int, ...], calls: int = 4) -> tuple[FastJit, list[np.ndarray], list[np.ndarray]]:
  """`fxn` under a FastJit and under a TinyJit, each on its own input slot refilled with new values every call."""
  fast, tiny = FastJit(fxn), TinyJit(fxn)
  slots = [input_slot(shape, dtypes.float32, "CPU") for _ in range(2)]
  got, want = [], []
  for k in range(calls):
    values = np.random.default_rng(k).random(shape, dtype=np.float32)
    got.append(fast(write_into(slots[0], values)).numpy())
    want.append(tiny(write_into(slots[1], values)).numpy())
  return fast, got, want


def test_model_forward_replays_bit_for_bit():
  model = create_model("edsr-baseline", scale=2, channels=3, blocks=1, width=8)  # a constant from Python values
  fast, got, want = both(lambda t: model(t).realize(), (1, 3, 9, 11))
  assert fast.bound is not None, "the capture should bind to direct calls on the CPU"
  for g, w in zip(got, want, strict=True):
    np.testing.assert_array_equal(g, w)
  assert not np.array_equal(got[2], got[3])  # the bound calls read the slot's new values


def test_threaded_kernels_run_once_per_thread_index():
  # a million elements: tinygrad splits this kernel over its CPU threads (a `core_id` argument)
  fast, got, want = both(lambda t: (t * 2 + 1).exp().contiguous().realize(), (1_000_000,))
  assert fast.bound is not None
  np.testing.assert_array_equal(got[-1], want[-1])


def test_other_inputs_take_tinygrad_replay():
  fast = FastJit(lambda t: (t * 3).contiguous().realize())
  slot = input_slot((64,), dtypes.float32, "CPU")
  for _ in range(3):
    fast(write_into(slot, np.ones(64, dtype=np.float32)))
  assert fast.bound is not None
  other = Tensor(np.arange(64, dtype=np.float32)).realize()
  np.testing.assert_array_equal(fast(other).numpy(), np.arange(64, dtype=np.float32) * 3)


def test_tinygrad_replay_when_direct_is_off(monkeypatch):
  monkeypatch.setattr(replay, "DIRECT", False)
  fast, got, want = both(lambda t: (t + 1).contiguous().realize(), (16,))
  assert fast.bound is None
  np.testing.assert_array_equal(got[-1], want[-1])
