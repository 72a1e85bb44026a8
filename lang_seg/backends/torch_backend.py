"""Torch backend: the reference LSegNet."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import torch

from ..config import NetOptions
from ..errors import LangSegError
from ..model import SegModel
from ..names import match_state


def torch_device(device: str) -> torch.device:
    name = device.replace("gpu", "cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LangSegError(f"device {device!r} requested but torch sees no CUDA GPU: use device='cpu'")
    return torch.device(name)


def load_state(net: torch.nn.Module, state: Dict[str, np.ndarray], what: str = "checkpoint") -> List[str]:
    """Strictly load numpy weights into ``net``; returns the accepted unused keys."""
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    unused = match_state(expected, state, what)
    tensors = {k: torch.from_numpy(np.asarray(state[k])) for k in expected}
    net.load_state_dict(tensors, strict=True)
    return unused


class TorchModel(SegModel):
    backend = "torch"

    def __init__(self, options: NetOptions, device: str = "cpu", state: Optional[Dict[str, np.ndarray]] = None,
                 pretrained: bool = False, what: str = "checkpoint"):
        from lang_seg.modules.models.lseg_net_zs import build_net  # LSegNet, or a zero-shot net

        self.torch_device = torch_device(device)
        net = build_net(options, pretrained=pretrained and state is None, device=str(self.torch_device))
        unused = load_state(net, state, what) if state is not None else []
        super().__init__(options, device, unused)
        self.net = net.to(self.torch_device).eval()

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}

    @torch.no_grad()
    def _encode_text(self, labels: List[str]) -> torch.Tensor:
        return self.net.encode_text(labels)

    @torch.no_grad()
    def _forward(self, images: np.ndarray, text_features: torch.Tensor) -> np.ndarray:
        x = torch.from_numpy(images).to(self.torch_device)
        return self.net(x, text_features).float().cpu().numpy()

    @torch.no_grad()
    def _pixel_embeddings(self, images: np.ndarray) -> np.ndarray:
        return self.net.pixel_embeddings(torch.from_numpy(images).to(self.torch_device)).float().cpu().numpy()

    def _normalized_text(self, text_features: torch.Tensor) -> np.ndarray:
        from lang_seg.modules.models.lseg_net import l2_normalize

        return l2_normalize(text_features, -1).float().cpu().numpy()
