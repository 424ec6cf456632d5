"""Loading weights into zoo models: PyTorch state dicts (.pth, read without executing pickled code) and safetensors.

A .pth file since PyTorch 1.6 is a zip archive: `data.pkl` describes the state dict and refers to tensor storages
stored as raw files beside it. The pickle is read by an unpickler that knows only the handful of names a state dict
needs (OrderedDict, tensor and parameter rebuilders, storage types); anything else is refused before it can run.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from tinygrad import Tensor
from tinygrad.nn.state import get_state_dict

from ..errors import SuperTinyError, first_line

_STORAGE_DTYPES = {
  "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16, "BFloat16Storage": "bfloat16",
  "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
  "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
# Buffers that official checkpoints carry but that our models derive (or fix) themselves
_DERIVED_SUFFIXES = ("relative_position_index", "attn_mask")
_DERIVED_PREFIXES = ("sub_mean.", "add_mean.")
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")
_MAX_NESTING = 8  # wrappers around a state dict ({'params': ...}); a dict that holds itself would nest forever
_MAX_ELEMENTS = 1 << 28  # values in one file (1 GiB of float32): a bound on memory whatever the shapes claim
_MAX_PICKLE = 16 << 20  # bytes of data.pkl; it describes tensors, their data is stored beside it
_MAX_MEMO = 1 << 20  # pickle memo slots
_MAX_HEADER = 16 << 20  # bytes of safetensors JSON header; the format itself caps it at 100 MB
_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16", "I64": np.int64,
                       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32,
                       "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


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
  if not path.is_file():
    raise SuperTinyError(f"{path}: no such file")
  try:
    if not zipfile.is_zipfile(path):
      raise SuperTinyError(f"{path}: not a PyTorch zip checkpoint (re-save it with torch.save in PyTorch >= 1.6)")
    return _read_archive(path)
  except SuperTinyError:
    raise
  except Exception as exc:  # noqa: BLE001 (a damaged archive or pickle fails in many ways: each is this file's)
    raise SuperTinyError(f"{path}: unreadable checkpoint ({first_line(exc)})") from None


def _read_archive(path: Path) -> dict[str, np.ndarray]:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pickles:
      raise SuperTinyError(f"{path}: no data.pkl in the archive; not a PyTorch checkpoint")
    root = pickles[0][: -len("data.pkl")]
    if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE:  # zipfile stops at the declared size
      raise SuperTinyError(f"{path}: data.pkl declares {archive.getinfo(pickles[0]).file_size} bytes; a state "
                           f"dict's takes a few kilobytes (at most {_MAX_PICKLE} read)")
    data = archive.read(pickles[0])
    _check_opcodes(data, path)
    obj = _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    recipes = _flatten(_unwrap(obj, path))
    # every tensor checked against its storage before any byte is read: offsets, sizes and strides come from the
    # file, and numpy's strided views trust them (a stride past the data reads other memory)
    needed: dict[str, tuple[Any, int]] = {}  # storage key -> (element type, elements the tensors reach)
    total = 0
    for name, recipe in recipes.items():
      recipe.storage = _stored(archive, root, recipe.storage)
      total += _elements_of(recipe)
      if total > _MAX_ELEMENTS:
        raise SuperTinyError(f"{path}: its tensors hold over {_MAX_ELEMENTS:,} values; no zoo model needs that many")
      dtype, key, _count = recipe.storage
      if key in needed and needed[key][0] != dtype:
        raise SuperTinyError(f"{path}: storage {key} is read as two element types")
      needed[key] = (dtype, max(needed.get(key, (dtype, 0))[1], _extent(recipe, path, name)))
    storages = {key: _read_storage(archive, f"{root}data/{key}", count * _itemsize(dtype), path)
                for key, (dtype, count) in needed.items()}
    return {name: _materialise(recipe, storages[recipe.storage[1]]) for name, recipe in recipes.items()}


def _check_opcodes(data: bytes, path: Path) -> None:
  """Walk the pickle's opcodes without running them: a memo slot far past what a state dict uses (LONG_BINPUT
  1_000_000_000) makes Python's unpickler allocate a table of that many entries."""
  for opcode, arg, _pos in pickletools.genops(data):
    if opcode.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > _MAX_MEMO:
      raise SuperTinyError(f"{path}: data.pkl stores into memo slot {arg} (a state dict needs a few thousand)")


def _stored(archive: zipfile.ZipFile, root: str, storage: tuple[Any, str, int]) -> tuple[Any, str, int]:
  """A storage reference with its element count cut to what its file in the archive holds: the count in the
  pickle is only a claim."""
  dtype, key, count = storage
  try:
    available = archive.getinfo(f"{root}data/{key}").file_size // _itemsize(dtype)
  except KeyError:
    available = 0
  return dtype, key, min(count, available)


def _elements_of(recipe: _TensorRecipe) -> int:
  return int(np.prod(recipe.size, dtype=object)) if all(isinstance(n, int) for n in recipe.size) else 0


