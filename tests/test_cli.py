"""`supertiny eval` and `supertiny demo` as a user runs them: output formats, paired mode and bad input."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tinygrad import Tensor

from supertiny.checkpoint import model_from_checkpoint, read_checkpoint
from supertiny.cli import main
from supertiny.data.images import read_image, write_image
from supertiny.evaluate import degrade
from supertiny.ops import modcrop
from supertiny.pretrained import default_model, shipped_for


def run(capsys, *argv):
  code = main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


def test_eval_json_is_one_document(capsys, assets):
  code, out, err = run(capsys, "eval", "--model", "bicubic", "--scale", 4, "--json", "--per-image", assets / "Set5")
  assert code == 0
  doc = json.loads(out)
  assert doc["model"] == "bicubic" and doc["scale"] == 4
  set5 = doc["datasets"]["Set5"]
  assert set5["images"] == 5 and set5["psnr"] == pytest.approx(28.42, abs=0.02)
  assert set(set5["per_image"]) == {"baby", "bird", "butterfly", "head", "woman"}
  assert set5["psnr"] == pytest.approx(np.mean([v["psnr"] for v in set5["per_image"].values()]))


def test_eval_table_and_rgb_space(capsys, assets):
  code, out, _ = run(capsys, "eval", "--scale", 3, "--per-image", assets / "Set5")
  assert code == 0 and "Set5 (5 images)" in out and "butterfly" in out and "30.39" in out
  code, out, _ = run(capsys, "eval", "--scale", 3, "--space", "rgb", "--json", assets / "Set5")
  assert json.loads(out)["datasets"]["Set5"]["psnr"] < 30.0  # RGB PSNR sits well below Y PSNR


def test_interpolation_baselines_rank_as_expected(capsys, assets):
  scores = {}
  for model in ("nearest", "bilinear", "bicubic"):
    code, out, _ = run(capsys, "eval", "--model", model, "--scale", 2, "--json", assets / "Set5")
    assert code == 0
    scores[model] = json.loads(out)["datasets"]["Set5"]["psnr"]
  assert scores["nearest"] < scores["bilinear"] < scores["bicubic"]


def test_paired_mode_matches_on_the_fly_degradation(capsys, assets, tmp_path):
  lr_dir = tmp_path / "lr"
  lr_dir.mkdir()
  for path in sorted((assets / "Set5").iterdir()):
    write_image(lr_dir / path.name, degrade(modcrop(read_image(path), 3), 3))
  _, paired, _ = run(capsys, "eval", "--scale", 3, "--json", "--lr-dir", lr_dir, assets / "Set5")
  _, direct, _ = run(capsys, "eval", "--scale", 3, "--json", assets / "Set5")
  assert json.loads(paired)["datasets"]["Set5"]["psnr"] == pytest.approx(json.loads(direct)["datasets"]["Set5"]["psnr"])

  write_image(lr_dir / "bird.png", np.zeros((10, 10, 3), np.uint8))
  code, _, err = run(capsys, "eval", "--scale", 3, "--lr", lr_dir, assets / "Set5")
  assert code == 1 and "bird.png" in err and "does not match" in err and "--lr-dir" in err  # the old spelling warns


def test_alpha_and_16bit_images_are_scored_like_their_8bit_rgb(capsys, assets, tmp_path):
  rgb = read_image(assets / "Set5" / "head.png")
  (tmp_path / "rgb").mkdir()
  (tmp_path / "rgba").mkdir()
  (tmp_path / "deep").mkdir()
  write_image(tmp_path / "rgb" / "head.png", rgb)
  write_image(tmp_path / "rgba" / "head.png", np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 200, np.uint8)], 2))
  write_image(tmp_path / "deep" / "head.png", rgb.astype(np.uint16) * 257)
  _, out, _ = run(capsys, "eval", "--scale", 2, "--json", tmp_path / "rgb", tmp_path / "rgba", tmp_path / "deep")
  scores = {k: v["psnr"] for k, v in json.loads(out)["datasets"].items()}
  assert scores["rgba"] == scores["rgb"]
  assert scores["deep"] == pytest.approx(scores["rgb"], abs=0.05)  # degraded at 16 bits, scored at 8


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "small", "lr-count"])
def test_bad_input_gives_one_line_error_and_nonzero_exit(capsys, assets, tmp_path, case):
  folder = tmp_path / "ds"
  folder.mkdir()
  argv = ["eval", "--scale", "4", str(folder)]
  culprit = str(folder)
  if case == "missing":
    folder.rmdir()
  elif case == "corrupt":
    shutil.copy(assets / "Set5" / "bird.png", folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    culprit = str(folder / "broken.png")
  elif case == "small":
    write_image(folder / "tiny.png", np.zeros((16, 40, 3), np.uint8))
    culprit = str(folder / "tiny.png")
  elif case == "lr-count":
    shutil.copy(assets / "Set5" / "bird.png", folder)
    argv = ["eval", "--scale", "4", "--lr-dir", str(folder), "--lr-dir", str(folder), str(folder)]
    culprit = "--lr-dir"
  code, out, err = run(capsys, *argv)
  assert code == 1
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("supertiny: error:") and culprit in lines[0]
  assert out == ""


def test_unknown_model_is_refused(capsys, assets):
  code, _, err = run(capsys, "eval", "--model", "nope", "--scale", 2, assets / "Set5")
  assert code == 1 and "unknown model 'nope'" in err and "bicubic" in err


def test_console_script_end_to_end(tmp_path, assets):
  done = subprocess.run([sys.executable, "-m", "supertiny", "eval", "--scale", "2", "--json", str(tmp_path / "x")],
                        capture_output=True, text=True)
  assert done.returncode == 1 and "Traceback" not in done.stderr and "no such folder" in done.stderr
  done = subprocess.run([sys.executable, "-m", "supertiny", "demo", "-o", str(tmp_path / "out")],
                        capture_output=True, text=True, cwd=tmp_path)
  assert done.returncode == 0, done.stderr
  default = Path(default_model(4)).stem                # the best shipped x4 weights by validation
  assert f"with {default} x4" in done.stdout
  psnr = float(done.stdout.split("PSNR ")[1].split()[0])
  sr = read_image(tmp_path / "out" / f"butterfly_x4_{default}.png")
  assert sr.shape == (256, 256, 3) and sr.dtype == np.uint8
  assert psnr > bicubic_psnr_of_the_sample(4) + 0.5    # they beat bicubic on the sample (22.93 against 22.10)


def bicubic_psnr_of_the_sample(scale: int) -> float:
  from supertiny.cli import SAMPLE
  from supertiny.evaluate import load_pair, score
  from supertiny.infer import upscale_array
  from supertiny.models import create_model

  lr, hr = load_pair(SAMPLE, scale)
  return score(upscale_array(create_model("bicubic", scale=scale, channels=None), lr), hr, scale)[0]


def test_export_keeps_the_weights_and_sets_the_border(capsys, tmp_path):
  from supertiny import cli
  from supertiny.models.base import BORDERS
  assert cli.BORDERS == BORDERS  # the option's choices are the models' own
  source = Path(shipped_for("espcn", 2, 1)[0]["path"])
  code, out, _ = run(capsys, "export", source, tmp_path / "mirrored.safetensors", "--border", "symmetric")
  assert code == 0 and "border symmetric" in out
  meta_in, weights_in = read_checkpoint(source)
  meta_out, weights_out = read_checkpoint(tmp_path / "mirrored.safetensors")
  assert sorted(weights_in) == sorted(weights_out) and not any(k.startswith("optimizer/") for k in weights_out)
  assert all(np.array_equal(weights_in[k].numpy(), weights_out[k].numpy()) for k in weights_in)
  assert meta_out["options"] == {**meta_in.get("options", {}), "border": "symmetric"}
  assert {k: v for k, v in meta_out.items() if k != "options"} == {k: v for k, v in meta_in.items() if k != "options"}
  # the exported model on an image is the zero-padded one on the image mirrored by numpy, cut back
  zeros, _ = model_from_checkpoint(source)
  mirrored, _ = model_from_checkpoint(tmp_path / "mirrored.safetensors")
  x = np.random.default_rng(0).random((1, 1, 12, 9), dtype=np.float32)
  pad = zeros.receptive_field
  reference = zeros(Tensor(np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric"))).numpy()
  np.testing.assert_allclose(mirrored(Tensor(x)).numpy(), reference[..., 2 * pad:-2 * pad, 2 * pad:-2 * pad],
                             atol=1e-5, rtol=0)
  code, _, _ = run(capsys, "export", tmp_path / "mirrored.safetensors", tmp_path / "back.safetensors",
                   "--border", "zeros")
  assert code == 0 and read_checkpoint(tmp_path / "back.safetensors")[0]["options"]["border"] == "zeros"
