"""Hostile but realistic input (issue #22): each defect found by trying to break SuperTiny, as a test that failed
before the fix. The .pth and .safetensors readers' own cases are in tests/models/test_weights.py, the fuzzing of
every reader in tests/test_fuzz.py."""

import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from supertiny.cli import main
from supertiny.data.datasets import PatchSampler
from supertiny.data.images import read_image, write_image
from supertiny.errors import SuperTinyError
from supertiny.train import Run, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]


def _png_header_only(path: Path, width: int, height: int) -> None:
  """A 70-byte PNG whose header declares width x height (a decompression bomb's first line)."""
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000)))
                   + chunk(b"IEND", b""))


def _tiff_header_only(path: Path, width: int, height: int) -> None:
  """A few-hundred-byte TIFF whose tags declare width x height."""
  tifffile.imwrite(path, np.zeros((16, 16), np.uint8), compression="zlib")
  with tifffile.TiffFile(path, mode="r+b") as tif:
    tif.pages[0].tags["ImageWidth"].overwrite(width)
    tif.pages[0].tags["ImageLength"].overwrite(height)


def _small_rgb(path: Path, size=(24, 20), seed=0) -> np.ndarray:
  image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
  write_image(path, image)
  return image


# -- 3: a failing batch thread ends train instead of hanging it ------------------------------------------------

def test_a_failing_batch_thread_is_raised_in_the_training_loop():
  class Broken(PatchSampler):
    def __init__(self):
      pass

    def batch_at(self, step):
      if step == 2:
        raise TypeError("bad batch")
      return np.zeros(1), np.zeros(1)

  seen, failure = [], []

  def consume():
    try:
      for step, _lr, _hr in Broken().prefetch(0, 10):
        seen.append(step)
    except TypeError as exc:
      failure.append(exc)
  worker = threading.Thread(target=consume, daemon=True)
  worker.start()
  worker.join(timeout=10)
  assert not worker.is_alive(), "the loop waited forever for a batch"
  assert seen == [0, 1] and str(failure[0]) == "bad batch"


# -- 4: one bad file does not stop a batch; sizes are checked from the header -----------------------------------