def _extent(recipe: _TensorRecipe, path: Path, name: str) -> int:
  """Elements of its storage a tensor reaches (one past its last element), after checking that its layout is one
  a state dict can hold: non-negative integers, no more elements than its storage, within the storage."""
  dtype, _key, count = recipe.storage
  numbers = (recipe.offset, *recipe.size, *recipe.stride)
  if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in numbers) or \
     len(recipe.size) != len(recipe.stride) or len(recipe.size) > 8:
    raise SuperTinyError(f"{path}: tensor {name!r} has an invalid layout (offset {recipe.offset!r}, size "
                         f"{recipe.size!r}, stride {recipe.stride!r})")
  elements = int(np.prod(recipe.size, dtype=object)) if recipe.size else 1
  if elements == 0:
    return 0
  last = recipe.offset + sum((n - 1) * step for n, step in zip(recipe.size, recipe.stride, strict=True))
  if last >= count or elements > count:
    raise SuperTinyError(f"{path}: tensor {name!r} ({'x'.join(map(str, recipe.size)) or 'scalar'}, offset "
                         f"{recipe.offset}) does not fit in its storage of {count} elements")
  return last + 1


def _itemsize(dtype: Any) -> int:
  return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _read_storage(archive: zipfile.ZipFile, member: str, nbytes: int, path: Path) -> np.ndarray:
  """The first `nbytes` of a storage file, the bytes its tensors use, and no more (a small file can declare
  gigabytes of compressed zeros); the file must hold them."""
  try:
    with archive.open(member) as f:
      raw = f.read(nbytes)
  except KeyError:
    raise SuperTinyError(f"{path}: storage {member} is missing from the archive") from None
  except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
    raise SuperTinyError(f"{path}: storage {member} is unreadable ({exc})") from None
  if len(raw) < nbytes:
    raise SuperTinyError(f"{path}: storage {member} holds {len(raw)} bytes, its tensors need {nbytes}")
  return np.frombuffer(raw, dtype=np.uint8)


def _elements(raw: np.ndarray, dtype: Any) -> np.ndarray:
  """Little-endian bytes as elements of `dtype`."""
  if dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 stored bits into float32's top half
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
  return raw.view(np.dtype(dtype).newbyteorder("<"))


def _materialise(recipe: _TensorRecipe, raw: np.ndarray) -> np.ndarray:
  flat = _elements(raw, recipe.storage[0])
  if not recipe.size:
    return np.array(flat[recipe.offset])
  if 0 in recipe.size:
    return np.zeros(recipe.size, flat.dtype)
  view = np.lib.stride_tricks.as_strided(flat[recipe.offset:], recipe.size,
                                         tuple(s * flat.itemsize for s in recipe.stride), writeable=False)
  return np.array(view)


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
  """(tensors, metadata) of a .safetensors file, its header checked against the file before any tensor is read:
  a bounded header of valid JSON, known element types, shapes of non-negative integers, and byte ranges that lie
  inside the data, match their shapes and do not overlap."""
  path = Path(path)
  if not path.is_file():
    raise SuperTinyError(f"{path}: no such file")

  def bad(reason: str) -> SuperTinyError:
    return SuperTinyError(f"{path}: not a valid safetensors file ({reason})")

  with open(path, "rb") as f:
    size = path.stat().st_size
    head = f.read(8)
    if len(head) < 8:
      raise bad("shorter than its 8-byte header length")
    length = int.from_bytes(head, "little")
    if length > min(_MAX_HEADER, size - 8):
      raise bad(f"header of {length} bytes in a file of {size}")
    try:
      header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
      raise bad(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
      raise bad("header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
      raise bad("__metadata__ is not a table of strings")
    data_size, spans, tensors = size - 8 - length, [], {}
    for name, entry in header.items():
      if not (isinstance(entry, dict) and entry.get("dtype") in _SAFETENSORS_DTYPES
              and isinstance(entry.get("shape"), list) and isinstance(entry.get("data_offsets"), list)
              and len(entry["data_offsets"]) == 2 and len(entry["shape"]) <= 8
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                      for v in (*entry["shape"], *entry["data_offsets"]))):
        raise bad(f"tensor {name!r} has an invalid entry")
      dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
      begin, end = entry["data_offsets"]
      need = int(np.prod(entry["shape"], dtype=object)) * _itemsize(dtype)
      if not begin <= end <= data_size or end - begin != need:
        raise bad(f"tensor {name!r} spans bytes {begin}..{end} of {data_size}, its shape needs {need}")
      spans.append((begin, end, name, dtype, entry["shape"]))
    spans.sort()
    for (_, end, first, *_), (begin, _, second, *_) in zip(spans, spans[1:], strict=False):
      if begin < end:
        raise bad(f"tensors {first!r} and {second!r} overlap")
    for begin, end, name, dtype, shape in spans:
      f.seek(8 + length + begin)
      raw = np.frombuffer(f.read(end - begin), dtype=np.uint8)
      tensors[name] = _elements(raw, dtype).reshape(shape).copy()
  return tensors, metadata


def _unwrap(obj: Any, path: Path) -> dict:
  """Training checkpoints nest the weights ({'params': ...}, {'state_dict': ...}); find the state dict."""
  for _depth in range(_MAX_NESTING + 1):
    if not isinstance(obj, dict) or any(isinstance(v, _TensorRecipe) for v in obj.values()):
      break
    if _depth == _MAX_NESTING:
      raise SuperTinyError(f"{path}: state dict nested more than {_MAX_NESTING} levels deep (or in itself)")
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
    state, _ = read_safetensors(source)
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
