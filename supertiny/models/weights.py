"""Loading weights into zoo models: PyTorch state dicts (.pth, read without executing pickled code) and safetensors.

A .pth file since PyTorch 1.6 is a zip archive: `data.pkl` describes the state dict and refers to tensor storages
stored as raw files beside it. The pickle is read by an unpickler that knows only the handful of names a state dict
needs (OrderedDict, tensor and parameter rebuilders, storage types); anything else is refused before it can run.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.state import get_state_dict, safe_load

from ..errors import SuperTinyError

_STORAGE_DTYPES = {
  "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
  "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# Buffers that official checkpoints carry but that our models derive (or fix) themselves
_DERIVED_SUFFIXES = ("relative_position_index", "attn_mask")
_DERIVED_PREFIXES = ("sub_mean.", "add_mean.")
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")


class _StorageType:
  def __init__(self, dtype):
    self.dtype = dtype


class _TensorRecipe:
  """What _rebuild_tensor_v2 asks for; turned into an array once the storages are read."""

  def __init__(self, storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)


def _rebuild_tensor(storage, offset, size, stride, *_ignored) -> _TensorRecipe:
  return _TensorRecipe(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
  return data


class _RestrictedUnpickler(pickle.Unpickler):
  def __init__(self, file, source: str):
    super().__init__(file)
    self.source = source

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) == ("collections", "OrderedDict"):
      return OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(_STORAGE_DTYPES[name])
    raise SuperTinyError(f"{self.source}: refusing to load {module}.{name} (only plain state dicts are read)")

  def persistent_load(self, pid: Any) -> Any:
    # ('storage', storage type, key, location, element count)
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
      raise SuperTinyError(f"{self.source}: unexpected storage reference {pid!r}")
    return (pid[1].dtype, str(pid[2]), int(pid[4]))


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
  """The tensors of a PyTorch .pth/.pt file as numpy arrays, without executing any pickled code."""
  path = Path(path)
  if not zipfile.is_zipfile(path):
    raise SuperTinyError(f"{path}: not a PyTorch zip checkpoint (re-save it with torch.save in PyTorch >= 1.6)")
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
      raise SuperTinyError(f"{path}: no data.pkl in the archive; not a PyTorch checkpoint")
    root = pickles[0][: -len("data.pkl")]
    with archive.open(pickles[0]) as f:
      try:
        obj = _RestrictedUnpickler(f, str(path)).load()
      except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise SuperTinyError(f"{path}: unreadable checkpoint ({exc})") from exc
    storages: dict[str, bytes] = {}

    def materialise(recipe: _TensorRecipe) -> np.ndarray:
      dtype, key, _count = recipe.storage
      if key not in storages:
        storages[key] = archive.read(f"{root}data/{key}")
      raw = storages[key]
      if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 stored bits into float32's top half
        flat = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
      else:
        flat = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
      item = flat.itemsize
      view = np.lib.stride_tricks.as_strided(flat[recipe.offset:], recipe.size, tuple(s * item for s in recipe.stride))
      return np.array(view)

    return {k: materialise(v) for k, v in _flatten(_unwrap(obj, path)).items()}


def _unwrap(obj: Any, path: Path) -> dict:
  """Training checkpoints nest the weights ({'params': ...}, {'state_dict': ...}); find the state dict."""
  while isinstance(obj, dict) and not any(isinstance(v, _TensorRecipe) for v in obj.values()):
    key = next((k for k in _WRAPPER_KEYS if k in obj), None)
    if key is None:
      raise SuperTinyError(f"{path}: no state dict found (top-level keys: {', '.join(map(str, obj))})")
    obj = obj[key]
  if not isinstance(obj, dict):
    raise SuperTinyError(f"{path}: holds a {type(obj).__name__}, not a state dict")
  return obj


def _flatten(state: dict) -> dict[str, _TensorRecipe]:
  return {str(k): v for k, v in state.items() if isinstance(v, _TensorRecipe)}


def _normalise(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  out = {}
  for key, value in state.items():
    key = key.removeprefix("module.")  # saved from DataParallel
    if key.endswith(_DERIVED_SUFFIXES) or key.startswith(_DERIVED_PREFIXES):
      continue
    out[key] = value
  return out


def load_weights(model: Any, source: str | Path | dict[str, np.ndarray]) -> None:
  """Load a state dict (.pth, .pt, .safetensors, or a dict of arrays) into `model`, checking every name and shape."""
  label = str(source) if not isinstance(source, dict) else "state dict"
  if isinstance(source, dict):
    state = dict(source)
  elif Path(source).suffix == ".safetensors":
    state = {k: v.numpy() for k, v in safe_load(str(source)).items()}
  else:
    state = read_torch_state_dict(source)
  state = _normalise(state)
  targets = get_state_dict(model)
  missing = sorted(set(targets) - set(state))
  unexpected = sorted(set(state) - set(targets))
  if missing or unexpected:
    parts = []
    if missing:
      parts.append(f"missing {', '.join(missing[:4])}" + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""))
    if unexpected:
      parts.append(f"unexpected {', '.join(unexpected[:4])}"
                   + (f" and {len(unexpected) - 4} more" if len(unexpected) > 4 else ""))
    raise SuperTinyError(f"{label}: does not fit {getattr(model, 'name', 'the model')} ({'; '.join(parts)})")
  for key, target in targets.items():
    value = np.asarray(state[key])
    if tuple(value.shape) != tuple(target.shape):
      raise SuperTinyError(f"{label}: {key} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")
    target.replace(Tensor(value.astype(np.float32) if value.dtype.kind == "f" else value, device=target.device,
                          dtype=target.dtype)).realize()
