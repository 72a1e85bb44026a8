"""ViT image encoder with DPT reassemble blocks (MindSpore port of ``modules/models/lseg_vit.py``).

Cell and parameter names mirror the torch reference (``model.blocks.N.attn.qkv``,
``act_postprocessN.3`` ...); LayerNorm ``gamma/beta`` are the only renames.
Weights start as timm's ViT starts them (its default ``init_weights``): linear
layers truncated-normal with std 0.02 and zero biases, position embeddings the
same, the class token normal with std 1e-6; convolutions, the readout
projection and norms as torch's defaults (MindSpore 2.x's defaults equal them).
"""
from __future__ import annotations

import mindspore as ms
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import Normal, TruncatedNormal, initializer

from lang_seg.config import BackboneConfig

from .table_free import GELU, Softmax


def layer_norm(width: int, eps: float) -> nn.LayerNorm:
    return nn.LayerNorm((width,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)


class PatchEmbed(nn.Cell):
    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size, pad_mode="valid", has_bias=True)


def vit_dense(cin: int, cout: int) -> nn.Dense:
    """A linear layer of timm's ViT, initialised as timm does."""
    return nn.Dense(cin, cout, weight_init=TruncatedNormal(0.02), bias_init="zeros", has_bias=True)


class Attention(nn.Cell):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = vit_dense(dim, dim * 3)
        self.proj = vit_dense(dim, dim)
        # q @ k^T without a transpose of k, attn @ v with a gradient free of transposes (``ops.matmul``'s has
        # two), softmax with a gradient free of broadcasting: each would keep index tables (``table_free``)
        self.scores = ops.BatchMatMul(transpose_b=True)
        self.weighted = ops.BatchMatMul()
        self.softmax = Softmax(axis=-1)

    def construct(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = self.softmax(self.scores(q * self.scale, k))
        x = self.weighted(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(x)


class Mlp(nn.Cell):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = vit_dense(dim, hidden)
        self.act = GELU()
        self.fc2 = vit_dense(hidden, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Cell):
    """timm's pre-norm transformer block (LayerNorm eps 1e-6)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = layer_norm(dim, 1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = layer_norm(dim, 1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def construct(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Cell):
    """The parts of timm's VisionTransformer that LSeg runs (up to the last hooked block)."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        vit = config.vit
        self.patch_size = vit.patch_size
        grid = vit.img_size // vit.patch_size
        self.patch_embed = PatchEmbed(vit.patch_size, vit.embed_dim)
        self.cls_token = Parameter(initializer(Normal(1e-6), (1, 1, vit.embed_dim), ms.float32), name="cls_token")
        self.pos_embed = Parameter(
            initializer(TruncatedNormal(0.02), (1, 1 + grid * grid, vit.embed_dim), ms.float32), name="pos_embed"
        )
        self.grid = grid
        depth = config.hooks[-1] + 1
        self.blocks = nn.CellList([Block(vit.embed_dim, vit.num_heads, vit.mlp_ratio) for _ in range(depth)])


class Slice(nn.Cell):
    def construct(self, x):
        return x[:, 1:]


class AddReadout(nn.Cell):
    def construct(self, x):
        tokens = x[:, 1:]
        return tokens + ops.broadcast_to(x[:, 0:1], tokens.shape)


class ProjectReadout(nn.Cell):
    def __init__(self, in_features: int):
        super().__init__()
        self.project = nn.SequentialCell([nn.Dense(2 * in_features, in_features), GELU()])

    def construct(self, x):
        tokens = x[:, 1:]
        readout = ops.broadcast_to(x[:, 0:1], tokens.shape)
        return self.project(ops.cat((tokens, readout), -1))


def make_readout(readout: str, vit_features: int) -> nn.Cell:
    if readout == "ignore":
        return Slice()
    if readout == "add":
        return AddReadout()
    return ProjectReadout(vit_features)


def make_resample(channels: int, factor: float):
    if factor == 1:
        return []
    if factor < 1:
        return [nn.Conv2d(channels, channels, 3, stride=2, pad_mode="pad", padding=1, has_bias=True)]
    k = int(factor)
    return [nn.Conv2dTranspose(channels, channels, k, stride=k, pad_mode="valid", has_bias=True)]


class VitBackbone(nn.Cell):
    """``pretrained``: the ViT plus ``act_postprocess1..4``; returns the four reassembled maps."""

    def __init__(self, config: BackboneConfig, readout: str = "project"):
        super().__init__()
        self.hooks = tuple(config.hooks)
        self.patch_size = config.vit.patch_size
        self.model = VisionTransformer(config)
        vit_features = config.vit.embed_dim
        posts = []
        for channels, factor in zip(config.reassemble_features, config.resample):
            # indices 1, 2 (transpose, unflatten) hold no weights: identity placeholders so
            # that the convs sit at upstream's indices 3 and 4
            posts.append(nn.SequentialCell([
                make_readout(readout, vit_features),
                nn.Identity(),
                nn.Identity(),
                nn.Conv2d(vit_features, channels, 1, pad_mode="valid", has_bias=True),
                *make_resample(channels, factor),
            ]))
        self.act_postprocess1, self.act_postprocess2, self.act_postprocess3, self.act_postprocess4 = posts
        self.has_resample = tuple(len(p) > 4 for p in posts)

    def resized_pos_embed(self, grid_h: int, grid_w: int):
        model = self.model
        grid = model.pos_embed[:, 1:].reshape(1, model.grid, model.grid, -1).transpose(0, 3, 1, 2)
        grid = ops.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        grid = grid.transpose(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return ops.cat((model.pos_embed[:, :1], grid), 1)

    def forward_tokens(self, x):
        model = self.model
        b = x.shape[0]
        grid_h = x.shape[2] // self.patch_size
        grid_w = x.shape[3] // self.patch_size
        x = model.patch_embed.proj(x)
        x = x.reshape(b, x.shape[1], -1).transpose(0, 2, 1)
        cls = ops.broadcast_to(model.cls_token, (b, 1, x.shape[2]))
        x = ops.cat((cls, x), 1)
        x = x + ops.broadcast_to(self.resized_pos_embed(grid_h, grid_w), x.shape)  # the batch explicitly
        outputs = ()
        index = 0
        for block in model.blocks:
            x = block(x)
            if index in self.hooks:
                outputs = outputs + (x,)
            index += 1
        return outputs

    def _reassemble(self, post, has_resample: bool, tokens, grid_h: int, grid_w: int):
        t = post[0](tokens)
        t = t.transpose(0, 2, 1).reshape(t.shape[0], t.shape[2], grid_h, grid_w)
        t = post[3](t)
        if has_resample:
            t = post[4](t)
        return t

    def construct(self, x):
        grid_h = x.shape[2] // self.patch_size
        grid_w = x.shape[3] // self.patch_size
        t1, t2, t3, t4 = self.forward_tokens(x)
        return (
            self._reassemble(self.act_postprocess1, self.has_resample[0], t1, grid_h, grid_w),
            self._reassemble(self.act_postprocess2, self.has_resample[1], t2, grid_h, grid_w),
            self._reassemble(self.act_postprocess3, self.has_resample[2], t3, grid_h, grid_w),
            self._reassemble(self.act_postprocess4, self.has_resample[3], t4, grid_h, grid_w),
        )
