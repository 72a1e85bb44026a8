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
        n, _, h, w = image_features.shape
        image = image_features.transpose(0, 2, 3, 1).reshape(-1, self.out_c)
        image = image / ops.norm(image, dim=-1, keepdim=True)
        text = text_features / ops.norm(text_features, dim=-1, keepdim=True)
        if self.half_logits:
            # upstream's (and the reference's) order: cast to fp16, then scale by the fp16-rounded scale in fp16;
            # the fp16 product is summed in fp32 and rounded to fp16 once, as torch's fp16 matmul does
            image = image.astype(ms.float16) * ms.Tensor(self.logit_scale, ms.float16)
            text = text.astype(ms.float16)
            logits = ops.matmul(image.astype(ms.float32), text.astype(ms.float32).T).astype(ms.float16)
            logits = logits.astype(ms.float32)
        else:
            logits = ops.matmul(self.logit_scale * image, text.T)
        return logits.reshape(n, h, w, -1).transpose(0, 3, 1, 2)

    def forward_stages(self, x, text_features):
        """Every intermediate the parity checks compare, by name (``lang_seg.config.STAGES``)."""
        s = self.scratch
        layer_1, layer_2, layer_3, layer_4 = self.pretrained(x)
        path_4 = s.refinenet4.first(s.layer4_rn(layer_4))
        path_3 = s.refinenet3(path_4, s.layer3_rn(layer_3))
        path_2 = s.refinenet2(path_3, s.layer2_rn(layer_2))
        path_1 = s.refinenet1(path_2, s.layer1_rn(layer_1))
        image_features = s.head1(path_1)
        logits = self.cosine_logits(image_features, text_features)
        out = logits
        if self.arch_option != 0:
            for _ in range(self.block_depth - 1):
                out = s.head_block(out)
            out = s.head_block(out, False)
        out = s.output_conv(out)
        return {"layer_1": layer_1, "layer_2": layer_2, "layer_3": layer_3, "layer_4": layer_4,
                "path_4": path_4, "path_3": path_3, "path_2": path_2, "path_1": path_1,
                "image_features": image_features, "logits": logits, "out": out}

    def construct(self, x, text_features):
        return self.forward_stages(x, text_features)["out"]
