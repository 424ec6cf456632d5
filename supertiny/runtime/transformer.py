"""Attention and linear layers shaped for tinygrad's scheduler.

tinygrad fuses elementwise work into the kernels that consume it. Where the consumer is a matmul, every input
element is read once per output column, so a fused producer (LayerNorm, GELU, softmax) is recomputed that many
times: 128-512 times in the transformers' linear layers and attention. Written plainly, the softmax is also
recomputed in the backward pass, and the gradients of q, k and v (one reshaped tensor in both attention models) are
summed in one kernel with three reductions. Realizing a matmul's input once, and keeping the three gradients apart,
gives the same values several times faster; in training the softmax's stages and each linear output's gradient are
realized too, so the backward pass recomputes nothing (docs/performance.md, "Attention and linear layers").
"""

from __future__ import annotations

import math

from tinygrad import Tensor

from .internals import training_mode
from .matmul import matmul


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
  """x @ weight.T + bias (torch's layout: weight is out x in), its input realized first and, in the backward pass,
  its output's gradient (both are read by a matmul)."""
  out = matmul(x.contiguous().reshape(-1, x.shape[-1]), weight.T)
  if bias is not None:
    out = out + bias
  return out.contiguous_backward().reshape(*x.shape[:-1], weight.shape[0])


def attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> Tensor:
  """softmax(q k^T / sqrt(d) + bias) v over the last two axes (..., tokens, d); `bias` broadcasts to the scores."""
  q, k, v = q.contiguous_backward(), k.contiguous_backward(), v.contiguous_backward()
  if not training_mode():
    # fused: recomputing the short q.k products is cheaper than storing the scores between stages
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return (scores if bias is None else scores + bias).softmax(-1).contiguous() @ v
  # in training every stage is realized, so the backward pass computes none of them twice; 1/sqrt(d) multiplies q
  # (d values a token) rather than the scores (one per pair of tokens)
  scores = matmul(q * (1 / math.sqrt(q.shape[-1])), k.transpose(-2, -1))
  if bias is not None:
    scores = scores + bias
  # the shift by the row maximum has no gradient (softmax ignores it): detached rather than differentiated through max
  scores = scores.contiguous()
  exps = (scores - scores.max(-1, keepdim=True).detach()).exp().contiguous()
  return matmul((exps / exps.sum(-1, keepdim=True)).contiguous(), v)
