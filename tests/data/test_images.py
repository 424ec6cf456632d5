"""Image reading and writing keep bit depth, channels and alpha; bad files give one-line errors naming them."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from supertiny.data.images import from_float, list_images, read_image, to_float, write_image
from supertiny.data.raster import read_raster
from supertiny.errors import SuperTinyError

RNG = np.random.default_rng(3)


def _handmade_png16(path: Path, array: np.ndarray) -> None:
  """A 16-bit RGB PNG written byte by byte (filter 0 rows), independent of any imaging library."""
  h, w, _ = array.shape
  big_endian = array.astype(">u2")
  raw = b"".join(b"\x00" + big_endian[i].tobytes() for i in range(h))

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

  header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
  path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                   + chunk(b"IEND", b""))


def test_reads_16bit_rgb_png_exactly(tmp_path):
  array = RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
  _handmade_png16(tmp_path / "a.png", array)
  got = read_image(tmp_path / "a.png")
  assert got.dtype == np.uint16
  np.testing.assert_array_equal(got, array)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_dtype_and_channels(tmp_path, channels, dtype):
  array = RNG.integers(0, np.iinfo(dtype).max + 1, (7, 11, channels)).astype(dtype)
  write_image(tmp_path / "x.png", array)
  got = read_image(tmp_path / "x.png")
  assert got.dtype == dtype and got.shape == array.shape
  np.testing.assert_array_equal(got, array)


def test_16bit_gray_png_from_pillow(tmp_path):
  array = RNG.integers(0, 65536, (6, 5), dtype=np.uint16)
  Image.fromarray(array).save(tmp_path / "g.png")
  got = read_image(tmp_path / "g.png")
  assert got.dtype == np.uint16 and got.shape == (6, 5, 1)
  np.testing.assert_array_equal(got[..., 0], array)


def test_tiff_16bit_many_bands(tmp_path):
  bands_last = RNG.integers(0, 65536, (10, 12, 3), dtype=np.uint16)
  tifffile.imwrite(tmp_path / "rgb.tif", bands_last)
  np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), bands_last)
  planar = RNG.integers(0, 4096, (6, 10, 12), dtype=np.uint16)  # bands first, as multispectral files store them
  tifffile.imwrite(tmp_path / "ms.tif", planar)
  np.testing.assert_array_equal(read_image(tmp_path / "ms.tif"), np.moveaxis(planar, 0, -1))
  write_image(tmp_path / "out.tif", bands_last)
  np.testing.assert_array_equal(read_image(tmp_path / "out.tif"), bands_last)


def test_a_nodata_tag_its_pixels_cannot_hold_reads_quietly(tmp_path, caplog):
  # Landsat's uint8 Fmask files carry GDAL_NODATA -9999; GDAL ignores such a tag, tifffile warned about it per file
  rasterio = pytest.importorskip("rasterio")
  path = tmp_path / "fmask.tif"
  pixels = np.arange(48, dtype=np.uint8).reshape(6, 8)
  tifffile.imwrite(path, pixels, extratags=[(42113, "s", 0, "-9999", True)])
  with caplog.at_level("WARNING"):
    raster = read_raster(path)
    plain = read_image(path)
  assert not [r for r in caplog.records if "GDAL_NODATA" in r.getMessage()]
  with rasterio.open(path) as gdal:
    np.testing.assert_array_equal(raster.pixels[:, :, 0], gdal.read(1))
    np.testing.assert_array_equal(plain[:, :, 0], gdal.read(1))
    assert gdal.nodata is None


def test_palette_and_bilevel_images_become_plain(tmp_path):
  rgb = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
  Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
  assert read_image(tmp_path / "p.png").shape == (8, 8, 3)
  Image.fromarray(rgb[..., 0] > 128).save(tmp_path / "b.png")
  assert set(np.unique(read_image(tmp_path / "b.png"))) <= {0, 255}


def test_bad_files_are_refused_naming_the_file(tmp_path, assets):
  truncated = tmp_path / "cut.png"
  truncated.write_bytes((assets / "Set5" / "baby.png").read_bytes()[:4000])
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  for path, why in [(truncated, "not a readable image"), (text, "not a readable image"),
                    (tmp_path / "missing.png", "no such file"), (tmp_path, "is a folder")]:
    with pytest.raises(SuperTinyError, match=why) as info:
      read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_write_is_atomic_and_cleans_up(tmp_path):
  with pytest.raises(SuperTinyError, match="unsupported output format"):
    write_image(tmp_path / "x.xyz", np.zeros((4, 4, 3), np.uint8))
  with pytest.raises(SuperTinyError, match="cannot be written"):
    write_image(tmp_path / "x.jpg", np.zeros((4, 4, 3), np.uint16))
  assert list(tmp_path.iterdir()) == []


def test_list_images_skips_other_files_and_refuses_empty_folders(tmp_path):
  (tmp_path / "a.png").write_bytes(b"")
  (tmp_path / "readme.txt").write_text("hi")
  (tmp_path / "sub").mkdir()
  with pytest.warns(UserWarning, match="readme.txt"):
    assert list_images(tmp_path) == [tmp_path / "a.png"]
  with pytest.raises(SuperTinyError, match="no images found"):
    list_images(tmp_path / "sub")
  with pytest.raises(SuperTinyError, match="no such folder"):
    list_images(tmp_path / "nope")


def test_float_conversions():
  a = np.array([0, 128, 255], np.uint8)
  np.testing.assert_array_equal(from_float(to_float(a), np.uint8), a)
  np.testing.assert_array_equal(from_float(np.array([-0.2, 0.5, 1.7]), np.uint16), [0, 32768, 65535])
