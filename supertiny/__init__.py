"""SuperTiny: super-resolution in tinygrad, evaluated exactly as the literature does."""

__version__ = "0.1.0"

from .metrics import psnr, ssim  # noqa: E402
from .models import MODELS, create_model  # noqa: E402
from .models.weights import load_weights  # noqa: E402
from .ops import imresize, modcrop, pixel_shuffle, pixel_unshuffle, resize, rgb_to_y, rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from .upscaling import upscale  # noqa: E402

__all__ = ["MODELS", "create_model", "imresize", "load_weights", "modcrop", "pixel_shuffle", "pixel_unshuffle",
           "psnr", "resize", "rgb_to_y", "rgb_to_ycbcr", "ssim", "upscale", "ycbcr_to_rgb",
           "__version__"]