def test_bombs_and_memory_errors_cost_one_line_each_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
  folder = tmp_path / "in"
  folder.mkdir()
  _png_header_only(folder / "a_bomb.png", 60000, 60000)
  _tiff_header_only(folder / "b_bomb.tif", 60000, 60000)
  _small_rgb(folder / "c_memory.png")
  _small_rgb(folder / "d_good.png")
  import supertiny.upscaling as upscaling

  real = upscaling.read_raster

  def read(path):
    if Path(path).name == "c_memory.png":
      raise MemoryError
    return real(path)
  monkeypatch.setattr(upscaling, "read_raster", read)
  assert main(["upscale", "--model", "bicubic", "--scale", "2", str(folder), "-o", str(tmp_path / "out")]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 4, err
  assert "a_bomb.png: 60000x60000 is 3600 megapixels, over the limit" in err[0]
  assert "b_bomb.tif: 60000x60000 is 3600 megapixels" in err[1]
  assert "c_memory.png: out of memory" in err[2]
  assert err[3] == "supertiny: 3 of 4 file(s) failed"
  assert read_image(tmp_path / "out" / "d_good.png").shape == (48, 40, 3)


def test_the_pixel_limit_is_an_option(tmp_path, capsys, monkeypatch):
  monkeypatch.delenv("SUPERTINY_MAX_PIXELS", raising=False)
  _small_rgb(tmp_path / "x.png")
  for reader in (read_image,):
    monkeypatch.setenv("SUPERTINY_MAX_PIXELS", "100")
    with pytest.raises(SuperTinyError, match=r"x.png: 20x24 is 0 megapixels, over the limit"):
      reader(tmp_path / "x.png")
  monkeypatch.delenv("SUPERTINY_MAX_PIXELS")
  args = ["upscale", "--model", "bicubic", "--scale", "2", str(tmp_path / "x.png"), "-o"]
  assert main([*args, str(tmp_path / "small.png"), "--max-pixels", "400"]) == 1
  assert "over the limit" in capsys.readouterr().err
  monkeypatch.delenv("SUPERTINY_MAX_PIXELS")  # main() set it for worker processes
  assert main([*args, str(tmp_path / "big.png"), "--max-pixels", "480"]) == 0


# -- 5: non-finite pixels are nodata: filled before the model, NaN only where they map --------------------------

@pytest.mark.parametrize("model", ["bicubic", "espcn_x2_y"])
def test_an_inf_pixel_stays_where_it_is(tmp_path, model):
  rng = np.random.default_rng(3)
  clean = rng.random((40, 48, 1)).astype(np.float32)
  hurt = clean.copy()
  hurt[20, 30, 0] = np.inf
  hurt[5, 6, 0] = np.nan
  tifffile.imwrite(tmp_path / "in.tif", hurt[..., 0])
  tifffile.imwrite(tmp_path / "clean.tif", clean[..., 0])
  args = ["upscale", "--model", model, "--scale", "2"]
  assert main([*args, str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif")]) == 0
  assert main([*args, str(tmp_path / "clean.tif"), "-o", str(tmp_path / "ref.tif")]) == 0
  out, ref = tifffile.imread(tmp_path / "out.tif"), tifffile.imread(tmp_path / "ref.tif")
  bad = ~np.isfinite(out)
  expected = np.zeros_like(bad)
  expected[40:42, 60:62] = expected[10:12, 12:14] = True
  np.testing.assert_array_equal(bad, expected)
  assert np.isnan(out[bad]).all()
  # away from the holes (beyond the model's reach) the output is the clean image's
  far = np.ones((40, 48), bool)
  for y, x in ((20, 30), (5, 6)):
    far[max(0, y - 6):y + 7, max(0, x - 6):x + 7] = False
  far = far.repeat(2, 0).repeat(2, 1)
  np.testing.assert_array_equal(out[far], ref[far])


# -- 6: SIGTERM and SIGINT stop promptly, clean up and end the workers -------------------------------------------

def _start_upscale(tmp_path: Path, jobs: int) -> tuple[subprocess.Popen, Path]:
  folder, out = tmp_path / "in", tmp_path / "out"
  folder.mkdir()
  for i in range(40):
    _small_rgb(folder / f"f{i:02d}.png", (320, 320), seed=i)
  env = {**os.environ, "SUPERTINY_CORES": "1"}
  command = [sys.executable, "-m", "supertiny", "upscale", "--model", "espcn", "--channels", "1", "--scale", "4",
             "--jobs", str(jobs), str(folder), "-o", str(out)]
  process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
  deadline = time.time() + 120
  while time.time() < deadline and not (out.exists() and any(out.glob("*.png"))):
    time.sleep(0.2)  # wait until files are being written
  assert out.exists(), process.stderr.read() if process.poll() is not None else "no output after 120 s"
  return process, out


def _children(pid: int) -> list[int]:
  found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
  return [int(p) for p in found]


def _gone(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  return Path(f"/proc/{pid}/status").exists() and "zombie" in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("how", ["SIGTERM to the parent", "SIGINT to the parent", "Ctrl-C to the process group"])
def test_signals_stop_the_batch_clean(tmp_path, how):
  process, out = _start_upscale(tmp_path, jobs=2)
  workers = _children(process.pid)
  # what a worker ended between creating its temporary output and guarding it leaves (a race, planted here)
  (out / ".f39.png.k2x_9q0z.png").write_bytes(b"half")
  began = time.time()
  if how.endswith("to the parent"):
    process.send_signal(signal.SIGTERM if how.startswith("SIGTERM") else signal.SIGINT)
  else:
    os.killpg(process.pid, signal.SIGINT)
  _, err = process.communicate(timeout=60)
  assert time.time() - began < 20
  assert process.returncode == (143 if how.startswith("SIGTERM") else 130)
  assert "Traceback" not in err and err.strip().splitlines()[-1] in ("supertiny: terminated", "supertiny: interrupted")
  assert len(list(out.glob("*.png"))) < 40
  assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "temporary files left"
  deadline = time.time() + 10
  while time.time() < deadline and not all(_gone(pid) for pid in workers):
    time.sleep(0.2)
  assert all(_gone(pid) for pid in workers), "worker processes left running"


# -- 7: a run folder is locked while a train writes to it --------------------------------------------------------

def test_a_second_train_on_the_same_folder_is_refused(tmp_path):
  run = Run(tmp_path / "run")
  config = TrainConfig(model="espcn", scale=2, train=[str(tmp_path / "nowhere")], steps=1)
  with run.locked():
    with pytest.raises(SuperTinyError, match="another `supertiny train` is writing to this run folder"):
      train(config, tmp_path / "run", progress=False)
  with pytest.raises(SuperTinyError, match="nowhere: no such folder"):  # free again: it gets as far as the data
    train(config, tmp_path / "run", progress=False)


def test_the_lock_dies_with_a_killed_run_and_stale_temporary_files_go(tmp_path):
  folder = tmp_path / "run"
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom supertiny.train import Run\n"
                             "with Run(sys.argv[1]).locked():\n  print('locked', flush=True)\n  time.sleep(600)",
                             str(folder)], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(SuperTinyError, match="another"):
    with Run(folder).locked():
      pass
  holder.kill()
  holder.wait()
  stale = [folder / ".last.safetensors.x1y2.tmp", folder / ".curves.png.tmp", folder / "metrics.tmp"]
  for path in stale:
    path.write_bytes(b"half")
  with Run(folder).locked():
    assert not any(path.exists() for path in stale)


# -- 8: config values of the wrong type get one line naming the key ---------------------------------------------

@pytest.mark.parametrize(("line", "message"), [
  ('steps = "20"', "steps must be an integer, got '20'"),
  ("steps = 2.5", "steps must be an integer, got 2.5"),
  ('lr = "0.001"', "lr must be a number, got '0.001'"),
  ('seed = "abc"', "seed must be an integer, got 'abc'"),
  ("[options]\nx = 1\n[other]", "unknown setting(s) other"),
  ("options = 3", "options must be a table, got 3"),
])
def test_config_values_are_checked_by_type(tmp_path, capsys, line, message):
  config = tmp_path / "c.toml"
  config.write_text(f'model = "espcn"\nscale = 2\ntrain = ["x"]\n{line}\n')
  assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f"supertiny: error: {config}: {message}"]


def test_a_single_training_folder_may_be_a_string(tmp_path):
  config = TrainConfig.from_dict({"model": "espcn", "scale": 2, "train": "tdata", "channels": "y"})
  assert config.train == ["tdata"] and config.channels == 1


# -- 9: smaller holes --------------------------------------------------------------------------------------------

def test_the_output_may_not_be_the_input(tmp_path, capsys):
  original = _small_rgb(tmp_path / "x.png")
  assert main(["upscale", "--model", "bicubic", "--scale", "2", "--overwrite", str(tmp_path / "x.png"), "-o",
               str(tmp_path / "x.png")]) == 1
  assert "is the input itself" in capsys.readouterr().err
  np.testing.assert_array_equal(read_image(tmp_path / "x.png"), original)


@pytest.mark.parametrize(("inputs", "output", "message"), [
  (["x.png"], "out.gif", "cannot write .gif files"),
  (["x.png", "y.png"], "multi.png", "2 outputs need a folder, not a file name"),
])
def test_output_names_that_cannot_be_written_are_refused(tmp_path, capsys, inputs, output, message):
  for name in inputs:
    _small_rgb(tmp_path / name)
  code = main(["upscale", "--model", "bicubic", "--scale", "2", *(str(tmp_path / n) for n in inputs), "-o",
               str(tmp_path / output)])
  assert code == 1 and message in capsys.readouterr().err
  assert not (tmp_path / output).exists()


def test_weights_beside_a_checkpoint_are_refused(tmp_path, capsys):
  from supertiny.pretrained import WEIGHTS

  _small_rgb(tmp_path / "x.png")
  code = main(["upscale", "--model", str(WEIGHTS / "espcn_x2_y.safetensors"), "--weights", "other.pth",
               str(tmp_path / "x.png"), "-o", str(tmp_path / "y.png")])
  assert code == 1 and "--weights goes with a zoo model name" in capsys.readouterr().err


def test_an_animated_gif_warns_that_only_its_first_frame_is_used(tmp_path):
  frames = [Image.new("RGB", (8, 8), (i * 60, 0, 0)) for i in range(3)]
  frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
  with pytest.warns(UserWarning, match="has 3 frames; only the first is used"):
    image = read_image(tmp_path / "a.gif")
  assert image.shape == (8, 8, 3) and image[0, 0, 0] == 0


def test_channels_are_spelled_the_same_in_every_command(capsys, assets):
  assert main(["eval", "--model", "bicubic", "--scale", "2", "--channels", "y", "--json", str(assets / "Set5")]) == 0
  assert main(["zoo", "--channels", "1", "--json"]) == 0
  capsys.readouterr()
  assert main(["train", "--model", "espcn", "--scale", "2", "--channels", "3", "--train", "/nowhere",
               "--out", "/tmp/never-written-by-supertiny-tests"]) == 1
  assert "no such folder" in capsys.readouterr().err
