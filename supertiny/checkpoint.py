"""Checkpoints: one safetensors file with the model weights, the optimizer state and, in its metadata, everything
needed to rebuild the model (name, scale, channels, options) plus the training config, step and validation scores.
Writes are atomic: a temporary file in the same folder renamed over the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tinygrad import Tensor
from tinygrad.nn.state import get_state_dict, safe_save

from .data.images import atomic_output
from .errors import SuperTinyError
from .models import create_model
from .models.weights import load_weights, read_safetensors

FORMAT = "supertiny-checkpoint-1"
META_KEY = "supertiny"


def save_checkpoint(path: str | Path, model: Any, meta: dict[str, Any], optimizer_state: dict[str, Tensor] | None = None
                    ) -> None:
  """Write model weights (`model/...`), optimizer state (`optimizer/...`) and metadata atomically."""
  path = Path(path)
  tensors = {f"model/{k}": v for k, v in get_state_dict(model).items()}
  tensors.update({f"optimizer/{k}": v for k, v in (optimizer_state or {}).items()})
  header = {"format": FORMAT, "model": model.name, "scale": model.scale, "channels": model.channels, **meta}
  with atomic_output(path) as tmp:
    safe_save(tensors, tmp, metadata={META_KEY: json.dumps(header)})


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
  """(metadata, tensors) of a SuperTiny checkpoint; a one-line error if the file is not one."""
  path = Path(path)
  if not path.is_file():
    raise SuperTinyError(f"{path}: no such checkpoint file")
  arrays, header = read_safetensors(path)
  try:
    meta = json.loads(header.get(META_KEY, "{}"))
  except json.JSONDecodeError as exc:
    raise SuperTinyError(f"{path}: its '{META_KEY}' metadata is not JSON ({exc})") from None
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise SuperTinyError(f"{path}: not a SuperTiny checkpoint (no '{META_KEY}' metadata)")
  return meta, {k: Tensor(v) for k, v in arrays.items()}


def model_from_checkpoint(path: str | Path, border: str | None = None) -> tuple[Any, dict[str, Any]]:
  """Rebuild the model a checkpoint describes and load its weights; returns (model, metadata). `border` ("zeros"
  or "symmetric", models.base.SRNet) overrides the checkpoint's; the metadata returned says which was used."""
  meta, tensors = read_checkpoint(path)
  options = meta.get("options", {})
  if not (isinstance(meta.get("model"), str) and type(meta.get("scale")) is int
          and (meta.get("channels") is None or type(meta.get("channels")) is int) and isinstance(options, dict)):
    raise SuperTinyError(f"{path}: its metadata does not name a model (model, scale, channels, options)")
  if border is not None:
    options = {**options, "border": border}
    meta = {**meta, "options": options}
  try:
    model = create_model(meta["model"], scale=meta["scale"], channels=meta["channels"], **options)
  except (TypeError, ValueError) as exc:
    if border is None:
      raise
    raise SuperTinyError(f"{path}: {meta['model']} cannot take border {border!r} ({exc})") from None
  load_weights(model, {k: v.numpy() for k, v in section(tensors, "model").items()})
  return model, meta


def section(tensors: dict[str, Tensor], name: str) -> dict[str, Tensor]:
  """The `model` or `optimizer` part of a checkpoint's tensors, with the prefix removed."""
  return {k.removeprefix(f"{name}/"): v for k, v in tensors.items() if k.startswith(f"{name}/")}


def export_weights(source: str | Path, target: str | Path, border: str | None = None) -> dict[str, Any]:
  """Copy a checkpoint keeping the model weights and metadata, dropping the optimizer state; returns the metadata.
  `border` ("zeros" or "symmetric", see models.base.SRNet) sets how the exported model extends images past their
  edges; the weights are the same either way."""
  model, meta = model_from_checkpoint(source, border)
  keep = {k: v for k, v in meta.items() if k not in ("format", "model", "scale", "channels")}
  save_checkpoint(target, model, keep)
  return meta
