"""Levine, Singla and Feizi's second defense: adversarial training for robust gradient maps (their Sec. 4,
Eq. 4.1), reproduced offline on scikit-learn's bundled digits, and what it does to certificates.

* :mod:`.data`: the digits (8x8, upsampled), split per class with a seed;
* :mod:`.network`: their small CNN, its softplus twin and its gradient maps; :func:`.network.digit_model`
  wraps a trained network as a model the engine certifies;
* :mod:`.saliency_attack`: their l2 attack on the top-k overlap of gradient maps (its settings:
  :class:`.saliency_attack.SaliencyAttackSettings`), and the random control;
* :mod:`.training`: the regularised loss, the seeded training loop and the weights cache;
* :mod:`.evaluation`: their Fig. 6 and 2 as a run measures them, and the certified view (the paper's
  certificate and Sparsified SmoothGrad's) of the trained networks; Levine's Fig. 1(b) on the bundled photos.
"""
from .data import DigitSplits, digit_splits
from .network import DigitCNN, digit_model, saliency_maps
from .saliency_attack import (AttackOutcome, SaliencyAttackSettings, random_perturbation, saliency_attack,
                              topk_overlap, topk_sets)
from .training import TrainedNetwork, TrainingSettings, regularised_loss, saliency_penalty, train, trained_network

__all__ = ["DigitSplits", "digit_splits", "DigitCNN", "digit_model", "saliency_maps", "AttackOutcome",
           "SaliencyAttackSettings", "random_perturbation", "saliency_attack", "topk_overlap", "topk_sets",
           "TrainedNetwork", "TrainingSettings", "regularised_loss", "saliency_penalty", "train", "trained_network"]
