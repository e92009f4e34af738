"""Levine et al.'s adversarial training for interpretation (their Eq. 4.1), with a weights cache.

Loss of a batch (x, y), averaged over its B images::

    CE(f(x), y) + lam · || map(x) - map(x + delta) ||_2

``map`` is the gradient map of :func:`.network.saliency_maps` for the label y (|d logit_y / d x| summed over
channels, (size, size)), computed with ``create_graph=True`` so that the penalty's gradient w.r.t. the weights
is a double backward; delta comes from their saliency attack (:func:`.saliency_attack.saliency_attack`, on the
softplus twin, with the current weights, detached: the weights' gradient does not flow through the attack).
``lam = 0`` skips the attack and the penalty: the run is then plain cross-entropy training, step for step.

Everything random is seeded: the initial weights (``torch.manual_seed(seed)`` inside a forked RNG), the batch
order (its own generator, ``seed``) and the attack's directions (another generator, ``seed + 1``), so the
attack does not shift the batch order. Adam, full batches in a seeded permutation each epoch.

**Weights cache.** :func:`trained_network` stores the weights under ``<cache>/robust_training/<key>.pt``,
key = SHA-256 of every setting, the digits' fingerprint and the file format; the file also holds the settings
and is checked on load (a file whose settings differ, or that cannot be read, is retrained and rewritten with
one warning). Writes go to a temporary name and one rename (:func:`certattr.engine.files.atomic_write_bytes`).
"""
from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...engine.files import atomic_write_bytes
from ...engine.validation import CertattrError, check_choice, check_interval, check_positive_int
from .data import DigitSplits, digit_splits
from .network import ACTIVATIONS, DigitCNN, one_thread, saliency_maps
from .saliency_attack import SaliencyAttackSettings, saliency_attack

__all__ = ["TrainingSettings", "TrainedNetwork", "regularised_loss", "saliency_penalty", "train", "settings_key",
           "trained_network", "WeightsCacheWarning", "CACHE_FORMAT"]

CACHE_FORMAT = 2  #: bump when the training or the file layout changes what a key means (2: attack ties)


class WeightsCacheWarning(UserWarning):
    """A cached weights file was unreadable or held other settings: it is retrained and rewritten."""


