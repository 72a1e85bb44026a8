"""LSegNet (MindSpore port of ``modules/models/lseg_net.py``), graph-compilable.

``construct(x, text_features)`` is the whole image path; text features come
from ``clip_pretrained`` once per label set.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from lang_seg.config import LOGIT_SCALE, NetOptions
from lang_seg.errors import LangSegError

from .clip_text import ClipTextEncoder
from .lseg_blocks import (
    FeatureFusionBlock_custom,
    Interpolate,
    Scratch,
    bottleneck_block,
    depthwise_block,
)
from .lseg_vit import VitBackbone
from .table_free import UnitNormalize


class LSegNet(nn.Cell):
    def __init__(self, options: NetOptions = NetOptions()):
        super().__init__()
        self.options = options
        config = options.config
        self.out_c = config.text.embed_dim
        self.arch_option = options.arch_option
        self.block_depth = options.block_depth
        self.half_logits = options.half_logits
        self.logit_scale = LOGIT_SCALE
        self.unit_channels = UnitNormalize(axis=1)  # image features (N, C, H*W)
        self.unit_rows = UnitNormalize(axis=-1)  # text features (L, C)
        self.batch_matmul = ops.BatchMatMul()

        self.clip_pretrained = ClipTextEncoder(config.text)
        self.pretrained = self.image_encoder(options)
        self.scratch = Scratch(config.reassemble_features, options.features)
        self.scratch.refinenet1 = FeatureFusionBlock_custom(options.features, options.use_bn)
        self.scratch.refinenet2 = FeatureFusionBlock_custom(options.features, options.use_bn)
        self.scratch.refinenet3 = FeatureFusionBlock_custom(options.features, options.use_bn)
        self.scratch.refinenet4 = FeatureFusionBlock_custom(options.features, options.use_bn)
        self.scratch.head1 = nn.Conv2d(options.features, self.out_c, 1, pad_mode="valid", has_bias=True)
        if options.arch_option == 1:
            self.scratch.head_block = bottleneck_block(activation=options.activation)
        elif options.arch_option == 2:
            self.scratch.head_block = depthwise_block(activation=options.activation)
        self.scratch.output_conv = nn.SequentialCell([Interpolate()])

    def image_encoder(self, options: NetOptions) -> nn.Cell:
        """``pretrained``: the cell that returns the four maps the decoder fuses (zero-shot nets override it)."""
        if options.config.vit is None:
            raise LangSegError(f"backbone {options.backbone} has no ViT: it exists only as upstream's zero-shot "
                               "LSegRNNetZS (lang_seg.load_model, test_lseg_zs.py)")
        return VitBackbone(options.config, readout=options.readout)

    def cosine_logits(self, image_features, text_features):
        """The reference's ``(scale * image / |image|) @ (text / |text|).T`` per pixel, computed in the (N, C, H*W)
        layout as ``text @ image`` so that no transpose and no broadcasting division enters the graph (each
        keeps per-element index tables on CPU: 2.8 GB in the training graph at 480x480, ``table_free``)."""
        n, c, h, w = image_features.shape
        image = self.unit_channels(image_features.reshape(n, c, h * w))
        text = self.unit_rows(text_features)  # (L, C), or (N, L, C): one label set per image
        if self.half_logits:
            # upstream's (and the reference's) order: cast to fp16, then scale by the fp16-rounded scale in fp16;
            # the fp16 product is summed in fp32 and rounded to fp16 once, as torch's fp16 matmul does
            image = image.astype(ms.float16) * ms.Tensor(self.logit_scale, ms.float16)
            text = text.astype(ms.float16)
            logits = self._per_image(text.astype(ms.float32), image.astype(ms.float32)).astype(ms.float16)
            logits = logits.astype(ms.float32)
        else:
            logits = self._per_image(text, self.logit_scale * image)
        return logits.reshape(n, -1, h, w)

    def _per_image(self, text, image):
        """``(L, C) @ (N, C, P) -> (N, L, P)``: the text broadcast over the batch explicitly, a ``BatchMatMul``
        (``ops.matmul``'s gradient transposes); ``(N, L, C)`` text, one label set per image (the zero-shot
        episodes), multiplies as it is."""
        if len(text.shape) == 2:
            text = ops.broadcast_to(text, (image.shape[0],) + text.shape)
        return self.batch_matmul(text, image)

    def text_embeddings(self, tokens):
        """``(L, context_length)`` CLIP token ids -> ``(L, out_c)`` text features, L2-normalised."""
        tokens = tokens.astype(ms.int32)
        eot = ops.argmax(tokens, dim=-1).astype(ms.int32)  # the end-of-text token has the largest id
        return self.unit_rows(self.clip_pretrained(tokens, eot))

    def encode_image(self, x):
        """The image path's stages, ``layer_1`` to ``image_features`` (``(N, out_c, H/2, W/2)``, unnormalised)."""
        s = self.scratch
        layer_1, layer_2, layer_3, layer_4 = self.pretrained(x)
        path_4 = s.refinenet4.first(s.layer4_rn(layer_4))
        path_3 = s.refinenet3(path_4, s.layer3_rn(layer_3))
        path_2 = s.refinenet2(path_3, s.layer2_rn(layer_2))
        path_1 = s.refinenet1(path_2, s.layer1_rn(layer_1))
        return {"layer_1": layer_1, "layer_2": layer_2, "layer_3": layer_3, "layer_4": layer_4,
                "path_4": path_4, "path_3": path_3, "path_2": path_2, "path_1": path_1,
                "image_features": s.head1(path_1)}

    def pixel_embeddings(self, x):
        """``(N, out_c, H/2, W/2)`` image features, L2-normalised per pixel: the logits are
        ``logit_scale`` times their dot products with ``text_embeddings``, upsampled x2."""
        features = self.encode_image(x)["image_features"]
        n, c, h, w = features.shape
        return self.unit_channels(features.reshape(n, c, h * w)).reshape(n, c, h, w)

    def forward_stages(self, x, text_features):
        """Every intermediate the parity checks compare, by name (``lang_seg.config.STAGES``)."""
        s = self.scratch
        stages = self.encode_image(x)
        logits = self.cosine_logits(stages["image_features"], text_features)
        out = logits
        if self.arch_option != 0:
            for _ in range(self.block_depth - 1):
                out = s.head_block(out)
            out = s.head_block(out, False)
        out = s.output_conv(out)
        stages["logits"] = logits
        stages["out"] = out
        return stages

    def construct(self, x, text_features):
        return self.forward_stages(x, text_features)["out"]
