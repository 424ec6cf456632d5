"""What happens to an image tile around the model, as tinygrad operations that run inside the tile's jit: scaling
the stored values to [0, 1], the colour route (Y models see luma while chroma is upscaled with MATLAB bicubic; RGB
models see grayscale as three channels; alpha is upscaled with bicubic beside the model), clipping, and rounding
back to the stored integer type. All in float32 on the device: numpy only copies pixels in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tinygrad import Tensor, dtypes
from tinygrad.dtype import DType
from tinygrad.nn.state import get_parameters

from ..errors import SuperTinyError
from ..ops import rgb_to_ycbcr, upsample, ycbcr_to_rgb
from .internals import from_numpy_dtype


def stored_type(stored: str) -> tuple[DType, float | None]:
  """A stored numpy dtype's name -> (its tinygrad dtype, the value that maps to 1.0: the range's top for unsigned
  integers, None for floats, which map by their bounds)."""
  dtype = np.dtype(stored)
  return from_numpy_dtype(dtype), float(np.iinfo(dtype).max) if dtype.kind == "u" else None


@dataclass(frozen=True)
class Route:
  """How a tile of `bands` bands reaches a model of `channels` channels (None: any), and what comes back:
  `final`: the output in the stored type and units (integers rounded) inside the jit; else float32 in [0, 1], for
  tiles that are blended together afterwards. `mapped`: the stored values map to [0, 1] by the `bounds` the tile
  comes with (a radiometry), integers too, and the output is not clipped to [0, 1] but only to what the stored type
  holds (reflectance above full scale stays)."""
  channels: int | None
  bands: int
  alpha: bool
  stored: str
  final: bool
  mapped: bool = False

  def check(self, name: str) -> None:
    colour = self.bands - self.alpha
    if self.channels is None or self.channels == colour or self.channels == 1 or (self.channels, colour) == (3, 1):
      return
    raise SuperTinyError(f"model {name!r} takes {self.channels} channels; the image has {colour}")


def colour_forward(model, x: Tensor, route: Route) -> Tensor:
  """A 1xCxHxW float tile in [0, 1] through `model` by the route's colour handling -> 1xCx(sH)x(sW), clipped."""
  scale = model.scale
  alpha = None
  if route.alpha and route.channels is not None:
    x, alpha = x[:, :-1], x[:, -1:]
  bands = x.shape[1]
  if route.channels is None or route.channels == bands:
    out = model(x)
  elif route.channels == 1 and bands == 3:
    ycbcr = rgb_to_ycbcr(x)
    out = ycbcr_to_rgb(Tensor.cat(model(ycbcr[:, :1]), upsample(ycbcr[:, 1:], scale), dim=1))
  elif route.channels == 3 and bands == 1:
    out = model(x.expand(1, 3, *x.shape[2:])).mean(axis=1, keepdim=True)
  else:  # a Y model on each band of a multi-band image: the bands as a batch
    out = model(x.permute(1, 0, 2, 3)).permute(1, 0, 2, 3)
  if alpha is not None:
    out = Tensor.cat(out, upsample(alpha, scale), dim=1)
  return out if route.mapped else out.clip(0.0, 1.0)


def tile_forward(model, tile: Tensor, bounds: Tensor, route: Route, dtype: DType) -> Tensor:
  """A stored HxWxC tile (uint8, uint16 or float32) -> the model's (sH)x(sW)xC output, stored as `route.final`
  says. `bounds` holds the float values that map
  to 0 and 1 (integers map by their type's range). The model computes in `dtype` (its weights')."""
  stored, top = stored_type(route.stored)
  if route.mapped:
    top_of_type, top = top, None  # integers map by the bounds too
  params = get_parameters(model)
  if params and isinstance(params[0].device, tuple):  # weights replicated over devices (data-parallel training)
    tile, bounds = tile.shard(params[0].device), bounds.shard(params[0].device)
  x = tile.cast(dtypes.float32)
  x = x / top if top is not None else (x - bounds[0]) / (bounds[1] - bounds[0])
  x = x.permute(2, 0, 1).unsqueeze(0)
  out = colour_forward(model, x if dtype == dtypes.float32 else x.cast(dtype), route).float()[0].permute(1, 2, 0)
  if not route.final:
    return out
  if top is None:
    values = out * (bounds[1] - bounds[0]) + bounds[0]
    if route.mapped and top_of_type is not None:
      return values.round().clip(0.0, top_of_type).cast(stored)
    return values
  return (out * top).round().cast(stored)
