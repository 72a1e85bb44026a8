"""CLIP text tower (torch reference), built from OpenAI CLIP's own layers.

Parameter names are those of ``clip.model.CLIP`` minus the image tower, so the
``net.clip_pretrained.*`` keys of upstream checkpoints load one-to-one; the
image tower (``visual.*``) and CLIP's ``logit_scale`` are never used by LSeg.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from lang_seg.config import TextConfig
from lang_seg.labels import import_clip

_clip_model = import_clip("clip.model")
LayerNorm, Transformer = _clip_model.LayerNorm, _clip_model.Transformer


def causal_mask(context_length: int) -> torch.Tensor:
    mask = torch.empty(context_length, context_length)
    mask.fill_(float("-inf"))
    return mask.triu_(1)


class ClipTextEncoder(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.context_length = config.context_length
        self.transformer = Transformer(
            width=config.width,
            layers=config.layers,
            heads=config.heads,
            attn_mask=causal_mask(config.context_length),
        )
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, config.width))
        self.ln_final = LayerNorm(config.width)
        self.text_projection = nn.Parameter(torch.empty(config.width, config.embed_dim))
        self.reset_parameters()

    def reset_parameters(self):
        # CLIP's own initialisation (clip.model.CLIP.initialize_parameters, text part).
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        width, layers = self.transformer.width, self.transformer.layers
        proj_std = (width ** -0.5) * ((2 * layers) ** -0.5)
        attn_std = width ** -0.5
        fc_std = (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(L, context_length)`` token ids -> ``(L, embed_dim)`` text features (unnormalised)."""
        dtype = self.text_projection.dtype
        x = self.token_embedding(tokens).type(dtype) + self.positional_embedding.type(dtype)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x).type(dtype)
        # features at the end-of-text token (the largest id in each sequence)
        return x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)] @ self.text_projection
