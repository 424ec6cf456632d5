"""Scaled dot-product attention shaped for tinygrad's scheduler.

Written plainly (`(q @ k.T).softmax() @ v`), tinygrad fuses the softmax into the kernels that consume it: the
forward pass and, worse, the backward pass recompute every probability once per element they produce, and the
gradients of q, k and v (one reshaped tensor in both attention models) are summed in one kernel with three
reductions. Realizing the probabilities once and keeping each of the three gradients its own kernel gives the
same values (docs/performance.md: the conv-transformer's attention step about 6 times faster on the CPU).
"""

from __future__ import annotations

import math

from tinygrad import Tensor


def attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
  """softmax(q k^T / sqrt(d) + bias) v over the last two axes (..., tokens, d); `bias` broadcasts to the scores."""
  q, k, v = q.contiguous_backward(), k.contiguous_backward(), v.contiguous_backward()
  scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
  if bias is not None:
    scores = scores + bias
  return scores.softmax(-1).contiguous() @ v
