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
