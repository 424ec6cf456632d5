"""Upscaling on Dask (supertiny.dask): chunk by chunk with halos, equal to supertiny.upscale on the whole array,
for dask arrays, xarray DataArrays with their CRS (read back with rioxarray/GDAL), and files through a LocalCluster
of two worker processes (`supertiny upscale --dask`)."""

import os
import threading
import time

import numpy as np
import pytest

import supertiny
from supertiny.cli import main
from supertiny.errors import SuperTinyError

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
rasterio = pytest.importorskip("rasterio")
pytest.importorskip("distributed")
rioxarray = pytest.importorskip("rioxarray")
from rasterio.transform import from_origin  # noqa: E402

from supertiny import dask as sd  # noqa: E402

MODEL = "espcn_x2_y"


def texture(height: int, width: int, bands: int, dtype, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
  planes = [(0.5 + 0.35 * np.sin(x / (7 + b) + b) * np.cos(y / 9) + rng.normal(0, 0.04, (height, width)))
            for b in range(bands)]
  values = np.clip(np.stack(planes, axis=-1), 0, 1) * top
  return (np.round(values) if np.dtype(dtype).kind == "u" else values).astype(dtype)


def write_geotiff(path, pixels: np.ndarray, nodata=None) -> None:
  height, width = pixels.shape[:2]
  planes = pixels if pixels.ndim == 3 else pixels[..., None]
  with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=planes.shape[2],
                     dtype=pixels.dtype.name, crs="EPSG:32633", transform=from_origin(330000, 5822040, 10, 10),
                     nodata=nodata, tiled=True) as out:
    out.write(np.moveaxis(planes, -1, 0))


@pytest.mark.parametrize("shape,dtype,chunks", [
  ((150, 230, 3), np.uint8, (64, 80, 3)),      # RGB through a Y model (chroma by bicubic), uneven chunks
  ((140, 170), np.uint16, (50, 170)),          # one band, 16 bits, a chunk smaller than a tile
])
def test_chunked_upscale_equals_the_whole_image(shape, dtype, chunks):
  image = texture(shape[0], shape[1], shape[2] if len(shape) == 3 else 1, dtype)
  image = image if len(shape) == 3 else image[..., 0]
  expected = supertiny.upscale(image, model=MODEL)
  with dask.config.set(scheduler="synchronous"):
    lazy = sd.upscale_array(da.from_array(image, chunks=chunks), MODEL, tile=96)
    assert lazy.shape == expected.shape and lazy.dtype == expected.dtype
    np.testing.assert_array_equal(lazy.compute(), expected)


def test_floats_with_holes_map_by_the_whole_range_and_fill_locally():
  image = texture(120, 150, 1, np.float32)[..., 0] * 3000 - 200  # outside [0, 1]: mapped by the data's own range
  image[40:52, 60:70] = np.nan
  image[5, 140] = np.inf
  expected = supertiny.upscale(image, model=MODEL)
  with dask.config.set(scheduler="synchronous"):
    out = sd.upscale_array(da.from_array(image, chunks=(60, 75)), MODEL, tile=96).compute()
  np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
  np.testing.assert_allclose(out, expected, rtol=0, atol=0)


def test_dataarrays_keep_their_crs_and_scale_their_grid(tmp_path):
  pixels = texture(96, 128, 1, np.uint8)[..., 0]
  write_geotiff(tmp_path / "in.tif", pixels)
  data = rioxarray.open_rasterio(tmp_path / "in.tif", chunks={"band": -1, "y": 48, "x": 64})
  with dask.config.set(scheduler="synchronous"):
    out = sd.upscale_dataarray(data, MODEL, tile=64)
    assert out.dims == ("band", "y", "x") and out.shape == (1, 192, 256)
    assert out.rio.crs.to_epsg() == 32633 and out.rio.transform() == from_origin(330000, 5822040, 5, 5)
    np.testing.assert_allclose(out.x.values[:2], [330002.5, 330007.5])
    np.testing.assert_allclose(out.y.values[:2], [5822037.5, 5822032.5])
    np.testing.assert_array_equal(out.values[0], supertiny.upscale(pixels, model=MODEL))