@dataclass(frozen=True)
class TrainingSettings:
    """Every setting that decides the trained weights (all of them are in the cache key).

    ``lam``: the penalty's weight; ``attack_eps`` (l2 over 3·size² values, [0,1] units), ``attack_steps``,
    ``attack_k_frac`` (k = ceil(frac · size²)), ``attack_beta`` (softplus twin), ``attack_restarts``: the
    training-time attack; ``size``/``test_fraction``/``data_seed``: the digits; the rest: the network and Adam.
    """

    lam: float = 0.0
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    size: int = 16
    channels: tuple = (16, 32)
    hidden: int = 64
    activation: str = "relu"
    attack_eps: float = 1.0
    attack_steps: int = 2
    attack_restarts: int = 1
    attack_k_frac: float = 0.1
    attack_beta: float = 10.0
    test_fraction: float = 0.25
    data_seed: int = 0

    def __post_init__(self):
        check_interval("lam", self.lam, 0, low_open=False, what="the penalty weight")
        for name in ("epochs", "batch_size", "hidden", "attack_steps", "attack_restarts"):
            check_positive_int(name, getattr(self, name), 0 if name == "attack_steps" else 1)
        check_positive_int("seed", self.seed, 0)
        check_positive_int("data_seed", self.data_seed, 0)
        check_interval("lr", self.lr, 0, what="Adam's learning rate")
        check_interval("attack_eps", self.attack_eps, 0, what="the training attack's l2 size")
        check_interval("attack_k_frac", self.attack_k_frac, 0, 1, high_open=False, what="the attacked top-k share")
        check_interval("attack_beta", self.attack_beta, 0, what="the softplus twin's sharpness")
        check_choice("activation", self.activation, ACTIVATIONS)
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))

    def replace(self, **changes) -> "TrainingSettings":
        return replace(self, **changes)

    def attack_k(self) -> int:
        return max(1, -(-int(round(self.attack_k_frac * self.size ** 2 * 1e9)) // 10 ** 9))

    def attack_settings(self) -> SaliencyAttackSettings:
        """The training-time attack's steps, restarts and twin (its size and k: ``attack_eps``, :meth:`attack_k`)."""
        return SaliencyAttackSettings(steps=self.attack_steps, restarts=self.attack_restarts, beta=self.attack_beta)

    def network(self) -> DigitCNN:
        """A fresh network with this seed's initial weights (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return DigitCNN(self.size, self.channels, self.hidden, activation=self.activation)


@dataclass
class TrainedNetwork:
    """A trained network with its settings, per-epoch history and test accuracy; ``cached``: read from the cache."""

    net: DigitCNN
    settings: TrainingSettings
    history: list = field(default_factory=list)  #: per epoch {"epoch", "ce", "penalty", "loss"} (batch means)
    test_accuracy: float = float("nan")
    cached: bool = False


def saliency_penalty(net: DigitCNN, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean over the batch of ||map(x) - map(x_adv)||_2 (both maps with a graph: differentiable in the weights)."""
    a = saliency_maps(net, x, y, create_graph=True)
    b = saliency_maps(net, x_adv, y, create_graph=True)
    return (a - b).flatten(1).norm(dim=1).mean()


def regularised_loss(net: DigitCNN, x: torch.Tensor, y: torch.Tensor, lam: float,
                     x_adv: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, ce, penalty) of Eq. 4.1 for one batch; ``x_adv = None`` or ``lam = 0``: penalty 0, loss = ce."""
    ce = F.cross_entropy(net(x), y)
    if lam == 0 or x_adv is None:
        return ce, ce.detach(), torch.zeros(())
    penalty = saliency_penalty(net, x, x_adv, y)
    return ce + lam * penalty, ce.detach(), penalty.detach()


@torch.no_grad()
def accuracy(net: DigitCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((net(images).argmax(dim=1) == labels).double().mean())


def train(settings: TrainingSettings, data: DigitSplits | None = None, *, progress: bool = False) -> TrainedNetwork:
    """Train one network with Eq. 4.1 under ``settings`` (no cache: see :func:`trained_network`), on one CPU
    thread (:func:`.network.one_thread`)."""
    with one_thread():
        return _train(settings, data, progress)


def _train(settings: TrainingSettings, data: DigitSplits | None, progress: bool) -> TrainedNetwork:
    data = data if data is not None else digit_splits(settings.size, settings.test_fraction, settings.data_seed)
    if data.size != settings.size:
        raise CertattrError(f"the digits have size {data.size}, which is not allowed with settings.size={settings.size}")
    net = settings.network().train()
    opt = torch.optim.Adam(net.parameters(), lr=settings.lr)
    order_gen = torch.Generator().manual_seed(settings.seed)
    attack_gen = torch.Generator().manual_seed(settings.seed + 1)
    attack = settings.attack_settings()
    x_all, y_all = data.train_images, data.train_labels
    history = []
    bar = tqdm(range(settings.epochs), desc=f"training lambda={settings.lam:g}", disable=not progress, leave=False)
    for epoch in bar:
        perm = torch.randperm(len(x_all), generator=order_gen)
        sums, batches = torch.zeros(3, dtype=torch.float64), 0
        for start in range(0, len(perm), settings.batch_size):
            idx = perm[start:start + settings.batch_size]
            x, y = x_all[idx], y_all[idx]
            x_adv = None
            if settings.lam > 0:
                x_adv = saliency_attack(net, x, y, eps=settings.attack_eps, k=settings.attack_k(), attack=attack,
                                        generator=attack_gen).adversarial.detach()
            loss, ce, penalty = regularised_loss(net, x, y, settings.lam, x_adv)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.tensor([float(loss.detach()), float(ce), float(penalty)], dtype=torch.float64)
            batches += 1
        means = (sums / batches).tolist()
        history.append({"epoch": epoch + 1, "loss": means[0], "ce": means[1], "penalty": means[2]})
        bar.set_postfix(loss=f"{means[0]:.3f}")
    net.eval()
    return TrainedNetwork(net, settings, history, accuracy(net, data.test_images, data.test_labels))


def _settings_json(settings: TrainingSettings) -> str:
    return json.dumps({**asdict(settings), "channels": list(settings.channels)}, sort_keys=True)


def settings_key(settings: TrainingSettings, data_fingerprint: str) -> str:
    """SHA-256 (24 hex digits) of the settings, the digits' fingerprint and :data:`CACHE_FORMAT`."""
    text = f"{CACHE_FORMAT}|{data_fingerprint}|{_settings_json(settings)}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read(path: Path, settings: TrainingSettings, fingerprint: str) -> TrainedNetwork | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored["settings"] != _settings_json(settings) or stored["data"] != fingerprint \
                or stored["format"] != CACHE_FORMAT:
            raise ValueError("it holds other settings")
        net = settings.network()
        net.load_state_dict(stored["weights"])
        history = json.loads(stored["history"])
        return TrainedNetwork(net.eval(), settings, history, float(stored["test_accuracy"]), cached=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is retrained, never trusted
        warnings.warn(f"weights cache {str(path)!r} cannot be used ({type(err).__name__}: {err}); retraining",
                      WeightsCacheWarning, stacklevel=3)
        return None


def trained_network(settings: TrainingSettings, cache_dir=None, data: DigitSplits | None = None, *,
                    progress: bool = False) -> TrainedNetwork:
    """The network trained under ``settings``: read from ``cache_dir`` when a file with exactly these settings
    (and digits) is there, else trained and written atomically (``cache_dir=None``: always trained)."""
    data = data if data is not None else digit_splits(settings.size, settings.test_fraction, settings.data_seed)
    fingerprint = data.fingerprint()
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "robust_training" / f"{settings_key(settings, fingerprint)}.pt"
        found = _read(path, settings, fingerprint)
        if found is not None:
            return found
    result = train(settings, data, progress=progress)
    if path is not None:
        buffer = io.BytesIO()
        torch.save({"format": CACHE_FORMAT, "settings": _settings_json(settings), "data": fingerprint,
                    "weights": result.net.state_dict(), "history": json.dumps(result.history),
                    "test_accuracy": result.test_accuracy}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return result
