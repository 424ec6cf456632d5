"""Weights loading: PyTorch checkpoints are read without running pickled code, and mismatches are explained."""

import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch_reference as ref
from tinygrad import Tensor
from tinygrad.nn.state import get_state_dict, safe_save

from supertiny.cli import main
from supertiny.errors import SuperTinyError
from supertiny.models import MODELS, create_model
from supertiny.models.weights import load_weights, read_torch_state_dict


class _Exploit:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_without_running_it(tmp_path):
  marker = tmp_path / "pwned"
  torch.save({"weight": torch.zeros(2), "payload": _Exploit(marker)}, tmp_path / "evil.pth")
  with pytest.raises(SuperTinyError, match="refusing to load"):
    read_torch_state_dict(tmp_path / "evil.pth")
  assert not marker.exists()


def test_legacy_and_garbage_files_are_refused(tmp_path):
  (tmp_path / "old.pth").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle, as pre-1.6 torch.save wrote
  with pytest.raises(SuperTinyError, match="not a PyTorch zip checkpoint"):
    read_torch_state_dict(tmp_path / "old.pth")


def test_wrapped_and_dataparallel_checkpoints_load(tmp_path):
  torch.manual_seed(1)
  reference = ref.ESPCN(3, 1).eval()
  wrapped = {"params_ema": OrderedDict(("module." + k, v) for k, v in reference.state_dict().items()), "iter": 5}
  torch.save(wrapped, tmp_path / "w.pth")
  model = create_model("espcn", scale=3, channels=1)
  load_weights(model, tmp_path / "w.pth")
  x = np.random.default_rng(0).random((1, 1, 6, 7), dtype=np.float32)
  with torch.no_grad():
    np.testing.assert_allclose(model(Tensor(x)).numpy(), reference(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_mismatched_checkpoints_say_what_differs(tmp_path):
  torch.save(ref.ESPCN(3, 1).state_dict(), tmp_path / "x3.pth")
  with pytest.raises(SuperTinyError, match=r"subpixel.weight has shape \(9, 32, 3, 3\).*expects \(16, 32, 3, 3\)"):
    load_weights(create_model("espcn", scale=4, channels=1), tmp_path / "x3.pth")
  with pytest.raises(SuperTinyError, match="missing .*unexpected"):
    load_weights(create_model("fsrcnn", scale=3, channels=1), tmp_path / "x3.pth")


def test_safetensors_round_trip(tmp_path):
  source = create_model("fsrcnn", scale=2, channels=1)
  safe_save(get_state_dict(source), str(tmp_path / "w.safetensors"))
  target = create_model("fsrcnn", scale=2, channels=1)
  load_weights(target, tmp_path / "w.safetensors")
  x = Tensor(np.random.default_rng(1).random((1, 1, 5, 6), dtype=np.float32))
  np.testing.assert_allclose(target(x).numpy(), source(x).numpy(), atol=1e-6)


def test_eval_with_pytorch_weights_and_zoo_listing(tmp_path, assets, capsys):
  torch.manual_seed(0)
  torch.save(ref.ESPCN(3, 1).state_dict(), tmp_path / "espcn.pth")
  code = main(["eval", "--model", "espcn", "--scale", "3", "--channels", "1", "--weights", str(tmp_path / "espcn.pth"),
               "--json", str(assets / "Set5")])
  out, _ = capsys.readouterr()
  assert code == 0 and json.loads(out)["datasets"]["Set5"]["images"] == 5

  assert main(["zoo", "--json", "--scale", "3", "--channels", "1"]) == 0
  rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
  assert set(rows) == set(MODELS)
  assert rows["srcnn"]["parameters"] == 57_281 and rows["espcn"]["parameters"] == 22_729
  assert rows["espcn"]["receptive_field"] == 9 and rows["swinir-light"]["receptive_field"] is None


# --- hostile layouts (issue #12): a pickle that names only allowed classes can still lie about its tensors ------

class _Storage:
  """Stands for a torch storage in a hand-made data.pkl: pickled as ('storage', FloatStorage, key, 'cpu', count)."""

  def __init__(self, key: str, count: int):
    self.key, self.count = key, count


class _Tensor:
  def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
    self.args = (storage, offset, size, stride, False, OrderedDict())

  def __reduce__(self):
    return (torch._utils._rebuild_tensor_v2, self.args)


def _hostile_pth(path, state, storages: dict[str, bytes], compress: int = 0) -> None:
  """A zip .pth like torch.save writes, with data.pkl and storage files as given."""
  import io
  import pickle
  import zipfile

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      return ("storage", torch.FloatStorage, obj.key, "cpu", obj.count) if isinstance(obj, _Storage) else None

  buffer = io.BytesIO()
  Pickler(buffer, protocol=2).dump(state)
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as archive:
    archive.writestr("archive/data.pkl", buffer.getvalue())
    for key, data in storages.items():
      archive.writestr(f"archive/data/{key}", data)


@pytest.mark.parametrize("offset,size,stride", [
  (0, (64, 1, 5, 5), (25, 25, 5, 1)),   # the full shape over a storage of one float: read past the data
  (0, (4,), (2 ** 40,)),                # a stride far outside the process's memory (was SIGSEGV)
  (-3, (1,), (1,)),                     # a negative offset
  (0, (2, 2), (-1, 1)),                 # a negative stride
  (1, (1,), (1,)),                      # an offset past the end
])
def test_tensors_outside_their_storage_are_refused(tmp_path, offset, size, stride):
  storage = _Storage("0", 1)
  _hostile_pth(tmp_path / "oob.pth", OrderedDict(w=_Tensor(storage, offset, size, stride)),
               {"0": np.ones(1, np.float32).tobytes()})
  with pytest.raises(SuperTinyError, match="oob.pth: tensor 'w'"):
    read_torch_state_dict(tmp_path / "oob.pth")


def test_a_storage_shorter_than_declared_is_refused(tmp_path):
  _hostile_pth(tmp_path / "short.pth", OrderedDict(w=_Tensor(_Storage("0", 4), 0, (4,), (1,))),
               {"0": np.ones(2, np.float32).tobytes()})
  with pytest.raises(SuperTinyError, match="does not fit in its storage of 2 elements"):
    read_torch_state_dict(tmp_path / "short.pth")


def test_a_state_dict_that_holds_itself_is_refused_at_once(tmp_path):
  state: dict = {}
  state["params"] = state
  torch.save(state, tmp_path / "loop.pth")
  with pytest.raises(SuperTinyError, match="nested more than"):
    read_torch_state_dict(tmp_path / "loop.pth")


def test_only_the_bytes_the_tensors_use_are_decompressed(tmp_path, monkeypatch):
  """A small file may declare a storage of gigabytes of zeros: read what the shapes need, no more."""
  import zipfile

  values = np.arange(16, dtype=np.float32)
  storage = values.tobytes() + bytes(8 * 2 ** 20)  # 8 MiB of zeros behind the 64 bytes used
  _hostile_pth(tmp_path / "bomb.pth", OrderedDict(w=_Tensor(_Storage("0", len(storage) // 4), 0, (4, 4), (4, 1))),
               {"0": storage}, compress=1)
  assert (tmp_path / "bomb.pth").stat().st_size < 100_000
  asked = []
  original = zipfile.ZipExtFile.read
  monkeypatch.setattr(zipfile.ZipExtFile, "read", lambda self, n=-1: asked.append((self.name, n)) or original(self, n))
  state = read_torch_state_dict(tmp_path / "bomb.pth")
  np.testing.assert_array_equal(state["w"], values.reshape(4, 4))
  assert [n for name, n in asked if name == "archive/data/0"] == [64]


def test_a_missing_weights_file_is_named_as_missing(tmp_path):
  with pytest.raises(SuperTinyError, match="no such file"):
    read_torch_state_dict(tmp_path / "nothere.pth")


def _safetensors(path, header: bytes, data: bytes = b"") -> None:
  path.write_bytes(len(header).to_bytes(8, "little") + header + data)


@pytest.mark.parametrize("case", ["truncated", "huge header", "not utf-8", "not json", "outside", "wrong size",
                                  "overlap", "negative", "unknown dtype", "bad metadata"])
def test_hostile_safetensors_are_refused_in_one_line(tmp_path, case, capsys):
  from supertiny.models.weights import read_safetensors

  path = tmp_path / "w.safetensors"
  entry = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
  headers = {
    "huge header": None, "not utf-8": b"\xff\xfe{}", "not json": b"{'a': 1}",
    "outside": json.dumps({"a": {**entry, "data_offsets": [0, 1 << 40]}}).encode(),
    "wrong size": json.dumps({"a": {**entry, "shape": [1 << 20, 1 << 20]}}).encode(),
    "overlap": json.dumps({"a": entry, "b": {**entry, "data_offsets": [8, 24]}}).encode(),
    "negative": json.dumps({"a": {**entry, "shape": [-2, -2]}}).encode(),
    "unknown dtype": json.dumps({"a": {**entry, "dtype": "OBJ"}}).encode(),
    "bad metadata": json.dumps({"__metadata__": {"k": 1}, "a": entry}).encode(),
  }
  if case == "truncated":
    path.write_bytes(b"\x10\x00\x00")
  elif case == "huge header":
    path.write_bytes((1 << 62).to_bytes(8, "little") + b"{}")
  else:
    _safetensors(path, headers[case], bytes(32))
  with pytest.raises(SuperTinyError, match="not a valid safetensors file"):
    read_safetensors(path)
  # the same file through the command line: one line, exit 1 (it was a traceback)
  assert main(["upscale", "--model", str(path), str(path), "-o", str(tmp_path / "out.png")]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and str(path) in err[0]


def test_valid_safetensors_read_like_tinygrad_writes_them(tmp_path):
  from supertiny.models.weights import read_safetensors

  tensors = {"a": Tensor([[1.5, -2.0]]), "b": Tensor([1, 2, 3], dtype="int32"), "c": Tensor([0.25], dtype="half")}
  safe_save(tensors, str(tmp_path / "ok.safetensors"), metadata={"k": "v"})
  arrays, meta = read_safetensors(tmp_path / "ok.safetensors")
  assert meta == {"k": "v"}
  for key, tensor in tensors.items():
    np.testing.assert_array_equal(arrays[key], tensor.numpy())
    assert arrays[key].dtype == tensor.numpy().dtype