@pytest.mark.filterwarnings("ignore:swinir-light. random initialisation")
def test_global_models_are_refused():
  with pytest.raises(SuperTinyError, match="global"):
    sd.upscale_array(da.zeros((64, 64), dtype=np.uint8, chunks=32), "swinir-light", scale=2, random_init=True)


def test_cli_on_a_local_cluster_equals_the_single_process_result(tmp_path, capsys):
  """A folder of GeoTIFFs and a 1400x1400 raster (3x3 chunks) through a LocalCluster of two worker processes: the
  same pixels, CRS and transform as `supertiny upscale` in one process; --skip-existing resumes, an existing output
  is refused."""
  folder = tmp_path / "in"
  folder.mkdir()
  write_geotiff(folder / "a.tif", texture(130, 170, 1, np.uint16, seed=1))
  write_geotiff(folder / "b.tif", texture(90, 110, 3, np.uint8, seed=2))
  write_geotiff(folder / "big.tif", texture(1400, 1400, 1, np.uint8, seed=3))
  assert main(["upscale", "--model", MODEL, str(folder), "-o", str(tmp_path / "single")]) == 0
  assert main(["upscale", "--dask", "--chunk", "640", "--model", MODEL, str(folder), "-o", str(tmp_path / "dask")]) == 0
  assert "Dask cluster of 2 worker(s)" in capsys.readouterr().err
  for name in ("a.tif", "b.tif", "big.tif"):
    with rasterio.open(tmp_path / "single" / name) as one, rasterio.open(tmp_path / "dask" / name) as chunked:
      assert chunked.crs == one.crs and chunked.transform == one.transform and chunked.transform.a == 5
      np.testing.assert_array_equal(chunked.read(), one.read())
  assert not [p for p in (tmp_path / "dask").iterdir() if p.name.startswith(".")]
  (tmp_path / "dask" / "a.tif").unlink()
  assert main(["upscale", "--dask", "--skip-existing", "--model", MODEL, str(folder), "-o",
               str(tmp_path / "dask")]) == 0
  assert "skipping 2 output(s)" in capsys.readouterr().err and (tmp_path / "dask" / "a.tif").is_file()
  assert main(["upscale", "--dask", "--model", MODEL, str(folder / "a.tif"), "-o", str(tmp_path / "dask")]) == 1
  assert "already exists" in capsys.readouterr().err


