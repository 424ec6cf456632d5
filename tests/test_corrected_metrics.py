"""supertiny.metrics.corrected_metrics: the shift- and brightness-corrected PSNR/SSIM of WorldStrat's benchmark
(../shared/datasets/satellite/WORLDSTRAT_FORMAT.md, section 9), against the spec's steps written out in PyTorch, and
on pairs with a known sub-pixel shift and brightness offset."""

import math

import numpy as np
import pytest

from supertiny.metrics import corrected_metrics, psnr

torch = pytest.importorskip("torch")


def _waves(shape: tuple[int, int], shift: tuple[float, float], seed: int = 3) -> np.ndarray:
  """A smooth 3-band image: sums of plane waves below a quarter cycle per pixel, sampled `shift` pixels away."""
  rng = np.random.default_rng(seed)
  count = 12
  u, v = rng.uniform(-0.22, 0.22, (2, count))
  amplitude, phase = rng.uniform(0.02, 0.08, count), rng.uniform(0, 2 * math.pi, count)
  y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
  y, x = y + shift[0], x + shift[1]
  bands = [0.5 + sum(amplitude[k] * np.cos(2 * math.pi * (u[k] * (y + dy) + v[k] * (x + dx)) + phase[k])
                     for k in range(count)) for dy, dx in ((0, 0), (3, -7), (-5, 2))]
  return np.stack(bands, axis=-1)


@pytest.mark.parametrize("shift", [(0.5, -1.5), (-1.0, 2.0), (1.5, 0.5), (-2.0, -0.5)])
def test_a_known_subpixel_shift_and_brightness_offset_are_recovered(shift):
  hr = _waves((156, 156), (0, 0))
  noise = np.random.default_rng(7).normal(0, 0.02, hr.shape)
  unshifted = psnr(hr[5:151, 5:151] + noise[5:151, 5:151], hr[5:151, 5:151], peak=1.0)  # the SR as if registered
  sr = _waves((156, 156), shift) + noise + 0.07
  score = corrected_metrics(sr, hr)
  assert score.shift == shift
  assert abs(score.psnr - unshifted) < 0.1
  assert psnr(sr, hr, peak=1.0) < unshifted - 5  # uncorrected, the same pair scores far lower
  # the released window never tries a zero offset: the registered pair is scored a pixel or more away
  assert corrected_metrics(hr + noise, hr, window="original").psnr < unshifted - 3


def test_clear_pixels_alone_are_scored():
  hr = _waves((120, 130), (0, 0))
  noise = np.random.default_rng(1).normal(0, 0.01, hr.shape)
  sr = _waves((120, 130), (1.0, -0.5)) + noise - 0.03
  clear = np.ones(hr.shape[:2], bool)
  clear[30:70, 40:90] = False
  cloudy = sr.copy()
  cloudy[30:70, 40:90] = 1.0  # a cloud in the SR's revisit
  unmasked = corrected_metrics(sr, hr)
  masked = corrected_metrics(cloudy, hr, clear=clear)
  assert masked.shift == unmasked.shift == (1.0, -0.5)
  assert abs(masked.psnr - unmasked.psnr) < 0.1
  assert corrected_metrics(cloudy, hr).psnr < unmasked.psnr - 10
  with pytest.raises(ValueError, match="no clear pixel"):
    corrected_metrics(sr, hr, clear=np.zeros(hr.shape[:2], bool))


