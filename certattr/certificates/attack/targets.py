"""Which pixels the certified-pixel attack targets: those of a group (certified, or uncertified with a clear
majority) nearest their decision boundary, ranked by their agreeing samples, and their reference labels; and the
K, seeds and level that :class:`.settings.TargetSettings` leaves to the certificate."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ...engine.certificate import ABSTAIN, Certificate
from ...engine.config import SamplingConfig
from ...engine.noise import numpy_generator
from ...engine.validation import CertattrError, check_choice, check_positive_int
from ..settings import PixelCertificateSettings
from .membership import smoothed_membership
from .settings import TARGET_GROUPS, TargetSettings

__all__ = ["TARGET_GROUPS", "choose_targets", "reference_labels", "select_seed", "evaluation_seed",
           "selection_agreement", "attacked_k", "evaluation_of"]


def select_seed(seed: int) -> int:
    """The seed of the fresh samples that rank the targets (neither the certification's nor the evaluation's)."""
    return int(seed) + 2000


def evaluation_seed(seed: int) -> int:
    """The default seed of the fresh samples that evaluate a perturbed image (not the certification's)."""
    return int(seed) + 1000


def attacked_k(targets: TargetSettings, ks: Sequence[float]) -> float:
    """The K (%) whose labels are attacked: ``targets.k``, which must be one of the certified ``ks``, or (None)
    the largest of them."""
    ks = [float(k) for k in ks]
    k = max(ks) if targets.k is None else targets.k
    if k not in ks:
        raise CertattrError(f"k={k:g} is not allowed: it must be one of the certified ks {ks}")
    return k


def evaluation_of(targets: TargetSettings, seed: int, alpha: float) -> tuple[int, float]:
    """(eval_seed, eval_alpha) of the evaluation of a certificate of sampling seed ``seed`` and level ``alpha``:
    the targets' own, or :func:`evaluation_seed` and ``alpha``. The evaluation needs fresh noise: its seed must
    differ from ``seed``."""
    eval_seed = evaluation_seed(seed) if targets.eval_seed is None else targets.eval_seed
    if eval_seed == seed:
        raise CertattrError(f"eval_seed={eval_seed} is not allowed: it must differ from seed={seed} "
                            f"(the evaluation needs fresh noise)")
    return eval_seed, alpha if targets.eval_alpha is None else targets.eval_alpha


def choose_targets(cert: Certificate, k: float, group: str = "certified", count: int = 32, seed: int = 0,
                   image_id: str = "", extra_agree: np.ndarray | None = None, extra_n: int = 0,
                   min_agreement: float = 2 / 3) -> np.ndarray:
    """Flat pixel indices of the ``count`` pixels of ``group`` at this K nearest their decision boundary.

    Agreeing samples: c_p of the n - n0 test samples, plus, with ``extra_agree`` ((H, W) or flat: how many of
    ``extra_n`` further fresh samples agree with the label, e.g. :func:`selection_agreement`), those too, which
    ranks the many pixels that tie on c_p. The pool: "certified", the certified pixels; "uncertified", the
    abstained pixels whose majority m_p is clear, at least ``min_agreement`` of the agreeing samples (a label
    the map does give, though without a certificate; pixels near 1/2 would "flip" under any perturbation and
    by sampling error alone). Within the pool, the pixels with the fewest agreeing samples; remaining ties
    are broken by the distance to an anchor (a seeded random pixel among the weakest), so that tied targets
    form one compact region.
    """
    group = check_choice("group", group, TARGET_GROUPS)
    count = check_positive_int("count", count)
    i = cert.index(k)
    labels, counts = cert.labels[i].ravel(), cert.counts[i].ravel().astype(np.int64)
    extra = np.zeros_like(counts) if extra_agree is None else np.asarray(extra_agree).ravel().astype(np.int64)
    total = counts + extra
    if group == "certified":
        pool = np.flatnonzero(labels != ABSTAIN)
    else:
        n_total = int(cert.n) - int(cert.n0) + (int(extra_n) if extra_agree is not None else 0)
        pool = np.flatnonzero((labels == ABSTAIN) & (total >= min_agreement * n_total))
    if pool.size == 0:
        return pool
    shuffle = numpy_generator(seed, image_id, 0, f"attack-targets|{group}|{float(k):g}").permutation(labels.size)
    agree = total[pool]
    weakest = pool[agree == agree.min()]
    anchor = weakest[np.argmin(np.argsort(shuffle)[weakest])]  # the first of the weakest in the seeded order
    w = cert.labels.shape[2]
    dist2 = (pool // w - anchor // w) ** 2 + (pool % w - anchor % w) ** 2
    return pool[np.lexsort((pool, dist2, agree))][:count]


def selection_agreement(model, image, target, cert: Certificate, k: float, *,
                        certificate: PixelCertificateSettings, n: int, image_id: str, cache=None) -> np.ndarray:
    """(H*W,) int: how many of ``n`` fresh samples (seed :func:`select_seed` of the certificate's sampling seed, its
    chunk size, method, layer and sigma from ``certificate``) agree with the certificate's label (its majority
    where it abstains) at each pixel of ``image`` (3, H, W): the extra samples :func:`choose_targets` ranks by."""
    sampling = SamplingConfig(n=n, seed=select_seed(certificate.sampling.seed),
                              chunk_size=certificate.sampling.chunk_size)
    member = smoothed_membership(model, image.cpu(), target, attribution=certificate.attribution, k=k,
                                 sigma=certificate.sigma, sampling=sampling, image_id=image_id, cache=cache).ravel()
    i = cert.index(k)
    label = np.where(cert.labels[i] == ABSTAIN, cert.majority[i], cert.labels[i]).ravel()
    ones = np.rint(member * n).astype(np.int64)
    return np.where(label == 1, ones, n - ones)


def reference_labels(cert: Certificate, k: float, targets) -> np.ndarray:
    """(len(targets),) int64 in {0, 1}: the certificate's label at K = ``k`` of each target (flat pixel index),
    its majority m_p where it abstains: the label an attack tries to flip."""
    i = cert.index(k)
    labels = cert.labels[i].ravel()
    label = np.where(labels == ABSTAIN, cert.majority[i].ravel(), labels)
    return label[np.asarray(targets, dtype=np.int64)].astype(np.int64)
