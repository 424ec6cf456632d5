"""Sentinel-2 band super-resolution (supertiny.sentinel2): band files found and read with their georeferencing and
radiometry, the band sharpener against a PyTorch reference, tiled runs equal to whole ones, the 10 m product read
back with GDAL (rasterio), bad input refused in one line, and on the real scene (../shared) the shipped network
beating bicubic on every 20 m and 60 m band of the held-back part."""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from tinygrad import Tensor

from supertiny import sentinel2
from supertiny.cli import main
from supertiny.data.sentinel2 import BANDS, RESOLUTION, find_band_files, read_scene, scene_radiometry
from supertiny.errors import SuperTinyError
from supertiny.models.bandsharpen import BandSharpener
from supertiny.runtime.runner import Runner, forward_batch

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import from_origin  # noqa: E402

REAL_SCENE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "satellite" / "sentinel2_l1c_T33UUU"
ROWS, COLS = 96, 144  # the 10 m grid of the synthetic scene
ORIGIN = (330000.0, 5822040.0)


def scene_values(rng: np.random.Generator, band: str) -> np.ndarray:
  """A smooth field with some texture, as digital numbers at the band's own resolution."""
  ratio = RESOLUTION[band] // 10
  y, x = np.mgrid[0:ROWS, 0:COLS] / 7.0
  offset = BANDS.index(band) / 3
  field = 1500 + 900 * np.sin(x + offset) * np.cos(y * 0.7 - offset) + rng.normal(0, 40, (ROWS, COLS))
  coarse = field.reshape(ROWS // ratio, ratio, COLS // ratio, ratio).mean(axis=(1, 3))
  return np.clip(np.round(coarse), 1, 65535).astype(np.uint16)


def write_scene(folder: Path, driver: str = "GTiff", georeferenced: bool = True, bands=BANDS,
                damage: dict | None = None) -> Path:
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for band in bands:
    values = scene_values(rng, band)
    if damage and band in damage:
      values = damage[band](values)
    suffix = "jp2" if driver == "JP2OpenJPEG" else "tif"
    path = folder / f"T33UUU_20170216T102101_{band}.{suffix}"
    if not georeferenced:
      tifffile.imwrite(path, values)
      continue
    metres = RESOLUTION[band]
    options = {"QUALITY": "100", "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    with rasterio.open(path, "w", driver=driver, width=values.shape[1], height=values.shape[0], count=1,
                       dtype="uint16", crs="EPSG:32633", transform=from_origin(*ORIGIN, metres, metres),
                       **options) as out:
      out.write(values, 1)
  return folder


def saved_random_sharpener(folder: Path, job, seed: int) -> Path:
  """A small band sharpener for `job` with random weights, saved as sentinel2 saves them."""
  Tensor.manual_seed(seed)
  model = BandSharpener(len(job.guides), len(job.targets), width=8, blocks=1)
  path = folder / f"small_{job.name}.safetensors"
  sentinel2.save_sharpener(path, model, job, {"trained_on": "nothing (a test)"})
  return path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
  return saved_random_sharpener(tmp_path_factory.mktemp("weights"), sentinel2.JOBS["20m"], 3)


@pytest.fixture(scope="module")
def small_model_60m(tmp_path_factory) -> Path:
  return saved_random_sharpener(tmp_path_factory.mktemp("weights"), sentinel2.JOBS["60m"], 4)


def test_tiled_band_stacks_equal_the_whole_run():
  """The runner passes a 10-band stack through and returns the model's 6 bands; tiles smaller than the image
  (overlap = the receptive field) give the untiled result."""
  Tensor.manual_seed(5)
  model = BandSharpener(4, 6, width=8, blocks=2)
  stack = np.random.default_rng(2).random((50, 70, 10), dtype=np.float32) * 0.4
  whole = np.moveaxis(forward_batch(model, np.moveaxis(stack, -1, 0)[None])[0], 0, -1)
  tiled = Runner(model, tile=24)(stack, alpha=False, value_range=(0.0, 1.0))
  assert tiled.shape == (50, 70, 6) and tiled.dtype == np.float32
  np.testing.assert_allclose(tiled, whole, atol=2e-6, rtol=0)


def test_scene_is_read_with_its_grid_and_finest_files(tmp_path):
  folder = write_scene(tmp_path / "S2A.SAFE" / "GRANULE" / "L1C" / "IMG_DATA", driver="JP2OpenJPEG")
  # an L2A-style coarser copy of a 10 m band is ignored: the finest file of each band is taken
  with rasterio.open(folder / "T33UUU_20170216T102101_B02.jp2") as src:
    coarse = src.read(1)[::2, ::2]
  tifffile.imwrite(folder / "T33UUU_20170216T102101_B02_20m.tif", coarse)
  files = find_band_files(tmp_path)
  assert list(files) == list(BANDS) and files["B02"].suffix == ".jp2"
  with pytest.warns(UserWarning, match="no MTD_MSIL1C.xml"):
    scene = read_scene(tmp_path)
  assert scene.shape == (ROWS, COLS) and scene.bands["B05"].shape == (ROWS // 2, COLS // 2)
  assert scene.bands["B01"].shape == (ROWS // 6, COLS // 6)
  assert scene.crs.to_epsg() == 32633 and scene.transform.a == 10 and (scene.transform.c, scene.transform.f) == ORIGIN
  with rasterio.open(files["B11"]) as src:
    np.testing.assert_array_equal(scene.bands["B11"], src.read(1))
  np.testing.assert_allclose(scene.reflectance("B11"), src_values(files["B11"]) / 10000, rtol=1e-6)


def src_values(path: Path) -> np.ndarray:
  with rasterio.open(path) as src:
    return src.read(1).astype(np.float64)


@pytest.mark.parametrize("xml,offset", [
  ("<PROCESSING_BASELINE>02.04</PROCESSING_BASELINE>", 0.0),
  ("<PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>", 1000.0),
  ("<PROCESSING_BASELINE>04.00</PROCESSING_BASELINE><QUANTIFICATION_VALUE unit=\"none\">10000</QUANTIFICATION_VALUE>"
   "<RADIO_ADD_OFFSET band_id=\"0\">-1000</RADIO_ADD_OFFSET><RADIO_ADD_OFFSET band_id=\"1\">-1000</RADIO_ADD_OFFSET>",
   1000.0),
])
def test_radiometry_is_read_from_the_product_metadata(tmp_path, xml, offset):
  product = tmp_path / "S2B_MSIL1C.SAFE"
  granule = product / "GRANULE" / "L1C_T33UUU" / "IMG_DATA"
  granule.mkdir(parents=True)
  (product / "MTD_MSIL1C.xml").write_text(f"<?xml version=\"1.0\"?><root>{xml}</root>")
  radiometry = scene_radiometry(granule, "auto")
  assert (radiometry.offset, radiometry.full_scale) == (offset, 10000.0)
  assert scene_radiometry(granule, "s2-n0400").offset == 1000.0


def test_sharpen_writes_every_band_at_10m_georeferenced(tmp_path, small_model, small_model_60m, capsys):
  folder = write_scene(tmp_path / "scene")
  out = tmp_path / "out" / "scene_10m.tif"
  assert main(["sentinel2", "sharpen", str(folder), "-o", str(out), "--weights", str(small_model),
               "--weights-60m", str(small_model_60m), "--radiometry", "s2"]) == 0
  printed = capsys.readouterr().out
  assert "13 bands" in printed and "B01, B09: bandsharpen" in printed and "B10: bicubic" in printed
  with rasterio.open(out) as product:
    assert product.count == 13 and product.descriptions == BANDS and product.dtypes[0] == "uint16"
    assert product.crs.to_epsg() == 32633 and product.transform == from_origin(*ORIGIN, 10, 10)
    assert (product.width, product.height) == (COLS, ROWS) and product.nodata == 0
    bands = {name: product.read(i + 1) for i, name in enumerate(BANDS)}
  scene = read_scene(folder, "s2")
  for name in ("B02", "B03", "B04", "B08"):
    np.testing.assert_array_equal(bands[name], scene.bands[name])
  # the 20 m bands: the model's output on the bicubic-upsampled stack, computed whole here, in digital numbers
  for weights, job in ((small_model, sentinel2.JOBS["20m"]), (small_model_60m, sentinel2.JOBS["60m"])):
    model, _ = sentinel2.load_sharpener(weights, job)
    stack = sentinel2.sharpening_input(scene, job)
    assert stack.shape == (ROWS, COLS, len(job.guides) + len(job.targets))
    expected = np.moveaxis(forward_batch(model, np.moveaxis(stack, -1, 0)[None])[0], 0, -1) * 10000
    expected = np.clip(expected, 1, 65535)  # 0 is no data: data pixels never round to it
    for index, name in enumerate(job.targets):
      assert np.abs(bands[name].astype(np.float64) - expected[..., index]).max() <= 0.51
  assert not list(out.parent.glob(".*"))  # no temporary left behind
  # an existing product is not replaced without --overwrite
  assert main(["sentinel2", "sharpen", str(folder), "-o", str(out), "--weights", str(small_model)]) == 1
  assert "exists" in capsys.readouterr().err


def test_a_band_of_the_wrong_size_is_one_line_and_writes_nothing(tmp_path, small_model, capsys):
  folder = write_scene(tmp_path / "scene", damage={"B06": lambda v: v[:, :-1]})
  out = tmp_path / "out.tif"
  assert main(["sentinel2", "sharpen", str(folder), "-o", str(out), "--weights", str(small_model),
               "--radiometry", "s2"]) == 1
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "_B06.tif" in err and "71x48 pixels" in err and "72x48" in err
  assert not out.exists() and not list(tmp_path.glob(".out.tif*"))


def test_missing_bands_and_missing_rasterio_are_one_line(tmp_path, monkeypatch):
  folder = write_scene(tmp_path / "scene", bands=("B02", "B03", "B05"))
  with pytest.raises(SuperTinyError, match=r"no file for the 10 m band\(s\) B04, B08"):
    read_scene(folder)
  monkeypatch.setitem(__import__("sys").modules, "rasterio", None)
  with pytest.raises(SuperTinyError, match=r"supertiny\[geo\]"):
    read_scene(folder)


def test_band_files_without_georeferencing_give_a_product_without_it(tmp_path, small_model, capsys):
  folder = write_scene(tmp_path / "plain", georeferenced=False)
  out = tmp_path / "plain_10m.tif"
  assert main(["sentinel2", "sharpen", str(folder), "-o", str(out), "--weights", str(small_model),
               "--radiometry", "s2"]) == 0
  captured = capsys.readouterr()
  assert "carry no georeferencing" in captured.err and "no georeferencing" in captured.out
  with rasterio.open(out) as product:
    assert product.crs is None and product.count == 13


def test_train_and_evaluate_commands_on_a_small_scene(tmp_path, capsys):
  folder = write_scene(tmp_path / "scene")
  weights = tmp_path / "w.safetensors"
  assert main(["sentinel2", "train", str(folder), "--out", str(weights), "--steps", "3", "--width", "8",
               "--blocks", "1", "--radiometry", "s2", "--json", "--cores", "1"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert result["held_back_columns"] == [96, COLS] and [r["band"] for r in result["rmse_dn"]] == list(
    sentinel2.BANDS_20M)
  model, meta = sentinel2.load_sharpener(weights)
  assert meta["steps"] == 3 and meta["job"] == "20m" and set(meta["held_back_rmse"]) == set(sentinel2.BANDS_20M)
  figure = tmp_path / "figure.png"
  assert main(["sentinel2", "evaluate", str(folder), "--weights", str(weights), "--radiometry", "s2", "--json",
               "--figure", str(figure), "--band", "B8A"]) == 0
  again = json.loads(capsys.readouterr().out)
  assert again["rmse_dn"] == result["rmse_dn"]  # the saved weights score what training reported
  with Image.open(figure) as drawn:
    assert drawn.format == "PNG" and drawn.width > 600
  # the 60 m job: B01 and B09 restored from 360 m on their own grid, guided by every finer band
  assert main(["sentinel2", "train", str(folder), "--bands", "60m", "--out", str(weights), "--steps", "2",
               "--width", "8", "--blocks", "1", "--radiometry", "s2", "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert [r["band"] for r in result["rmse_dn"]] == ["B01", "B09"] and result["bands"] == "60m"
  with pytest.raises(SuperTinyError, match="not made for B02"):
    sentinel2.load_sharpener(weights, sentinel2.JOBS["20m"])


@pytest.mark.skipif(not REAL_SCENE.is_dir(), reason="the real Sentinel-2 scene is in ../shared/datasets/satellite")
@pytest.mark.parametrize("bands", ["20m", "60m"])
def test_shipped_sharpeners_beat_bicubic_on_every_band_of_the_held_back_part(bands):
  scene = read_scene(REAL_SCENE, "s2")
  job = sentinel2.JOBS[bands]
  model, meta = sentinel2.load_sharpener(job=job)
  split = sentinel2.split_column(scene)
  assert meta["trained_on"].startswith("sentinel2_l1c_T33UUU, 10 m columns 0-")
  rows = sentinel2.evaluate(scene, job, model, split)
  assert [row["band"] for row in rows] == list(job.targets)
  for row in rows:
    assert row["bandsharpen"] < row["bicubic"], row


OLI2MSI = REAL_SCENE.parent / "oli2msi_pair"
SATELLITE_X4 = Path(sentinel2.__file__).parent / "weights" / "sentinel2" / "espcn_x4_rgb_s2.safetensors"


@pytest.mark.skipif(not OLI2MSI.is_dir(), reason="needs ../shared/datasets/satellite/oli2msi_pair (not bundled: 3 MB)")
def test_the_sentinel2_trained_x4_model_beats_bicubic_across_sensors(tmp_path, capsys):
  """The shipped Sentinel-2-trained ESPCN x4 on the real Landsat-8 -> Sentinel-2 pair, scored by cPSNR on RGB
  with the pair's own LR: above bicubic (docs/satellite.md, benchmarks/cross_sensor.py)."""
  for role, name in (("hr", "HR.TIF"), ("lr", "LR.TIF")):
    (tmp_path / role).mkdir()
    (tmp_path / role / "pair.tif").write_bytes((OLI2MSI / name).read_bytes())
  scores = {}
  for model in ("bicubic", str(SATELLITE_X4)):
    assert main(["eval", "--metric", "cpsnr", "--space", "rgb", "--scale", "4", "--model", model, "--lr-dir",
                 str(tmp_path / "lr"), "--json", str(tmp_path / "hr")]) == 0
    scores[model] = json.loads(capsys.readouterr().out)["datasets"]["hr"]["psnr"]
  assert scores[str(SATELLITE_X4)] > scores["bicubic"] + 0.1
