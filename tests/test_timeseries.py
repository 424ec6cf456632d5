"""The Landsat time-series reader and the multi-revisit study (supertiny.timeseries) on a small synthetic series
in the USGS layout, read back with GDAL (rasterio) as the reference."""

import datetime

import numpy as np
import pytest
import tifffile
from tinygrad.nn.state import get_state_dict

from supertiny.cli import main
from supertiny.data.landsat import read_time_series, scene_date
from supertiny.errors import SuperTinyError
from supertiny.models import create_model
from supertiny.models.weights import load_weights
from supertiny.runtime.runner import forward_batch
from supertiny.timeseries import build_samples, reference_only

rasterio = pytest.importorskip("rasterio")

# (scene id, kind): "clear", "stripes" (ETM+ SLC-off no-data columns) or "cloud" (Fmask 4 over a block)
SCENES = [("LT50350322008142PAC01", "clear"), ("LE70350322008150EDC00", "stripes"),
          ("LT50350322008158PAC01", "cloud"), ("LT50350322008174PAC01", "clear"),
          ("LE70350322008182EDC00", "stripes"), ("LT50350322008190PAC01", "clear"),
          ("LT50350322008206PAC01", "clear"), ("LE70350322008214EDC00", "cloud"),
          ("LT50350322008222PAC01", "clear"), ("LT50350322008238PAC01", "clear")]


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("lsts")
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:16, 0:18]
  for i, (scene, kind) in enumerate(reversed(SCENES)):  # written out of date order
    folder = root / scene
    folder.mkdir()
    fmask = np.zeros((16, 18), np.uint8)
    for b, band in enumerate(("b3", "b4", "b5")):
      values = (1500 + 800 * np.sin(x / 3 + b) * np.cos(y / 4) + 30 * i + rng.normal(0, 20, (16, 18))).astype(np.int16)
      if kind == "stripes":
        values[:, 2::6] = -9999
      tifffile.imwrite(folder / f"{scene}_{band}.tif", values)
    if kind == "stripes":
      fmask[:, 2::6] = 255
    if kind == "cloud":
      fmask[4:10, 5:12] = 4
    tifffile.imwrite(folder / f"{scene}_fmask.tif", fmask)
  (root / "README.txt").write_text("not a scene")
  return root


def test_the_series_is_read_by_date_with_nodata_and_clouds_masked(series_folder):
  series = read_time_series(series_folder)
  assert series.scenes == [s for s, _ in SCENES]
  assert series.dates[0] == datetime.date(2008, 5, 21) and series.sensors[:2] == ["TM", "ETM+"]
  assert series.reflectance.shape == (10, 3, 16, 18) and series.reflectance.dtype == np.float32
  scene = SCENES[1][0]
  with rasterio.open(series_folder / scene / f"{scene}_b4.tif") as src:
    reference = src.read(1).astype(np.float64)
  expected = np.where(reference == -9999, np.nan, reference / 10000)
  np.testing.assert_allclose(series.reflectance[1, 1], expected, rtol=1e-6)
  assert not series.clear[1][:, 2::6].any() and series.clear[1][:, 3].all()
  assert not series.clear[2][4:10, 5:12].any() and series.clear[2].sum() == 16 * 18 - 42
  assert scene_date("LE70350322008118EDC00") == (datetime.date(2008, 4, 27), "ETM+")
  with pytest.raises(SuperTinyError, match="not a Landsat scene id"):
    scene_date("S2A_MSIL1C")


def test_held_back_dates_never_feed_training_and_revisits_are_the_nearest(series_folder):
  series = read_time_series(series_folder)
  train, test = build_samples(series, scale=2, revisits=3, test_every=2)
  clear_dates = [series.dates[i] for i, (_, kind) in enumerate(SCENES) if kind == "clear"]
  assert [s.date for s in test] == clear_dates[1::2]
  held_back = {s.date for s in test}
  assert all(held_back.isdisjoint(s.revisit_dates) and s.date not in held_back for s in train)
  for sample in train + test:
    gaps = [abs((d - sample.date).days) for d in sample.revisit_dates]
    assert gaps == sorted(gaps) and sample.date not in sample.revisit_dates
    assert sample.lr.shape == (3, 3, 8, 9) and np.isfinite(sample.lr).all()
    fractions = sample.lr_clear.mean(axis=(1, 2))
    assert fractions[sample.clearest] == fractions.max()
    # the clearest revisit comes first, its mask after its bands
    assert sample.fusion_input()[3].mean() == pytest.approx(fractions.max())


