"""Running a model on one image: colour handling (Y models, grayscale, alpha, bands) around the tensor call."""

from __future__ import annotations

import numpy as np
from tinygrad import Tensor

from .data.images import from_float, to_float
from .errors import SuperTinyError
from .models.registry import SRModel
from .ops import imresize, rgb_to_ycbcr, ycbcr_to_rgb


def run_model(model: SRModel, planes: np.ndarray) -> np.ndarray:
  """HxWxC float array in [0, 1] -> the model's HxWxC output (unclipped); one tensor call."""
  x = Tensor(np.ascontiguousarray(planes.transpose(2, 0, 1)[None], dtype=np.float32))
  return model(x).numpy()[0].transpose(1, 2, 0).astype(np.float64)


def super_resolve(model: SRModel, image: np.ndarray) -> np.ndarray:
  """Super-resolve a float image in [0, 1] (HxW or HxWxC) with `model`; returns float HxWxC in [0, 1].

  Y-channel models (channels=1) see the Y of colour images while Cb and Cr are upscaled with bicubic; RGB models
  see grayscale images as three equal channels; alpha (the last channel of 2- or 4-channel images) is upscaled
  with bicubic; models with channels=None take every channel as it is.
  """
  if image.ndim == 2:
    image = image[:, :, None]
  bands = image.shape[2]
  alpha = None
  if bands in (2, 4) and model.channels is not None:
    image, alpha = image[..., :-1], image[..., -1:]
    bands -= 1
  if model.channels is None:
    out = run_model(model, image)
  elif model.channels == bands:
    out = run_model(model, image)
  elif model.channels == 1 and bands == 3:
    ycbcr = rgb_to_ycbcr(image)
    luma = run_model(model, ycbcr[..., :1])
    chroma = imresize(ycbcr[..., 1:], float(model.scale))
    out = ycbcr_to_rgb(np.concatenate([luma, chroma], axis=2))
  elif model.channels == 3 and bands == 1:
    out = run_model(model, np.repeat(image, 3, axis=2)).mean(axis=2, keepdims=True)
  elif model.channels == 1:
    out = np.concatenate([run_model(model, image[..., b:b + 1]) for b in range(bands)], axis=2)
  else:
    raise SuperTinyError(f"model {model.name!r} takes {model.channels} channels; the image has {bands}")
  if alpha is not None:
    out = np.concatenate([out, imresize(alpha, float(model.scale))], axis=2)
  return np.clip(out, 0.0, 1.0)


def upscale_array(model: SRModel, image: np.ndarray) -> np.ndarray:
  """Super-resolve an integer image (uint8 or uint16, HxWxC) into an integer image of the same dtype."""
  return from_float(super_resolve(model, to_float(image)), image.dtype)
