"""The next chunk's noisy copies, drawn in a background thread while the model runs on this chunk.

On a GPU the model's pass of a chunk takes tens of milliseconds and the CPU waits for it; drawing the 100
noisy copies of a 224² image with NumPy takes about a quarter of a second of CPU (seed hashing and normal
draws). Drawn one chunk ahead, that time overlaps the model's instead of adding to it. On the CPU the model's
own threads use every core, so there is nothing to overlap with: the engine prefetches only where the model
runs on another device (see :attr:`certattr.engine.smoothing.SmoothedAttribution.prefetch`).

The copies are a function of (seed, image id, sample indices) alone (:mod:`certattr.engine.noise`), so a
prefetched batch is exactly the batch the next call would draw: certificates do not change. A prefetch that
is not asked for (the next chunk came from the cache, or another image is certified next) is dropped.
"""
from __future__ import annotations

import threading
from typing import Callable

import torch

__all__ = ["CopyPrefetch"]


class CopyPrefetch:
    """At most one batch drawn ahead: :meth:`start` a draw for a key, :meth:`take` it back by the same key."""

    def __init__(self):
        self._key = None
        self._thread: threading.Thread | None = None
        self._slot: list = [None]  # each draw writes its own slot: a dropped draw still running cannot overwrite

    def start(self, key: tuple, draw: Callable[[], torch.Tensor]) -> None:
        """Draw ``draw()`` in a background thread for ``key`` (whose first element is the image tensor, compared by
        identity; the rest by equality). Replaces an earlier prefetch that was not taken."""
        self._drop()
        slot = [None]

        def run():
            try:
                slot[0] = draw()
            except BaseException as err:  # re-raised in the thread that takes it
                slot[0] = err

        self._key, self._slot = key, slot
        self._thread = threading.Thread(target=run, name="certattr-copy-prefetch", daemon=True)
        self._thread.start()

    def take(self, key: tuple) -> torch.Tensor | None:
        """The batch drawn for ``key`` (waiting for it if it is still being drawn), or None when none was."""
        if self._thread is None or not self._matches(key):
            self._drop()
            return None
        self.wait()
        result = self._slot[0]
        self._drop()
        if isinstance(result, BaseException):
            raise result
        return result

    def wait(self) -> None:
        """Wait for the draw in progress (the time the model did not cover)."""
        self._thread.join()

    def _matches(self, key: tuple) -> bool:
        return (self._key is not None and len(self._key) == len(key) and self._key[0] is key[0]
                and self._key[1:] == key[1:])

    def _drop(self) -> None:
        self._key, self._thread, self._slot = None, None, [None]