def _reference(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float, tuple[float, float]]:
  """Section 9 step by step in PyTorch: bias, 81 two-dimensional unnormalised kernels as a valid cross-correlation
  of the HR, SR cropped at offset 2, minimum MSE, kornia's SSIM (5x5 Gaussian, reflect padding) at that shift."""
  y = torch.from_numpy(hr).permute(2, 0, 1)[None]  # 1, C, H, W
  y_hat = torch.from_numpy(sr).permute(2, 0, 1)[None]
  y_hat = y_hat + (y - y_hat).mean(dim=(2, 3), keepdim=True)
  ts = [-2 + 0.5 * i for i in range(9)]

  def taps(t: float) -> torch.Tensor:
    u = math.pi * (torch.arange(-5, 6, dtype=torch.float64) - t) + 0.001
    return 3 * torch.sin(u) * torch.sin(u / 3) / u ** 2

  kernels = torch.stack([torch.outer(taps(ty), taps(tx)) for ty in ts for tx in ts])[:, None]  # 81, 1, 11, 11
  channels = y.shape[1]
  candidates = torch.nn.functional.conv2d(y.transpose(0, 1), kernels)  # C, 81, H-10, W-10
  crop = y_hat[0, :, 2:2 + candidates.shape[2], 2:2 + candidates.shape[3]]  # C, H-10, W-10
  mse = ((candidates - crop[:, None]) ** 2).mean(dim=(0, 2, 3))
  k = int(mse.argmin())
  best = candidates[:, k][None]
  g = torch.exp(-((torch.arange(5, dtype=torch.float64) - 2) ** 2) / (2 * 1.5 ** 2))
  window = torch.outer(g / g.sum(), g / g.sum()).expand(channels, 1, 5, 5)

  def blur(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.conv2d(torch.nn.functional.pad(t, (2, 2, 2, 2), mode="reflect"), window,
                                      groups=channels)

  a, b = crop[None], best
  mu_a, mu_b = blur(a), blur(b)
  var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return -10 * math.log10(float(mse[k])), float(ssim.mean()), (ts[k // 9], ts[k % 9])


def test_the_original_window_matches_the_spec_written_in_pytorch():
  rng = np.random.default_rng(5)
  hr = _waves((156, 156), (0, 0)) + rng.normal(0, 0.01, (156, 156, 3))
  sr = _waves((156, 156), (2.3, 3.6), seed=3) + rng.normal(0, 0.03, (156, 156, 3)) + 0.04
  expected_psnr, expected_ssim, expected_shift = _reference(sr, hr)
  score = corrected_metrics(sr, hr, window="original")
  assert score.shift == expected_shift
  assert score.psnr == pytest.approx(expected_psnr, abs=1e-9)
  assert score.ssim == pytest.approx(expected_ssim, abs=1e-9)


def test_eval_metric_cpsnr_forgives_a_misregistered_lr(tmp_path, capsys):
  """`supertiny eval --metric cpsnr`: an LR made from the HR moved by 2 HR pixels (1 LR pixel at x2) scores as
  well as the registered one, where the protocol's PSNR drops."""
  import json

  from supertiny.cli import main
  from supertiny.data.images import read_image, write_image
  from supertiny.data.pairs import degrade

  assets = __import__("pathlib").Path(__file__).parent / "assets" / "Set5"
  hr = read_image(assets / "bird.png")[:200, :200]
  folders = {}
  for name, moved in (("registered", hr), ("moved", np.roll(hr, (2, -2), axis=(0, 1)))):
    (tmp_path / name / "hr").mkdir(parents=True)
    (tmp_path / name / "lr").mkdir()
    write_image(tmp_path / name / "hr" / "bird.png", hr)
    write_image(tmp_path / name / "lr" / "bird.png", degrade(moved, 2))
    folders[name] = tmp_path / name

  def scores(name: str, metric: str) -> float:
    assert main(["eval", "--scale", "2", "--metric", metric, "--json", str(folders[name] / "hr"),
                 "--lr-dir", str(folders[name] / "lr")]) == 0
    return json.loads(capsys.readouterr().out)["datasets"]["hr"]["psnr"]

  assert scores("moved", "psnr") < scores("registered", "psnr") - 5
  assert abs(scores("moved", "cpsnr") - scores("registered", "cpsnr")) < 0.5


def test_eval_cpsnr_takes_float_reflectance_pairs(tmp_path, capsys):
  """A cross-sensor pair as OLI2MSI ships it: float32 reflectance GeoTIFFs, LR given at a quarter of the HR size."""
  import json

  import tifffile

  from supertiny.cli import main
  from supertiny.ops import imresize

  hr = (imresize(_waves((48, 48), (0, 0)), 2) * 0.4).astype(np.float32)  # half the waves' frequencies
  lr = hr.reshape(24, 4, 24, 4, 3).mean(axis=(1, 3))  # another sensor: a box average, not bicubic
  for name, image in (("hr", hr), ("lr", lr)):
    (tmp_path / name).mkdir()
    tifffile.imwrite(tmp_path / name / "pair.tif", np.moveaxis(image, -1, 0), photometric="minisblack",
                     planarconfig="separate")
  means = {}
  for model in ("nearest", "bicubic"):
    assert main(["eval", "--metric", "cpsnr", "--space", "rgb", "--scale", "4", "--model", model, "--json",
                 "--lr-dir", str(tmp_path / "lr"), str(tmp_path / "hr")]) == 0
    means[model] = json.loads(capsys.readouterr().out)["datasets"]["hr"]["psnr"]
  assert means["bicubic"] > means["nearest"] + 1 and means["bicubic"] > 30
  tifffile.imwrite(tmp_path / "lr" / "pair.tif", np.zeros((3, 20, 24), np.float32), photometric="minisblack",
                   planarconfig="separate")
  assert main(["eval", "--metric", "cpsnr", "--scale", "4", "--lr-dir", str(tmp_path / "lr"),
               str(tmp_path / "hr")]) == 1
  assert "24x20x3, expected 24x24x3" in capsys.readouterr().err
