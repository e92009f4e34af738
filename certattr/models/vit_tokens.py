"""How this companion splits a ViT-B/16 at its Final layer, checked on one image: the head applied to the
body's patch tokens must reproduce the network's logits, and the reference code's head (the last encoder
block and the classifier, without the encoder's final LayerNorm) does not."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["TokenSplitCheck", "token_split_check", "reinit_zero_head"]


@dataclass(frozen=True)
class TokenSplitCheck:
    """The split of one image. Errors are max |logit difference| over the classes (logit units)."""

    hidden: int  #: channels of the token map (768 for ViT-B/16)
    side: int  #: rows of the token grid (14 for 224x224 images and 16x16 patches; the grid is square)
    tokens: int  #: patch tokens, CLS not counted (196)
    split_error: float  #: head(body(x)) against the network
    no_layernorm_error: float  #: the reference code's head (no final LayerNorm) against the network
    logit_scale: float  #: the largest |logit| of the network
    same_top1: bool  #: does the reference code's head give the network's top-1 class?
    token_norm: np.ndarray  #: (side, side): L1 norm of each patch token over the hidden dimension


def token_split_check(net, image: torch.Tensor) -> TokenSplitCheck:
    """Check the Final-layer split of a loaded torchvision ViT (``net.body``, ``net.head``, ``net.net``) on
    ``image`` (3, 224, 224) in [0, 1]: the token map entering the last encoder block (CLS dropped) and the
    logits of the complete head, of the network, and of the head without the final LayerNorm."""
    with torch.no_grad():
        x = image[None].to(net.device)
        patches, cls = net.body(net.normalize(x))
        logits_split = net.head(patches, cls)
        logits_full = net(x)
        tokens = torch.cat([cls, patches.flatten(2).transpose(1, 2)], dim=1)
        logits_no_ln = net.net.heads(net.net.encoder.layers[-1](tokens)[:, 0])
    return TokenSplitCheck(hidden=int(patches.shape[1]), side=int(patches.shape[2]),
                           tokens=int(patches.shape[2] * patches.shape[3]),
                           split_error=float((logits_split - logits_full).abs().max()),
                           no_layernorm_error=float((logits_no_ln - logits_full).abs().max()),
                           logit_scale=float(logits_full.abs().max()),
                           same_top1=int(logits_full.argmax()) == int(logits_no_ln.argmax()),
                           token_norm=patches[0].abs().sum(dim=0).cpu().numpy())


def reinit_zero_head(net, seed: int) -> bool:
    """torchvision initialises a fresh ViT's classifier to zeros, so every logit and every gradient would
    be 0: re-draw its weight from N(0, 0.02^2) with ``seed`` when it is all zeros. Returns whether it did
    (False for a model without ``net.heads`` or with a non-zero head)."""
    head = getattr(getattr(getattr(net, "net", None), "heads", None), "head", None)
    if head is None or head.weight.any():
        return False
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        head.weight.copy_(0.02 * torch.randn(head.weight.shape, generator=gen))
    return True
