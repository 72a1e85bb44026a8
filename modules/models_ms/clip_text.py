"""CLIP text tower (MindSpore port of ``modules/models/clip_text.py``).

Same parameter names as OpenAI CLIP's text tower; renames are LayerNorm
``gamma/beta`` and the embedding table. Weights start as CLIP's own
``initialize_parameters`` starts the text tower (normal distributions scaled by
the width and depth; attention biases zero; other biases and norms as torch's
defaults), as the torch reference does.
"""
from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common import dtype as mstype
from mindspore.common.initializer import Normal, initializer

from lang_seg.config import TextConfig


def layer_norm(width: int) -> nn.LayerNorm:
    return nn.LayerNorm((width,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=1e-5)


class QuickGELU(nn.Cell):
    def construct(self, x):
        return x * ops.sigmoid(1.702 * x)


class MultiheadAttention(nn.Cell):
    """torch.nn.MultiheadAttention's packed projections, batch-first, with an additive mask."""

    def __init__(self, width: int, heads: int, proj_std: float):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim ** -0.5
        self.in_proj_weight = Parameter(initializer(Normal(width ** -0.5), (3 * width, width), mstype.float32),
                                        name="in_proj_weight")
        self.in_proj_bias = Parameter(initializer("zeros", (3 * width,), mstype.float32), name="in_proj_bias")
        self.out_proj = nn.Dense(width, width, weight_init=Normal(proj_std), bias_init="zeros", has_bias=True)
        self.scores = ops.BatchMatMul(transpose_b=True)  # q @ k^T without a transpose of k

    def construct(self, x, mask):
        b, n, c = x.shape
        # the bias added per row of a 2-D product (BiasAdd), the mask broadcast explicitly: a broadcasting add
        # keeps per-element index tables in a compiled CPU graph (``modules.models_ms.table_free``)
        qkv = ops.bias_add(ops.dense(x.reshape(b * n, c), self.in_proj_weight), self.in_proj_bias)
        qkv = qkv.reshape(b, n, 3, self.heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = self.scores(q * self.scale, k)
        attn = ops.softmax(scores + ops.broadcast_to(mask, scores.shape), axis=-1)
        x = ops.matmul(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.out_proj(x)


class Mlp(nn.Cell):
    def __init__(self, width: int, proj_std: float):
        super().__init__()
        self.c_fc = nn.Dense(width, width * 4, weight_init=Normal((2 * width) ** -0.5), has_bias=True)
        self.gelu = QuickGELU()
        self.c_proj = nn.Dense(width * 4, width, weight_init=Normal(proj_std), has_bias=True)

    def construct(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Cell):
    def __init__(self, width: int, heads: int, proj_std: float):
        super().__init__()
        self.attn = MultiheadAttention(width, heads, proj_std)
        self.ln_1 = layer_norm(width)
        self.mlp = Mlp(width, proj_std)
        self.ln_2 = layer_norm(width)

    def construct(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Cell):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        proj_std = (width ** -0.5) * ((2 * layers) ** -0.5)
        self.resblocks = nn.CellList([ResidualAttentionBlock(width, heads, proj_std) for _ in range(layers)])

    def construct(self, x, mask):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class ClipTextEncoder(nn.Cell):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.context_length = config.context_length
        self.transformer = Transformer(config.width, config.layers, config.heads)
        self.token_embedding = nn.Embedding(config.vocab_size, config.width, embedding_table=Normal(0.02))
        self.positional_embedding = Parameter(
            initializer(Normal(0.01), (config.context_length, config.width), mstype.float32), name="positional_embedding"
        )
        self.ln_final = layer_norm(config.width)
        self.text_projection = Parameter(
            initializer(Normal(config.width ** -0.5), (config.width, config.embed_dim), mstype.float32),
            name="text_projection",
        )
        self.mask = Tensor(np.triu(np.full((config.context_length,) * 2, -np.inf, np.float32), 1))

    def construct(self, tokens, eot_index):
        """``tokens (L, context) int32``, ``eot_index (L,) int32`` -> ``(L, embed_dim)``."""
        x = self.token_embedding(tokens)
        x = x + ops.broadcast_to(self.positional_embedding, x.shape)
        x = self.ln_final(self.transformer(x, self.mask))
        x = ops.gather_d(x, 1, ops.broadcast_to(eot_index.reshape(-1, 1, 1), (x.shape[0], 1, x.shape[2])))
        return ops.matmul(x.squeeze(1), self.text_projection)
