"""Reading and writing images without losing bit depth, and listing the images of a folder.

Images are numpy arrays HxWxC (C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA, or any band count for TIFF) of dtype
uint8 or uint16. Pillow reads most formats; pypng reads 16-bit colour PNGs, which Pillow would cut to 8 bits;
tifffile reads TIFFs (16-bit, many bands).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import SuperTinyError, first_line

MAX_TIFF_PAGES = 64  # bands stored one per page
DEFAULT_MAX_PIXELS = 1 << 30  # about a gigapixel: larger headers are refused before decoding (SUPERTINY_MAX_PIXELS)
IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm",
                            ".jp2", ".j2k", ".jpx"})
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def list_images(folder: str | Path) -> list[Path]:
  """Image files of a folder by suffix, sorted by name; other files are skipped with a warning."""
  folder = Path(folder)
  if not folder.exists():
    raise SuperTinyError(f"{folder}: no such folder")
  if not folder.is_dir():
    raise SuperTinyError(f"{folder}: not a folder")
  images = []
  for path in sorted(folder.iterdir()):
    if path.name.startswith(".") or path.is_dir():
      continue
    if path.suffix.lower() in IMAGE_SUFFIXES:
      images.append(path)
    else:
      warnings.warn(f"{path}: not an image file name, skipped", stacklevel=2)
  if not images:
    raise SuperTinyError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
  return images


def max_pixels() -> int:
  """The most pixels (width x height) an image file may declare: $SUPERTINY_MAX_PIXELS or DEFAULT_MAX_PIXELS."""
  text = os.environ.get("SUPERTINY_MAX_PIXELS", "")
  try:
    return int(float(text)) if text else DEFAULT_MAX_PIXELS
  except ValueError:
    raise SuperTinyError(f"SUPERTINY_MAX_PIXELS={text!r} is not a number") from None


def check_pixels(path: Path, width: int, height: int) -> None:
  """Refuse an image whose header declares more pixels than max_pixels(), before anything is decoded."""
  limit = max_pixels()
  if width * height > limit:
    raise SuperTinyError(f"{path}: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the limit of "
                         f"{limit / 1e6:.0f} (raise it with --max-pixels or SUPERTINY_MAX_PIXELS)")


def read_image(path: str | Path) -> np.ndarray:
  """Decode an image file into an HxWxC uint8 or uint16 array; one-line SuperTinyError if it can't."""
  path = Path(path)
  if not path.exists():
    raise SuperTinyError(f"{path}: no such file")
  if path.is_dir():
    raise SuperTinyError(f"{path}: is a folder, not an image")
  try:
    if path.suffix.lower() in (".tif", ".tiff"):
      array = _read_tiff(path)
    elif _is_16bit_colour_png(path):
      array = _read_png16(path)
    else:
      array = _read_pillow(path)
  except SuperTinyError:
    raise
  except Exception as exc:  # noqa: BLE001 (decoders of untrusted bytes fail in many ways: each is this file's)
    raise SuperTinyError(f"{path}: not a readable image ({decode_failure(exc)})") from exc
  if array.ndim == 2:
    array = array[:, :, None]
  if array.shape[0] == 0 or array.shape[1] == 0:
    raise SuperTinyError(f"{path}: image is empty")
  return array


@contextmanager
def _pillow_limit() -> Iterator[None]:
  """Pillow's own decompression-bomb limit set to ours while a file opens (its default, 179 megapixels, is
  smaller), so that one check with one message decides."""
  saved = Image.MAX_IMAGE_PIXELS
  Image.MAX_IMAGE_PIXELS = max_pixels()
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      yield
  finally:
    Image.MAX_IMAGE_PIXELS = saved


def decode_failure(exc: BaseException) -> str:
  """The first line of a decoder's exception, for one-line messages."""
  return "out of memory while decoding" if isinstance(exc, MemoryError) else first_line(exc)


def _read_pillow(path: Path) -> np.ndarray:
  with _pillow_limit():
    im = Image.open(path)
  with im:
    check_pixels(path, *im.size)
    if getattr(im, "n_frames", 1) > 1:
      warnings.warn(f"{path}: has {im.n_frames} frames; only the first is used", stacklevel=3)
    im.load()  # decode now so truncated files fail here, naming the file
    mode = im.mode
    if mode == "P":
      im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
      im = im.convert("RGBA")
    elif mode == "1":
      im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
      im = im.convert("RGB")
    elif mode.startswith("I;16"):
      return np.asarray(im).astype(np.uint16)
    elif mode == "I":  # 16-bit grayscale PNGs open as 32-bit integers
      array = np.asarray(im)
      if array.min() < 0 or array.max() > 65535:
        raise SuperTinyError(f"{path}: 32-bit integer images are not supported")
      return array.astype(np.uint16)
    elif mode == "F":
      raise SuperTinyError(f"{path}: floating-point images are not supported (save as 8- or 16-bit)")
    return np.array(im)


