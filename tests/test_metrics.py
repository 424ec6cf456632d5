"""Metrics against scikit-image (same formulas as Wang et al. 2004) and the published bicubic figures."""

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from supertiny.evaluate import evaluate_folder
from supertiny.metrics import evaluate_pair, psnr, ssim, to_metric_space
from supertiny.models import create_model

DATA = Path(__file__).parent / "assets"
RNG = np.random.default_rng(7)


def test_psnr_closed_form_and_scikit_image():
  a = RNG.integers(0, 256, (40, 30)).astype(np.float64)
  assert psnr(np.clip(a + 5, 0, 300), a + 5, 0) == math.inf
  assert psnr(np.full((8, 8), 10.0), np.full((8, 8), 15.0)) == pytest.approx(20 * math.log10(255 / 5))
  b = np.clip(a + RNG.normal(0, 6, a.shape), 0, 255).round()
  assert psnr(b, a) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)


def test_psnr_shave_ignores_borders():
  a = np.zeros((20, 20))
  b = a.copy()
  b[:3], b[:, -3:] = 255, 255
  assert psnr(b, a, shave=3) == math.inf
  assert psnr(b, a, shave=2) < 20


@pytest.mark.parametrize("shape", [(32, 32), (45, 61), (11, 11)])
def test_ssim_matches_scikit_image_gaussian(shape):
  a = RNG.integers(0, 256, shape).astype(np.float64)
  b = np.clip(a + RNG.normal(0, 20, shape), 0, 255)
  ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)
  assert ssim(b, a) == pytest.approx(ref, abs=1e-10)
  assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_rgb_is_mean_over_channels():
  a = RNG.random((30, 30, 3)) * 255
  b = np.clip(a + RNG.normal(0, 10, a.shape), 0, 255)
  ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                              channel_axis=2)
  assert ssim(b, a) == pytest.approx(ref, abs=1e-10)


def test_metric_space_y_and_rgb():
  rgb = RNG.random((20, 20, 3))
  y = to_metric_space(rgb, "y")
  assert y.shape == (20, 20) and y.min() >= 16 and y.max() <= 235 and np.all(y == np.round(y))
  assert to_metric_space(rgb, "rgb").shape == (20, 20, 3)
  gray = RNG.random((20, 20, 1))
  np.testing.assert_array_equal(to_metric_space(gray, "y"), np.round(gray[..., 0] * 255))
  p_y, _ = evaluate_pair(rgb, rgb, 2)
  assert p_y == math.inf


def test_metrics_reject_mismatched_or_tiny_images():
  with pytest.raises(ValueError, match="shapes"):
    psnr(np.zeros((4, 4)), np.zeros((4, 5)))
  with pytest.raises(ValueError, match="window"):
    ssim(np.zeros((10, 30)), np.zeros((10, 30)))


# Published bicubic figures (../shared/REFERENCE.md; Y channel, shave = scale, MATLAB imresize degradation)
PUBLISHED_BICUBIC = {
  ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
  ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
}


@pytest.mark.parametrize("dataset,scale", sorted(PUBLISHED_BICUBIC))
def test_bicubic_baseline_reproduces_published_table(dataset, scale):
  result = evaluate_folder(create_model("bicubic", scale=scale, channels=None), DATA / dataset, scale)
  want_psnr, want_ssim = PUBLISHED_BICUBIC[(dataset, scale)]
  assert len(result.images) == {"Set5": 5, "Set14": 14}[dataset]
  psnr_tol, ssim_tol = (0.02, 0.001) if dataset == "Set5" else (0.1, 0.002)
  assert result.psnr == pytest.approx(want_psnr, abs=psnr_tol)
  assert result.ssim == pytest.approx(want_ssim, abs=ssim_tol)
