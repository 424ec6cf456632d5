"""The paper study (`supertiny paper`): its settings grammar, its test loss as the paper defines it, BatchNorm with
batch statistics at test time against PyTorch's training mode, and the whole study end to end on a tiny budget."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from supertiny.cli import main
from supertiny.data.images import write_image
from supertiny.data.pairs import degrade
from supertiny.errors import SuperTinyError
from supertiny.models import create_model
from supertiny.models.weights import load_weights
from supertiny.paper import METHODS, SWITCHES, model_options, parse_setting, predict, scores

sys.path.insert(0, str(Path(__file__).parent / "models"))
import torch_reference as ref  # noqa: E402


def test_pixel_inaccuracy_is_the_root_of_the_papers_test_loss():
  # the paper: test loss 0.15 is an "average pixel inaccuracy" of 98 and 0.67 one of 208 (RMSE in 8-bit levels)
  rng = np.random.default_rng(0)
  for loss, inaccuracy in ((0.15, 98), (0.67, 208)):
    hr = np.zeros((40, 40, 3), np.uint8)
    # a prediction off by `inaccuracy` levels everywhere has the paper's test loss (to its two decimals)
    result = scores([np.full_like(hr, inaccuracy)], [hr])
    assert result["test_loss"] == pytest.approx(loss, abs=0.005)
    assert result["pixel_inaccuracy"] == pytest.approx(inaccuracy)
  sr, hr = (rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in range(2))
  assert scores([sr], [hr])["test_loss"] == pytest.approx(np.mean((sr / 255.0 - hr / 255.0) ** 2))


def test_settings_grammar():
  paper, ours = parse_setting("paper"), parse_setting("ours")
  assert paper == {s.name: s.paper for s in SWITCHES.values()}
  assert ours == {s.name: s.ours for s in SWITCHES.values()}
  assert paper["batchnorm"] == "batch" and paper["loss"] == "l2" and paper["clip"] == 1.0
  assert parse_setting("paper+loss") == paper | {"loss": "l1"}
  assert parse_setting("ours+batchnorm=running+clip=0.5") == ours | {"batchnorm": "running", "clip": 0.5}
  assert parse_setting("paper+augment=on")["augment"] is True
  for bad in ("mine", "paper+lr", "paper+batchnorm=sometimes", "paper+clip=high"):
    with pytest.raises(SuperTinyError):
      parse_setting(bad)


def test_paper_setting_puts_batchnorm_after_intermediate_layers_only():
  paper, ours = parse_setting("paper"), parse_setting("ours")
  for method, spec in METHODS.items():
    options = model_options(method, paper)
    assert options.get("batchnorm", False) is spec.batchnorm
    assert not model_options(method, ours).get("batchnorm", False)
  assert model_options("conv-transformer", paper) == {"patch": 20, "upsampler": "transposed", "residual": False}
  assert model_options("conv-transformer", ours) == {"patch": 4, "upsampler": "pixelshuffle", "residual": True,
                                                    "zero_output": True}
  assert model_options("espcn", ours) == {"variant": "paper", "batchnorm": False, "bicubic_residual": True}


def test_batch_statistics_at_test_time_match_pytorch_training_mode(tmp_path):
  # the paper's test setting as we read it: BatchNorm normalising each test batch by its own statistics
  torch.manual_seed(0)
  reference = ref.ESPCN(4, 3, paper=True)
  torch.save(reference.state_dict(), tmp_path / "weights.pth")
  model = create_model("espcn", scale=4, channels=3, variant="paper")
  load_weights(model, tmp_path / "weights.pth")
  rng = np.random.default_rng(1)
  images = [rng.integers(0, 256, (9, 11, 3), dtype=np.uint8) for _ in range(3)]
  ours = predict(model, images, batch_statistics=True, batch=3)
  reference.train()
  with torch.no_grad():
    x = torch.from_numpy(np.stack([i.transpose(2, 0, 1) / 255.0 for i in images]).astype(np.float32))
    theirs = np.round(np.clip(reference(x).numpy(), 0, 1) * 255).transpose(0, 2, 3, 1)
  assert not np.allclose(theirs, np.round(np.clip(reference.eval()(x).detach().numpy(), 0, 1) * 255)
                         .transpose(0, 2, 3, 1))  # the two modes differ on these weights: the check can fail
  difference = np.abs(np.stack(ours).astype(np.int16) - theirs)
  assert difference.max() <= 1 and (difference == 0).mean() > 0.99  # rounding ties may land either way


def _pairs(folder, count: int, lr_side: int) -> None:
  """`count` smooth RGB pairs (HR a bicubic-enlarged random 6x6 image, LR its MATLAB-bicubic x4 downscale)."""
  rng = np.random.default_rng(3)
  for side in ("HR", "LR"):
    (folder / side).mkdir(parents=True)
  for i in range(count):
    hr = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize(
      (lr_side * 4, lr_side * 4), Image.BICUBIC))
    write_image(folder / "HR" / f"{i:03d}.png", hr)
    write_image(folder / "LR" / f"{i:03d}.png", degrade(hr, 4))


def test_study_end_to_end_on_a_tiny_budget(tmp_path, capsys):
  data, out = tmp_path / "pairs", tmp_path / "study"
  _pairs(data, 5, 12)  # one {LR,HR} pool: 4 training pairs, the last for testing
  args = ["paper", "--data", str(data), "--out", str(out), "--steps", "2", "--quick",
          "--methods", "espcn", "--settings", "paper,ours+batchnorm=running", "--json"]
  assert main(args) == 0
  rows = json.loads(capsys.readouterr().out)
  with open(out / "results.csv", newline="") as f:
    assert list(csv.DictReader(f)) and list(rows[0]) == [
      "method", "setting", "steps", "target_steps", "test_loss", "pixel_inaccuracy", "psnr_y", "ssim_y", "psnr_rgb",
      "ssim_rgb", "params", "steps_per_s", "wall_s", "device"]
  assert [(r["method"], r["setting"]) for r in rows] == [
    ("nearest", ""), ("linear", ""), ("bicubic", ""), ("espcn", "paper"), ("espcn", "ours+batchnorm=running")]
  assert all(r["steps"] == 2 for r in rows[3:])
  # ESPCN C-64-64-48 x4 on RGB: convolutions 5x5, 3x3, 3x3 with biases, and BatchNorm's scale and shift in the paper's
  assert rows[3]["params"] == (3 * 25 * 64 + 64) + (64 * 9 * 64 + 64) + (64 * 9 * 48 + 48) + 2 * (64 + 64)
  assert rows[4]["params"] == rows[3]["params"]  # BatchNorm kept (evaluated on running statistics), a residual added
  # interpolation rows: scored on the held-out pair by the protocol, bicubic beating nearest on smooth images
  assert rows[2]["psnr_y"] > rows[0]["psnr_y"] and rows[2]["test_loss"] < rows[0]["test_loss"]
  for name in ("figure2_interpolation", "figure3_paper", "curves_paper", "figure3_ours+batchnorm=running"):
    assert Image.open(out / f"{name}.png").format == "PNG"
  assert (out / "results.md").read_text().count("\n| ") == len(rows) + 1
  assert (out / "results.md").read_text().count(" | CPU (1 core) |") == 2  # --quick trains on one core
  # finished runs are kept; the report is rebuilt from them without training
  stamp = (out / "runs" / "paper" / "espcn" / "last.safetensors").stat().st_mtime_ns
  assert main(args[:-1] + ["--report"]) == 0
  assert (out / "runs" / "paper" / "espcn" / "last.safetensors").stat().st_mtime_ns == stamp
  # a longer budget continues the runs only with --resume
  assert main(args[:-1] + ["--steps", "3"]) == 1
  assert "--resume" in capsys.readouterr().err
