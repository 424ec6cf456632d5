"""Radiometry: the stored values a model sees as 0 and 1 (supertiny.data.radiometry), applied on every upscale path
and read from GDAL's scale/offset metadata (written with rasterio)."""

import warnings

import numpy as np
import pytest

import supertiny
from supertiny.cli import main
from supertiny.data.radiometry import RADIOMETRIES, from_metadata
from supertiny.data.raster import read_raster
from supertiny.models import create_model
from supertiny.ops import imresize

rasterio = pytest.importorskip("rasterio")


def _scene(seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:40, 0:48]
  smooth = 0.5 + 0.3 * np.sin(x / 5)[..., None] * np.cos(y / 7)[..., None] * np.array([1.0, 0.8, 0.6])
  return np.clip(smooth + rng.normal(0, 0.02, (40, 48, 3)), 0, 1)


def test_a_learned_model_sees_12_bit_data_as_it_sees_the_same_image_in_floats():
  model = create_model("espcn", scale=2, channels=3)
  scene = _scene()
  twelve = np.round(scene * 4095).astype(np.uint16)
  mapped = supertiny.upscale(twelve, model=model, radiometry="12bit")
  as_floats = supertiny.upscale(twelve.astype(np.float32) / 4095, model=model)  # floats in [0, 1] map as they are
  assert mapped.dtype == np.uint16
  assert np.abs(mapped.astype(np.float64) - as_floats * 4095).max() <= 1.0
  by_dtype = supertiny.upscale(twelve, model=model)  # the model sees 0-6% of its range
  assert np.abs(by_dtype.astype(np.float64) - as_floats * 4095).mean() > 20


def test_values_above_full_scale_are_kept_in_the_input_units():
  edge = np.zeros((16, 16, 1), np.uint16)
  edge[:, 8:] = 4095
  out = supertiny.upscale(edge, model="bicubic", scale=2, radiometry="12bit")
  reference = imresize(edge[..., 0].astype(np.float64), 2)
  assert out.max() > 4095 and np.abs(out[..., 0] - np.clip(np.round(reference), 0, 65535)).max() <= 1
  reflectance = _scene().astype(np.float32) * 0.4
  reflectance[5:8, 5:8] = 1.3  # a cloud brighter than full scale
  out = supertiny.upscale(reflectance, model="bicubic", scale=2, radiometry="reflectance")
  np.testing.assert_allclose(out, imresize(reflectance.astype(np.float64), 2), atol=1e-5)


def test_named_radiometries_map_the_documented_units():
  assert RADIOMETRIES["s2-n0400"].value_range == (1000.0, 11000.0)
  low, high = RADIOMETRIES["landsat-c2-sr"].value_range
  assert low * 2.75e-5 - 0.2 == pytest.approx(0.0, abs=1e-12) and high * 2.75e-5 - 0.2 == pytest.approx(1.0)
  assert RADIOMETRIES["spot12"].value_range == (0.0, 10000.0)


def test_auto_takes_gdal_scale_and_offset_from_the_file(tmp_path, capsys):
  digital = np.round(_scene(1) * 3000 + 1000).astype(np.uint16)  # Sentinel-2 DN with the 04.00 offset
  source = tmp_path / "s2.tif"
  with rasterio.open(source, "w", driver="GTiff", width=48, height=40, count=3, dtype="uint16") as dst:
    dst.write(np.moveaxis(digital, -1, 0))
    dst.scales, dst.offsets = (1e-4,) * 3, (-0.1,) * 3
  found = from_metadata(read_raster(source))
  assert found is not None and found.value_range == pytest.approx((1000.0, 11000.0))
  from tinygrad.nn.state import get_state_dict, safe_save

  safe_save(get_state_dict(create_model("espcn", scale=2, channels=3)), str(tmp_path / "espcn.safetensors"))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    for name in ("auto", "s2-n0400", "dtype"):
      assert main(["upscale", "--model", "espcn", "--scale", "2", "--weights", str(tmp_path / "espcn.safetensors"),
                   "--radiometry", name, str(source), "-o", str(tmp_path / f"{name}.tif")]) == 0
  with rasterio.open(tmp_path / "auto.tif") as a, rasterio.open(tmp_path / "s2-n0400.tif") as b, \
       rasterio.open(tmp_path / "dtype.tif") as d:
    auto, named, by_dtype = a.read(), b.read(), d.read()
    assert a.dtypes[0] == "uint16" and a.scales == (1e-4,) * 3  # the units and their metadata are kept
  np.testing.assert_array_equal(auto, named)
  assert np.abs(auto.astype(np.int64) - by_dtype).max() > 10