def test_cli_writes_a_zarr_store_on_the_workers(tmp_path, capsys):
  """`upscale --dask scene.tif -o scene.zarr`: the workers write the chunks; the store holds the single-process
  pixels in the input's dtype, with the CRS and the x and y coordinates of the new grid (read back by xarray and
  rioxarray); it is refused without Dask, and --skip-existing leaves a finished store alone."""
  xr = pytest.importorskip("xarray")
  pytest.importorskip("zarr")
  write_geotiff(tmp_path / "scene.tif", texture(420, 380, 1, np.uint16, seed=4))
  assert main(["upscale", "--model", MODEL, str(tmp_path / "scene.tif"), "-o", str(tmp_path / "one.tif")]) == 0
  store = tmp_path / "scene.zarr"
  assert main(["upscale", "--model", MODEL, str(tmp_path / "scene.tif"), "-o", str(store)]) == 1
  assert "Zarr stores are written on Dask" in capsys.readouterr().err
  assert main(["upscale", "--dask", "--chunk", "200", "--tile", "64", "--model", MODEL, str(tmp_path / "scene.tif"),
               "-o", str(store)]) == 0
  data = xr.open_zarr(store, decode_coords="all")["data"]
  with rasterio.open(tmp_path / "one.tif") as one:
    assert data.dtype == np.uint16 and data.shape == (1, 840, 760)
    assert data.encoding["chunks"][1] < 840 and data.encoding["chunks"][2] < 760  # several chunks, several writers
    np.testing.assert_array_equal(data.values, one.read())
    assert data.rio.crs == one.crs and data.rio.transform() == one.transform
  assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
  assert main(["upscale", "--dask", "--skip-existing", "--model", MODEL, str(tmp_path / "scene.tif"), "-o",
               str(store)]) == 0
  assert "skipping 1 output(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_killed_during_a_run_does_not_lose_the_result(tmp_path):
  """One of the two workers is killed while chunks are in flight: Dask runs its chunks again elsewhere and the
  output is complete and equal to the single-process one."""
  from distributed import Client, LocalCluster

  pixels = texture(2400, 2400, 1, np.uint8, seed=4)[..., 0]
  write_geotiff(tmp_path / "in.tif", pixels)
  expected = supertiny.upscale(pixels, model=MODEL)
  with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
       Client(cluster) as client:
    pids = list(client.run(os.getpid).values())
    done = []

    def chunk_done(count: int, total: int) -> None:
      done.append(count)

    def kill_one() -> None:
      while not done:
        time.sleep(0.2)
      os.kill(pids[0], 9)

    killer = threading.Thread(target=kill_one)
    killer.start()
    sd.upscale_file_chunked(tmp_path / "in.tif", tmp_path / "out.tif", sd.ModelRef(MODEL), client, chunk=400,
                            progress=chunk_done)
    killer.join()
  with rasterio.open(tmp_path / "out.tif") as out:
    np.testing.assert_array_equal(out.read(1), expected)


def field(y0: int, x0: int, height: int, width: int) -> np.ndarray:
  """A deterministic uint8 texture at any window of an unbounded plane (no random state: any piece is reproducible)."""
  y, x = np.mgrid[y0:y0 + height, x0:x0 + width].astype(np.float64)
  values = 120 + 70 * np.sin(x / 23.0) * np.cos(y / 31.0) + 30 * np.sin((x + 2 * y) / 7.0) + 20 * np.sin(x * y / 97.0)
  return np.clip(values, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_a_20000_pixel_raster_generated_lazily_equals_the_single_process_result_chunk_by_chunk():
  """A one-band 20000x20000 uint8 raster, never whole in any process (SUPERTINY_DASK_SIDE changes the side), x2 on
  a LocalCluster of two workers; every output chunk is compared with supertiny.upscale of its window (with a margin
  wider than the model's reach: tiling is exact, so that is the single-process result there)."""
  from distributed import Client, LocalCluster

  from supertiny.pretrained import load_model
  from supertiny.runtime.runner import reach

  side = int(os.environ.get("SUPERTINY_DASK_SIDE", "20000"))
  chunk = 2048
  lazy = da.map_blocks(lambda block, block_info=None: field(block_info[None]["array-location"][0][0],
                                                            block_info[None]["array-location"][1][0], *block.shape),
                       da.empty((side, side), dtype=np.uint8, chunks=chunk), dtype=np.uint8)
  model = load_model(MODEL)
  margin, s = 2 * reach(model, 1, False) + 8, model.scale
  with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
       Client(cluster) as client:
    out = sd.upscale_array(lazy, MODEL, cores=1)
    checked = 0
    for (y, x), block in sd.stream_blocks(client, out):
      y, x, h, w = y // s, x // s, block.shape[0] // s, block.shape[1] // s
      y0, x0 = max(0, y - margin), max(0, x - margin)
      y1, x1 = min(side, y + h + margin), min(side, x + w + margin)
      expected = supertiny.upscale(field(y0, x0, y1 - y0, x1 - x0), model=model)
      np.testing.assert_array_equal(block, expected[(y - y0) * s:(y - y0 + h) * s, (x - x0) * s:(x - x0 + w) * s])
      checked += 1
  assert checked == out.numblocks[0] * out.numblocks[1]
