"""The digits of Levine et al.'s adversarial training, offline: scikit-learn's bundled ``load_digits``.

Their experiment uses MNIST (28x28, 60,000 training images). No wheel here ships MNIST, so this module uses the
1,797 handwritten digits that ship inside scikit-learn (8x8 pixels, 17 grey levels 0..16, 64 pixels per digit),
scaled to [0, 1] and upsampled bilinearly to ``size`` x ``size`` (default 16). The split is stratified and seeded.

Images are returned as 3-channel tensors with three identical channels, (N, 3, size, size) in [0, 1]: the
engine's models take RGB images, and every l2 size in this package (the attack's eps, sigma) is measured over
all 3·size² values, as everywhere in certattr. The network averages the channels first (:mod:`.network`), so a
perturbation equal on the three channels moves its grey input by 1/sqrt(3) of its 3-channel norm.
"""
from __future__ import annotations

from ...models.digits import MAX_GREY, DigitSplits, digit_splits

__all__ = ["DigitSplits", "digit_splits", "MAX_GREY"]
