"""Archive-scale upscaling on Dask: a raster larger than memory, or many of them, as lazy arrays whose chunks are
upscaled where they lie (one process, a LocalCluster, or a dask.distributed cluster).

A chunk is upscaled with a halo of its neighbours' pixels as wide as the model's reach (`dask.array.overlap`), and
only its own pixels are kept: SuperTiny's tiling is exact, so the result equals `supertiny.upscale` on the whole
array (the same bytes at 8 and 16 bits). Workers load the model themselves, once per process (only its name
travels with a task), and reuse its compiled kernels. Floats and signed integers map to the model's [0, 1] by the
whole raster's range, computed first (as `supertiny.upscale` maps them by the whole image's). No-data and
non-finite pixels are filled from their neighbours inside a chunk's halo, which is widened for it: holes up to
32 pixels across fill exactly as untiled; larger ones take their chunk's band mean instead of the image's.
Global models (SwinIR, the convolution-transformer) have no finite reach and are refused.

Needs `pip install 'supertiny[dask]'` (dask, distributed, xarray, rioxarray).
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.images import atomic_output, check_pixels, max_pixels
from .data.radiometry import Radiometry, from_scale_offset, sidecar_radiometry
from .data.raster import Raster
from .errors import SuperTinyError, first_line
from .pretrained import load_model
from .runtime.internals import compile_in_process
from .runtime.runner import guess_alpha, reach
from .upscaling import upscale_raster, write_output

FILL_ROUNDS = 16  # upscaling.fill_invalid's rounds: how far a no-data fill reaches
IN_FLIGHT_PER_WORKER = 3  # chunks submitted ahead per worker when writing a file
WRITE_CACHE_MB = 128  # GDAL's block cache while writing (its default is 5% of RAM)


def _dask_array() -> Any:
  try:
    import dask.array as da
  except ImportError:
    raise SuperTinyError("upscaling on Dask needs dask: pip install 'supertiny[dask]'") from None
  return da


@dataclass(frozen=True)
class ModelRef:
  """What a worker needs to load the model itself: a zoo name or checkpoint (None: the best shipped model for
  `scale`), the scale, the channels of a zoo model (None: its shipped weights'), a weights file, and whether a
  learned model without one runs from random initialisation."""
  name: str | None = None
  scale: int | None = None
  channels: int | None = None
  weights: str | None = None
  random_init: bool = False

  def load(self) -> Any:
    return _loaded(self)


@functools.lru_cache(maxsize=4)
def _loaded(ref: ModelRef) -> Any:
  """The model, once per process: its runner keeps its compiled kernels for every chunk this process upscales."""
  try:
    from distributed import get_worker

    get_worker()
  except (ImportError, ValueError):
    pass
  else:  # a Dask worker is one of several processes: no pool of compiler processes under each
    compile_in_process()
  return load_model(ref.name, ref.scale, ref.channels, ref.weights, ref.random_init)


@dataclass(frozen=True)
class ChunkJob:
  """How every chunk of one raster is upscaled."""
  ref: ModelRef
  depth: int  # halo pixels on each side (LR)
  radiometry: str | Radiometry
  data_range: tuple[float, float] | None
  nodata: float | None
  alpha: bool | None
  tile: int
  cores: int | None


def _upscale_chunk(block: np.ndarray, job: ChunkJob, block_info: dict | None = None) -> np.ndarray:
  """One chunk with its halo -> the upscaled chunk without it."""
  model = job.ref.load()
  info = block_info[0]
  location, chunks = info["chunk-location"], info["num-chunks"]
  out = upscale_raster(model, Raster(np.ascontiguousarray(block), alpha=job.alpha), job.tile, None,
                       radiometry=job.radiometry, cores=job.cores, data_range=job.data_range,
                       nodata=job.nodata, fixed_tile=True).pixels
  s = model.scale
  keep = []
  for axis in (0, 1):
    before = job.depth if location[axis] > 0 else 0
    after = job.depth if location[axis] < chunks[axis] - 1 else 0
    keep.append(slice(before * s, out.shape[axis] - after * s))
  return out[keep[0], keep[1]]


def data_range(array: Any, nodata: float | None) -> tuple[float, float] | None:
  """The whole array's range as `supertiny.upscale` maps it (runner.image_range over valid pixels): None for
  unsigned integers (their dtype's range); [0, 1] for floats inside it; else the finite minimum and maximum."""
  if array.dtype.kind == "u":
    return None
  da = _dask_array()
  valid = da.isfinite(array) if array.dtype.kind == "f" else da.ones_like(array, dtype=bool)
  if nodata is not None:
    valid &= array != nodata
  lo, hi, count = da.compute(da.where(valid, array, np.inf).min(), da.where(valid, array, -np.inf).max(), valid.sum())
  if count == 0:
    return 0.0, 1.0
  lo, hi = float(lo), float(hi)
  if lo >= 0.0 and hi <= 1.0:
    return 0.0, 1.0
  return lo, hi if hi > lo else lo + 1.0


def aligned(requested: int, stride: int) -> int:
  """The chunk side nearest `requested` that is a whole number of tile strides."""
  return max(1, round(requested / stride)) * stride


def _even(length: int, side: int) -> tuple[int, ...]:
  return (side,) * (length // side) + ((length % side,) if length % side else ())


def _merged(chunks: tuple[int, ...], least: int) -> tuple[int, ...]:
  """Chunk lengths with every chunk shorter than `least` merged into a neighbour (the whole axis if it is short)."""
  merged = list(chunks)
  while len(merged) > 1 and min(merged) < least:
    i = merged.index(min(merged))
    j = i - 1 if i == len(merged) - 1 or (i > 0 and merged[i - 1] <= merged[i + 1]) else i + 1
    merged[min(i, j)] = merged[i] + merged[j]
    del merged[max(i, j)]
  return tuple(merged)


def upscale_array(array: Any, model: str | None = None, scale: int | None = None, channels: int | None = None,
                  weights: str | None = None, radiometry: str | Radiometry = "dtype", nodata: float | None = None,
                  alpha: bool | None = None, tile: int = 256, cores: int | None = None,
                  random_init: bool = False) -> Any:
  """A lazy dask array (HxW or HxWxC; any chunks over rows and columns) upscaled chunk by chunk: a dask array
  `scale` times larger with the same dtype and chunks scaled. `radiometry`: a name of
  supertiny.data.radiometry.RADIOMETRIES, or "dtype" (integers by their dtype's range, floats and signed integers
  by the whole array's, computed now). `cores`: cores per chunk (None: every core; 1 on cluster workers, which
  are one per core). Nothing is computed but that range."""
  da = _dask_array()
  array = da.asarray(array)
  flat = array.ndim == 2
  if flat:
    array = array[:, :, None]
  if array.ndim != 3 or array.dtype.kind not in "uif":
    raise SuperTinyError(f"expected an HxW or HxWxC array of integers or floats, got {array.dtype} {array.shape}")
  if array.shape[0] * array.shape[1] > max_pixels():
    raise SuperTinyError(f"array of {array.shape[1]}x{array.shape[0]} is {array.shape[0] * array.shape[1] / 1e6:.0f} "
                         f"megapixels, over the limit of {max_pixels() / 1e6:.0f} (raise it with SUPERTINY_MAX_PIXELS)")
  ref = ModelRef(model, scale, channels, weights, random_init)
  loaded = ref.load()
  bands = array.shape[2]
  if alpha is None:
    alpha = guess_alpha(loaded, bands)
  context = reach(loaded, bands, alpha)
  if context is None:
    raise SuperTinyError(f"model {loaded.name!r} is global (every output pixel sees the whole input): it cannot "
                         "run chunk by chunk; use supertiny.upscale on the whole image")
  holes = array.dtype.kind == "f" or nodata is not None
  depth = context + (FILL_ROUNDS if holes else 0)
  # every band in one chunk; chunk sides a multiple of the tiles' stride, so that a chunk and its halo take whole
  # tiles; no chunk so small that, with its halo, it is less than a tile: then every chunk runs tiles of one shape,
  # compiled once per process
  stride = tile - 2 * context
  if stride < 1:
    raise SuperTinyError(f"tile {tile} must be larger than twice the model's reach ({context} px)")
  sides = [aligned(max(array.chunks[axis]), stride) for axis in (0, 1)]
  least = max(tile - depth, depth)
  array = array.rechunk((_merged(_even(array.shape[0], sides[0]), least),
                         _merged(_even(array.shape[1], sides[1]), least), -1))
  job = ChunkJob(ref, depth, radiometry, data_range(array, nodata) if radiometry == "dtype" else None, nodata,
                 alpha, tile, cores)
  haloed = da.overlap.overlap(array, depth={0: depth, 1: depth, 2: 0}, boundary="none")
  s = loaded.scale
  out = da.map_blocks(_upscale_chunk, haloed, job=job, dtype=array.dtype,
                      chunks=(tuple(c * s for c in array.chunks[0]), tuple(c * s for c in array.chunks[1]),
                              array.chunks[2]),
                      name=f"supertiny-upscale-x{s}")
  return out[:, :, 0] if flat else out


def upscale_dataarray(data: Any, model: str | None = None, scale: int | None = None, channels: int | None = None,
                      weights: str | None = None, radiometry: str = "dtype", tile: int = 256,
                      cores: int | None = None, random_init: bool = False) -> Any:
  """An xarray DataArray of dims (y, x) or (band, y, x), backed by dask (or numpy), upscaled lazily: its x and y
  coordinates resampled to the new pixel centres, and a rioxarray CRS, transform and nodata kept (the transform
  scaled to the new pixel size)."""
  import xarray as xr

  if data.dims[-2:] != ("y", "x") or data.ndim not in (2, 3):
    raise SuperTinyError(f"expected dims (y, x) or (band, y, x), got {data.dims}")
  nodata = data.rio.nodata if hasattr(data, "rio") else None
  pixels = data.data if data.ndim == 2 else data.transpose("y", "x", data.dims[0]).data
  out = upscale_array(pixels, model, scale, channels, weights, radiometry, nodata, False, tile, cores, random_init)
  s = out.shape[0] // data.sizes["y"]
  if data.ndim == 3:
    out = out.transpose(2, 0, 1)
  coords = {name: coord for name, coord in data.coords.items() if "y" not in coord.dims and "x" not in coord.dims}
  for axis in ("y", "x"):
    values = np.asarray(data[axis].values, dtype=np.float64)
    step = values[1] - values[0] if values.size > 1 else 1.0
    first_edge = values[0] - step / 2
    coords[axis] = first_edge + (np.arange(values.size * s) + 0.5) * step / s
  result = xr.DataArray(out, dims=data.dims, coords=coords, attrs=dict(data.attrs), name=data.name)
  if hasattr(data, "rio") and data.rio.crs is not None:
    result = result.rio.write_crs(data.rio.crs)
    transform = data.rio.transform()
    result = result.rio.write_transform(transform @ type(transform).scale(1 / s))
  if nodata is not None:
    result = result.rio.write_nodata(nodata)
  return result



def _radiometry_of(data: Any, name: str, source: Path | None = None) -> Radiometry | str:
  """The radiometry for a rioxarray DataArray: "auto" reads its scale_factor and add_offset (GDAL's scale and
  offset) as supertiny.data.radiometry.from_metadata does for files, else the product metadata beside `source`
  (the file it was read from); else the name."""
  if name != "auto":
    return name
  found = from_scale_offset(float(data.attrs.get("scale_factor", 1.0)), float(data.attrs.get("add_offset", 0.0)))
  if found is None and source is not None:
    found = sidecar_radiometry(source)
  return "dtype" if found is None else found


def _open_lazily(source: Path, chunk: int) -> Any:
  """A file as a (band, y, x) DataArray: GeoTIFFs read by windows of `chunk` px in the tasks that need them
  (rioxarray); other images read whole here (PNG and JPEG are not tiled on disk) and split into chunks."""
  import rioxarray
  import xarray as xr

  from .data.raster import read_raster

  if source.suffix.lower() in (".tif", ".tiff"):
    try:
      return rioxarray.open_rasterio(source, chunks={"band": -1, "y": chunk, "x": chunk}, lock=False,
                                     mask_and_scale=False)
    except Exception as exc:  # noqa: BLE001 (GDAL's errors have many types; the user gets one line)
      raise SuperTinyError(f"{source}: cannot be read ({first_line(exc)})") from None
  import dask.array as da

  pixels = read_raster(source).pixels
  return xr.DataArray(da.from_array(np.moveaxis(pixels, -1, 0), chunks=(-1, chunk, chunk)), dims=("band", "y", "x"))


def stream_blocks(client: Any, array: Any, per_worker: int = IN_FLIGHT_PER_WORKER) -> Iterator[tuple]:
  """((row, column) of the block's first pixel, block) for every block of a dask array, as the `client`'s workers
  compute them, with at most `per_worker` blocks per worker submitted ahead: the consumer sets the pace, so blocks
  never pile up in the workers' memory when it is slower than they are (writing and compressing a file is)."""
  import dask
  from dask.core import get_dependencies
  from distributed import as_completed

  starts = [np.cumsum((0,) + array.chunks[axis][:-1]) for axis in (0, 1)]
  # the graph is optimised and materialised once, and each block is sent with only the tasks it needs: asking for
  # one block of a collection culls the whole graph each time (0.6 s of this process's CPU per chunk at 20000^2)
  (optimized,) = dask.optimize(array)
  graph = dict(optimized.__dask_graph__())
  keys = optimized.__dask_keys__()
  order = iter(np.ndindex(*array.numblocks[:2]))
  where = {}

  def needed(key: Any) -> dict:
    tasks, stack = {}, [key]
    while stack:
      k = stack.pop()
      if k not in tasks:
        tasks[k] = graph[k]
        stack.extend(get_dependencies(graph, k))
    return tasks

  def submit() -> Any:
    index = next(order, None)
    if index is None:
      return None
    key = keys[index[0]][index[1]]
    while isinstance(key, list):  # the band axis is one chunk
      key = key[0]
    future = client.get(needed(key), key, sync=False)
    where[future.key] = (int(starts[0][index[0]]), int(starts[1][index[1]]))
    return future

  workers = max(1, len(client.scheduler_info()["workers"]))
  running = as_completed([f for f in (submit() for _ in range(per_worker * workers)) if f is not None],
                         with_results=True)
  for future, block in running:
    following = submit()
    if following is not None:
      running.add(following)
    yield where.pop(future.key), block


def upscale_file_chunked(source: Path, target: Path, ref: ModelRef, client: Any, chunk: int = 1024,
                         radiometry: str = "auto", tile: int = 256, cores: int | None = 1,
                         progress: Callable[[int, int], None] | None = None) -> tuple[tuple[int, ...], str]:
  """One raster through a dask.distributed `client`, chunk by chunk: read by windows on the workers, written here
  window by window into a temporary GeoTIFF that is renamed over `target` when complete (so `target` only ever
  holds a whole result). Returns ((height, width, bands), dtype) of the output."""
  import rasterio

  if source.suffix.lower() in (".tif", ".tiff"):  # read windows that are already whole chunks of tiles
    model = ref.load()
    try:
      with rasterio.open(source) as header:
        bands, width, height = header.count, header.width, header.height
    except rasterio.errors.RasterioError as exc:
      raise SuperTinyError(f"{source}: cannot be read ({first_line(exc)})") from None
    check_pixels(source, width, height)
    context = reach(model, bands, guess_alpha(model, bands))
    if context is not None and tile > 2 * context:
      chunk = aligned(chunk, tile - 2 * context)
  data = _open_lazily(source, chunk)
  chosen = _radiometry_of(data, radiometry, source)
  if target.suffix.lower() == ZARR_SUFFIX:
    result = upscale_dataarray(data, ref.name, ref.scale, ref.channels, ref.weights, chosen, tile=tile, cores=cores,
                               random_init=ref.random_init)
    return write_zarr(result, target, client, progress)
  nodata = data.rio.nodata if hasattr(data, "rio") else None
  pixels = data.transpose("y", "x", "band").data
  out = upscale_array(pixels, ref.name, ref.scale, ref.channels, ref.weights, chosen, nodata, tile=tile,
                      cores=cores, random_init=ref.random_init)
  height, width, bands = out.shape
  profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": out.dtype.name,
             "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER",
             "ZLEVEL": 1}  # the command compresses beside the workers on the same cores: level 1, 40% less CPU than 6
  if nodata is not None:
    profile["nodata"] = nodata
  crs = data.rio.crs if hasattr(data, "rio") else None
  if crs is not None:
    transform = data.rio.transform()
    profile.update(crs=crs, transform=transform @ type(transform).scale(data.sizes["y"] / height))
  target.parent.mkdir(parents=True, exist_ok=True)
  if target.suffix.lower() not in (".tif", ".tiff"):  # PNG and JPEG are not written by windows: whole, as upscale does
    whole = client.compute(out).result()
    write_output(target, Raster(whole, alpha=None))
    if progress is not None:
      progress(1, 1)
    return whole.shape, whole.dtype.name
  with atomic_output(target, suffix=".tif") as tmp, rasterio.Env(GDAL_CACHEMAX=WRITE_CACHE_MB), \
       rasterio.open(tmp, "w", **profile) as sink:
    total = out.numblocks[0] * out.numblocks[1]
    for done, ((y, x), block) in enumerate(stream_blocks(client, out), start=1):
      sink.write(np.moveaxis(block, -1, 0), window=rasterio.windows.Window(x, y, block.shape[1], block.shape[0]))
      if progress is not None:
        progress(done, total)
  return (height, width, bands), out.dtype.name


ZARR_SUFFIX = ".zarr"


def _store_block(block: np.ndarray, path: str, block_info: dict | None = None) -> np.ndarray:
  """Write one (y, x, band) block into the (band, y, x) Zarr array at `path`, where dask placed it; returns a
  1x1x1 token, so only the news that it is written travels back."""
  import zarr

  (y0, y1), (x0, x1), (b0, b1) = block_info[0]["array-location"]
  zarr.open_array(path, mode="r+")[b0:b1, y0:y1, x0:x1] = np.moveaxis(block, -1, 0)
  return np.zeros((1, 1, 1), np.uint8)


def write_zarr(result: Any, target: Path, client: Any, progress: Callable[[int, int], None] | None = None
               ) -> tuple[tuple[int, ...], str]:
  """A lazy (band, y, x) DataArray into a Zarr store at `target` as a dataset variable `data`, with its coordinates
  and rioxarray CRS (read it back with `xarray.open_zarr(target, decode_coords="all")`). The metadata and
  coordinates are written here; each chunk is computed and written by the worker that holds it, so no pixels pass
  through this process, with a bounded number of chunks in flight (stream_blocks). The store is made beside
  `target` and renamed into place when complete, so `target` only ever holds a whole result. Returns
  ((height, width, bands), dtype) of the output."""
  import shutil

  partial = target.with_name(f".{target.name}.partial")
  shutil.rmtree(partial, ignore_errors=True)
  target.parent.mkdir(parents=True, exist_ok=True)
  result = result.copy()
  for name, identity in (("scale_factor", 1.0), ("add_offset", 0.0)):  # rioxarray's defaults: kept, readers would
    if float(result.attrs.get(name, identity)) == identity:            # decode the integers into floats
      result.attrs.pop(name, None)
  try:
    with warnings.catch_warnings():  # zarr 3 calls consolidated metadata an extension; readers open faster with it
      warnings.filterwarnings("ignore", message="Consolidated metadata")
      # the metadata only (nothing is computed): Zarr wants regular chunks, and the last chunk of a row may be larger
      # (dask_chunks merges a thin remainder into it); each Zarr chunk is still written by one block, as block
      # edges fall on multiples of the first chunk
      regular = result.chunk({dim: size[0] for dim, size in zip(result.dims, result.chunks, strict=True)})
      regular.to_dataset(name="data").to_zarr(partial, mode="w", compute=False, consolidated=True)
    pixels = result.data.transpose(1, 2, 0)
    if any(size != c[0] for c in pixels.chunks[:2] for size in c[:-1]):  # an inner block not on the Zarr grid
      pixels = pixels.rechunk({0: pixels.chunks[0][0], 1: pixels.chunks[1][0]})  # one writer per Zarr chunk
    tokens = pixels.map_blocks(_store_block, path=str(partial / "data"), dtype=np.uint8,
                               chunks=tuple((1,) * len(c) for c in pixels.chunks))
    total = pixels.numblocks[0] * pixels.numblocks[1]
    for done, _ in enumerate(stream_blocks(client, tokens), start=1):
      if progress is not None:
        progress(done, total)
    if target.exists():  # --overwrite: the old store goes only once the new one is whole
      shutil.rmtree(target)
    partial.rename(target)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  bands, height, width = (result.sizes.get("band", 1), result.sizes["y"], result.sizes["x"])
  return (height, width, bands), result.dtype.name


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
  """A dask.distributed client: of the scheduler at `address`, else of a LocalCluster of `workers` single-threaded
  worker processes (default: one per core), closed on exit."""
  try:
    from distributed import Client, LocalCluster
  except ImportError:
    raise SuperTinyError("upscaling on a Dask cluster needs distributed: pip install 'supertiny[dask]'") from None
  if address:
    try:
      client = Client(address, timeout="20s")
    except OSError as exc:
      raise SuperTinyError(f"{address}: no Dask scheduler answers there ({first_line(exc)})") from None
    with client:
      yield client
    return
  count = workers or len(os.sched_getaffinity(0))
  with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
       Client(cluster) as client:
    yield client
