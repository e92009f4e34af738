"""Helpers the engine's test files share: an engine with small settings, and the peak memory of a run measured in a
fresh process (the tests' own, so that no test imports a benchmark script)."""
from __future__ import annotations

import subprocess
import sys

from certattr.engine.smoothing import SmoothedAttribution


def engine(model, cache=None, **kw):
    """A SmoothedAttribution with the tests' defaults: GradCam at the Input layer, sigma 0.25, n = 40, n0 = 10,
    no progress bar; ``cache`` is the sample cache (None: none)."""
    kw.setdefault("n", 40)
    kw.setdefault("n0", 10)
    return SmoothedAttribution(model, kw.pop("method", "gradcam"), kw.pop("layer", "input"), kw.pop("sigma", 0.25),
                               cache=cache, progress=False, **kw)


_MEASURE = """
import re, sys, warnings, torch
def peak_mb():  # this process's own peak (VmHWM: ru_maxrss would keep the forking parent's peak across exec)
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s*(\\d+) kB", f.read()).group(1)) / 1024
torch.set_num_threads({threads})
from certattr.engine.smoothing import SmoothedAttribution
from certattr.models.data import bundled_photo
from certattr.models.registry import load_model
if {model!r} == "tiny":  # a model of a few kB on a large image: the maps, not the model, fill the memory
    from certattr.models.testing import tiny_model
    model, target = tiny_model(), 3
    pixels = torch.nn.functional.interpolate(bundled_photo("coffee").tensor[None], size={size}, mode="bilinear")[0]
else:
    model, target, pixels = load_model({model!r}), 967, bundled_photo("coffee").tensor
before = peak_mb()
engine = SmoothedAttribution(model, {method!r}, {layer!r}, 0.25, n={n}, n0=min(10, {n} - 1), chunk_size={chunk},
                             cache={cache!r}, progress=False)
if {mode!r} == "sample":
    engine.sample(pixels, "coffee", target)
else:
    warnings.simplefilter("ignore")
    engine.certify(pixels, "coffee", target, ks=(50, 25, 5))
print(before, peak_mb())
"""


def peak_rss_mb(mode: str, model: str, method: str, layer: str, n: int, chunk: int, cache=None,
                threads: int = 2, size: int = 224) -> tuple[float, float]:
    """(MB resident after loading ``model``, peak MB resident) of one ``sample`` (``mode="sample"``, uncached: it
    returns all n maps) or ``certify`` (``mode="certify"``, with the sample cache ``cache``) of the bundled coffee
    photo, in a fresh Python process (Linux's VmHWM of that process). ``model="tiny"``: the tests' tiny CNN on the
    photo resized to ``size`` x ``size``."""
    code = _MEASURE.format(threads=threads, model=model, method=method, layer=layer, n=n, chunk=chunk,
                           cache=None if cache is None else str(cache), mode=mode, size=size)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, peak = map(float, run.stdout.split())
    return loaded, peak
