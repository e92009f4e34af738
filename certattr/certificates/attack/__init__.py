"""l2 attacks on attributions (Ghorbani et al. 2019, as adapted by Levine et al.), one job per module.

Normalised-gradient descent on a differentiable surrogate, with random restarts, projection onto the eps-ball
around x (l2, [0,1] pixel units) and the [0,1] box, and backtracking so that the **real** model's predicted
class never changes. Every evaluation uses the pipeline's noise (:mod:`certattr.engine.noise`), and every
certification goes through the pipeline's engine (:class:`certattr.engine.smoothing.SmoothedAttribution`,
optionally with its sample cache).

* :mod:`.surrogate`: the softplus copy of the model (every ``nn.ReLU`` -> ``Softplus(beta)``, every
  ``nn.ReLU6`` -> ``Softplus(beta)(x) - Softplus(beta)(x - 6)``) and the grad / IxG maps with a graph;
* :mod:`.loop`: the attack loop shared by all objectives (restarts, steps, projection, backtracking) and
  :class:`AttackResult`;
* :mod:`.objectives`: (a) :func:`attack_topk`, the top-k overlap of the unsmoothed map or of Sparsified
  SmoothGrad (surrogate: its relaxed variant); (b) :func:`attack_cosine`, the cosine of the uniformly smoothed
  (or unsmoothed) map;
* :mod:`.certified`: (c) :func:`attack_certified`, the smoothed (or plain) top-K labels of the certified pixels
  nearest their decision boundary, measured afterwards with fresh noise and more samples than certification
  used; with :mod:`.targets` (which pixels), :mod:`.membership` (their smoothed or plain top-K membership) and
  :mod:`.flips` (which flipped, and the random-direction control);
* :mod:`.sweep`: :func:`pixel_attack_sweep`, the attack on certified and uncertified targets over a grid of
  eps / R, beside the random control, as one table;
* :mod:`.settings`: what the attacks are given besides eps: :class:`AttackSettings` (the loop),
  :class:`PixelAttackSettings` (the certified-pixel attack) and :class:`TargetSettings` (its targets and their
  measurement).
"""
from .certified import attack_certified
from .flips import random_perturbation, target_flips
from .loop import AttackResult
from .membership import plain_membership, smoothed_membership
from .objectives import attack_cosine, attack_topk
from .settings import (DEFAULT_ATTACK, DEFAULT_ATTACK_SAMPLING, DEFAULT_ATTACKED_CERTIFICATE, AttackSettings,
                       PixelAttackSettings, TargetSettings)
from .surrogate import (DIFFERENTIABLE_METHODS, SmoothReLU6, differentiable_maps, first_order, predicted_class,
                        smooth_surrogate)
from .sweep import PixelAttackSweep, class_constraint_counts, pixel_attack_sweep
from .targets import TARGET_GROUPS, choose_targets, evaluation_seed, reference_labels, select_seed, selection_agreement

__all__ = ["SmoothReLU6", "smooth_surrogate", "differentiable_maps", "predicted_class", "AttackResult",
           "attack_topk", "attack_cosine", "attack_certified", "choose_targets", "smoothed_membership",
           "plain_membership", "target_flips", "random_perturbation", "selection_agreement", "select_seed",
           "evaluation_seed", "reference_labels", "first_order", "DIFFERENTIABLE_METHODS", "TARGET_GROUPS",
           "pixel_attack_sweep", "PixelAttackSweep", "class_constraint_counts", "AttackSettings",
           "PixelAttackSettings", "TargetSettings", "DEFAULT_ATTACK", "DEFAULT_ATTACK_SAMPLING",
           "DEFAULT_ATTACKED_CERTIFICATE"]