def _is_16bit_colour_png(path: Path) -> bool:
  with open(path, "rb") as f:
    head = f.read(29)
  # IHDR follows the signature: length, type, width, height, bit depth (byte 24), colour type (byte 25)
  if head[:8] == _PNG_SIGNATURE and len(head) >= 26:
    check_pixels(path, int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
  return head[:8] == _PNG_SIGNATURE and len(head) >= 26 and head[24] == 16 and head[25] in (2, 4, 6)


def _read_png16(path: Path) -> np.ndarray:
  import png

  try:
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
  except png.Error as exc:
    raise SuperTinyError(f"{path}: not a readable image ({exc})") from exc
  return array.reshape(height, width, info["planes"])


class _UnholdableNodata(logging.Filter):
  """Drops tifffile's warning about a GDAL_NODATA tag the pixels' type cannot hold (Landsat's uint8 Fmask files
  carry -9999): GDAL ignores such a tag too, and the file reads correctly."""

  def filter(self, record: logging.LogRecord) -> bool:
    return "GDAL_NODATA" not in record.getMessage()


@contextmanager
def open_tiff(path: Path) -> Iterator[Any]:
  """An open tifffile.TiffFile whose pages passed check_tiff_pixels, read without tifffile's warning about a
  nodata tag its pixels cannot hold."""
  import tifffile

  quiet, log = _UnholdableNodata(), logging.getLogger("tifffile")
  log.addFilter(quiet)
  try:
    with tifffile.TiffFile(path) as tif:
      check_tiff_pixels(path, tif)
      yield tif
  finally:
    log.removeFilter(quiet)


def _read_tiff(path: Path) -> np.ndarray:
  try:
    with open_tiff(path) as tif:
      array = _tiff_planes(tif)
  except SuperTinyError:
    raise
  except Exception as exc:  # noqa: BLE001 (see read_image)
    raise SuperTinyError(f"{path}: not a readable image ({decode_failure(exc)})") from exc
  if array.dtype not in (np.uint8, np.uint16):
    raise SuperTinyError(f"{path}: {array.dtype} TIFFs are not supported (8- or 16-bit unsigned only)")
  if array.ndim == 3 and array.shape[0] < array.shape[2] and array.shape[0] <= 16:
    array = np.moveaxis(array, 0, -1)  # planar (bands first) -> bands last
  if array.ndim not in (2, 3):
    raise SuperTinyError(f"{path}: TIFF with shape {array.shape} is not a single image")
  return array


def _tiff_planes(tif) -> np.ndarray:
  """The first page, or the run of pages like it from the start (bands stored one per page, as multispectral
  files do), at most MAX_TIFF_PAGES of them: pages are visited one by one, never the whole page chain, which a
  damaged file makes endless."""
  first = tif.pages[0]
  planes = [first.asarray()]
  for i in range(1, MAX_TIFF_PAGES):
    try:
      page = tif.pages[i]
    except IndexError:
      break
    if page is None or page.shape != first.shape or page.dtype != first.dtype:
      break
    planes.append(page.asarray())
  return planes[0] if len(planes) == 1 else np.stack(planes)


def check_tiff_pixels(path: Path, tif) -> None:
  """check_pixels for every page of an open tifffile.TiffFile, from its tags."""
  try:
    page = tif.pages[0]  # not len(tif.pages): that walks the whole page chain, which a damaged file makes endless
  except IndexError:
    raise SuperTinyError(f"{path}: TIFF without images") from None
  check_pixels(path, int(page.imagewidth), int(page.imagelength) * max(1, int(getattr(page, "imagedepth", 1))))


@contextmanager
def atomic_output(path: Path, suffix: str = ".tmp") -> Iterator[str]:
  """A temporary file beside `path` to write into; renamed over `path` when the block ends without error, removed
  when it fails, so `path` only ever holds a complete file."""
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def remove_partial_outputs(path: Path) -> list[Path]:
  """Remove the temporaries `atomic_output` left beside `path` (a process killed between creating one and entering
  its clean-up leaves it); returns what was removed."""
  pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}")  # mkstemp's prefix, then 8 random characters
  removed = []
  for candidate in path.parent.glob(f".{glob.escape(path.name)}.*") if path.parent.is_dir() else ():
    if pattern.match(candidate.name):
      candidate.unlink(missing_ok=True)
      removed.append(candidate)
  return removed


def write_image(path: str | Path, array: np.ndarray) -> None:
  """Write an HxWxC uint8/uint16 array atomically (a temporary file renamed into place)."""
  path = Path(path)
  if array.ndim == 2:
    array = array[:, :, None]
  suffix = path.suffix.lower()
  with atomic_output(path, suffix) as tmp:
    if suffix in (".tif", ".tiff"):
      import tifffile

      tifffile.imwrite(tmp, array[..., 0] if array.shape[2] == 1 else array)
    elif array.dtype == np.uint16 and suffix == ".png":
      import png

      h, w, c = array.shape
      with open(tmp, "wb") as f:
        png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16).write_array(f, array.reshape(-1))
    else:
      if array.dtype != np.uint8:
        raise SuperTinyError(f"{path}: {array.dtype} cannot be written as {suffix}; use .png or .tif")
      if array.shape[2] not in (1, 2, 3, 4):
        raise SuperTinyError(f"{path}: {array.shape[2]} bands cannot be written as {suffix}; use .tif")
      image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
      fmt = _pillow_format(suffix, path)
      try:
        image.save(tmp, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
      except (OSError, ValueError, KeyError) as exc:  # e.g. alpha in a JPEG
        raise SuperTinyError(f"{path}: cannot be written as {fmt} ({exc})") from None


PILLOW_FORMATS = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".ppm": "PPM"}
WRITABLE_SUFFIXES = frozenset({*PILLOW_FORMATS, ".tif", ".tiff"})


def _pillow_format(suffix: str, path: Path) -> str:
  if suffix not in PILLOW_FORMATS:
    raise SuperTinyError(f"{path}: unsupported output format {suffix or '(no suffix)'}")
  return PILLOW_FORMATS[suffix]


def to_float(array: np.ndarray) -> np.ndarray:
  """uint8/uint16 -> float64 in [0, 1]."""
  return array.astype(np.float64) / np.iinfo(array.dtype).max


def from_float(image: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
  """float in [0, 1] -> rounded, clipped integers of dtype (uint8 or uint16)."""
  top = np.iinfo(dtype).max
  return np.clip(np.round(np.asarray(image, dtype=np.float64) * top), 0, top).astype(dtype)