def test_the_study_command_runs_and_reports_every_method(series_folder, capsys):
  figure = series_folder.parent / "figure.png"
  assert main(["timeseries", str(series_folder), "--scale", "2", "--revisits", "2", "--steps", "3",
               "--test-every", "2", "--stacked", "espcn", "--figure", str(figure),
               # one core: a copy of each of the four models per core would compile every step twice
               # (tests/test_cores.py checks the split itself)
               "--cores", "1"]) == 0
  assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  out = capsys.readouterr().out
  for method in ("bicubic (clearest revisit)", "single-image (clearest revisit)", "consensus (2 revisits, untrained)",
                 "fusion (2 revisits)", "espcn (clearest revisit)", "espcn (2 revisits stacked)",
                 "for validation", "weights kept (best validation cPSNR) from step"):
    assert method in out


@pytest.mark.slow  # a minute in CI; the study command itself runs in the test above
def test_the_study_is_a_function_of_its_seed(series_folder):
  """Initial weights and patches come from --seed alone: two runs give the same scores."""
  from supertiny.data.landsat import read_time_series
  from supertiny.timeseries import study

  series = read_time_series(series_folder)
  first, second = (study(series, scale=2, revisits=2, steps=2, test_every=2, seed=3) for _ in range(2))
  assert [r["per_date"] for r in first["results"]] == [r["per_date"] for r in second["results"]]


def test_revisit_dropout_keeps_the_reference_and_masks_the_others(series_folder):
  """The ablation's extra copies: every revisit but the first marked not clear (and so given no attention), the
  reference's bands and mask and the others' bands as they were; the fusion model on such a copy predicts as on
  the reference alone where the reference is clear."""
  train, _ = build_samples(read_time_series(series_folder), scale=2, revisits=3, test_every=2)
  stack = np.stack([s.fusion_input() for s in train])
  alone = reference_only(stack, bands=3).reshape(len(train), 3, 4, *stack.shape[2:])
  original = stack.reshape(alone.shape)
  assert (alone[:, 1:, 3] == 0).all() and not (original[:, 1:, 3] == 0).all()
  np.testing.assert_array_equal(alone[:, 0], original[:, 0])
  np.testing.assert_array_equal(alone[:, 1:, :3], original[:, 1:, :3])
  model = create_model("fusion", scale=2, channels=3, revisits=3)
  single = create_model("fusion", scale=2, channels=3, revisits=1)
  load_weights(single, {key: value.numpy() for key, value in get_state_dict(model).items()})
  first = alone[:1].copy()
  first[:, 0, 3] = 1  # a reference clear everywhere: then only the other revisits could make a difference
  fused = forward_batch(model, first.reshape(1, -1, *stack.shape[2:]))[0]
  np.testing.assert_allclose(fused, forward_batch(single, np.ascontiguousarray(first[:, 0]))[0], atol=1e-5)
  with_others = original[:1].copy()
  with_others[:, 0, 3] = 1
  assert np.abs(forward_batch(model, with_others.reshape(1, -1, *stack.shape[2:]))[0] - fused).max() > 1e-3


def test_a_revisit_stack_model_is_refused_on_an_image():
  import supertiny

  with pytest.raises(SuperTinyError, match="takes a stack of 8 channels"):
    supertiny.upscale(np.zeros((8, 8, 3), np.uint8), model=create_model("fusion", scale=2, channels=3, revisits=2))
  with pytest.raises(SuperTinyError, match="takes a stack of 6 channels"):
    supertiny.upscale(np.zeros((8, 8, 3), np.uint8), model=create_model("espcn", scale=2, channels=3, revisits=2))
