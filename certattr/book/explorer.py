"""An explorable certificate for the book: one self-contained HTML fragment in which the reader picks the method,
the layer, K and tau for one photo, and sees its certified top-K map, its %certified and its radius R change.

    html = certificate_explorer(net, image.tensor, image.id, target, "all", ["input", "final"], 0.15, [50, 25, 5],
                                cache_dir=cache_dir, method_overrides=method_overrides)
    display(HTML(html))

Everything is computed when the fragment is made (at book build time), from the sample cache: for each (method,
layer) the engine's cached top-K maps are read and counted once, and certified at every tau from those counts (what
:meth:`certattr.SmoothedAttribution.certify` with ``tau=`` gives, bit for bit); each certificate holds every K. So
another tau or K draws no new sample when the samples of the chapter's own certification are in the cache (same
model, method settings, sigma, n, seed and chunk size).

The fragment holds the certified maps as small indexed PNGs (4 colours, 2 bits per pixel, identical maps stored once)
drawn over one greyscale JPEG of the photo, all inline (``data:`` URIs), with plain ``<select>`` controls and a few
lines of inline JavaScript: no external script, stylesheet or font, so it works offline, also from ``file://``.
Without JavaScript the initial choice is shown. Its size is bounded (:data:`MAX_BYTES`).
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import html as _html
import io
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..engine.certificate import ABSTAIN, Certificate
from ..engine.certify import CertificationWarning, DegenerateMapWarning, MapCounter
from ..engine.config import DEFAULT_CERT, DEFAULT_SAMPLING, CertConfig, SamplingConfig, check_fits
from ..engine.smoothing import SmoothedAttribution
from ..engine.statistics import certified_radius, min_samples_to_certify
from ..engine.targets import resolve_target
from ..engine.validation import (CertattrError, check_choice, check_image, check_ks, check_layer, check_model,
                                 check_positive_int, check_sigma, check_tau)
from ..evaluation.jobs import Job, method_for, resolve_methods
from .plans import RunSpec
from ..evaluation.names import k_text, layer_title, method_title
from .plotting import ABSTAIN_DARK, ABSTAIN_LIGHT, ABSTAIN_STRIPE, ONE_COLOR, ZERO_COLOR

__all__ = ["DEFAULT_TAUS", "MAX_BYTES", "Exploration", "explore_certificates", "explorer_html",
           "certificate_explorer", "entry_key", "label_png"]

#: the tau offered by default: below, at (the paper's 0.75) and above the paper's; with n = 100 samples on a 224x224
#: map, tau = 0.8 is about the largest that can certify a pixel and tau = 0.9 certifies none (the fragment says so)
DEFAULT_TAUS = (0.6, 0.75, 0.8, 0.9)
MAX_BYTES = 5_000_000  #: the largest fragment :func:`explorer_html` returns (bytes of UTF-8), so the page stays light

#: palette of the map PNGs, index -> RGBA (0-255): certified '0', certified '1', abstain light / dark stripe; the
#: colours of the book's certified maps and overlays (:mod:`certattr.book.plotting`), translucent over the photo
_ZERO, _ONE, _STRIPE_LIGHT, _STRIPE_DARK = 0, 1, 2, 3
_PALETTE = ((*ZERO_COLOR, 0.7), (*ONE_COLOR, 0.85), ABSTAIN_LIGHT, ABSTAIN_DARK)


def _rgba255(colour) -> tuple[int, int, int, int]:
    return tuple(int(round(255 * float(c))) for c in colour)


def _css(colour) -> str:
    r, g, b, a = _rgba255(colour)
    return f"rgba({r},{g},{b},{a / 255:.2f})"


def entry_key(method: str, layer: str, k: float, tau: float) -> str:
    """The fragment's key of one combination, e.g. "gradcam|final|25|0.75" (the values of its four controls)."""
    return f"{method}|{layer}|{k_text(k)}|{float(tau):g}"


def _png(index: np.ndarray, palette) -> bytes:
    """An indexed PNG of ``index`` (H, W) uint8 with the RGBA ``palette`` (at most 4 entries: 2 bits per pixel)."""
    from PIL import Image

    index = np.ascontiguousarray(index, dtype=np.uint8)
    img = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    rgba = [_rgba255(c) for c in palette]
    img.putpalette([v for c in rgba for v in c[:3]])
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True, bits=2, transparency=bytes(c[3] for c in rgba))
    return buf.getvalue()


def label_png(labels: np.ndarray) -> bytes:
    """One certified map as an indexed PNG (2 bits per pixel) of the same size: ``labels`` (H, W) in {1, 0, ABSTAIN}
    -> certified '1' yellow, certified '0' dark (both translucent, to be drawn over the photo), abstain in the light
    and dark diagonal stripes of the book's overlays (:func:`certattr.book.plotting.abstain_stripes`)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.isin(labels, (1, 0, ABSTAIN)).all():
        raise CertattrError(f"labels of shape {labels.shape} are not allowed: give one (H, W) map with values 1, 0 "
                            f"and {ABSTAIN} (abstain)")
    yy, xx = np.mgrid[0:labels.shape[0], 0:labels.shape[1]]
    light = ((yy + xx) // ABSTAIN_STRIPE) % 2 == 0
    index = np.where(labels == 1, _ONE, np.where(labels == 0, _ZERO, np.where(light, _STRIPE_LIGHT, _STRIPE_DARK)))
    return _png(index, _PALETTE)


def _photo_jpeg(image) -> bytes:
    """The photo (C, H, W) in [0, 1] as the book's overlays show it: greyscale, dimmed to 0.15 + 0.6 * grey."""
    from PIL import Image

    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    grey = 0.15 + 0.6 * np.clip(arr, 0, 1).mean(axis=0)
    buf = io.BytesIO()
    Image.fromarray(np.round(255 * grey).astype(np.uint8)).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass
class Exploration:
    """The certificates behind one explorer: ``certificates[(method, layer, tau)]`` holds every K (``ks``, largest
    first) of that method at that layer and tau, all from the same samples; ``undefined[(method, layer)]`` the reason
    a method is not defined there. ``image``: the photo (3, H, W) in [0, 1]; the other fields are the settings."""

    image_id: str
    image: object
    target: int
    methods: list
    layers: list
    ks: tuple
    taus: tuple
    sigma: float
    n: int
    n0: int
    alpha: float
    correction: str
    certificates: dict = field(default_factory=dict)
    undefined: dict = field(default_factory=dict)


def _check_taus(taus) -> tuple:
    try:
        values = [check_tau(t) for t in (taus if isinstance(taus, (list, tuple)) else list(taus))]
    except TypeError:
        raise CertattrError(f"taus={taus!r} is not allowed: give a list of thresholds with 0.5 <= tau < 1") from None
    if not values or len(set(values)) != len(values):
        raise CertattrError(f"taus={list(taus)!r} is not allowed: give one or more distinct thresholds with "
                            f"0.5 <= tau < 1")
    return tuple(sorted(values))


def _check_layers(layers) -> list:
    values = [layers] if isinstance(layers, str) else list(layers or [])
    checked = [check_layer(layer) for layer in values]
    if not checked or len(set(checked)) != len(checked):
        raise CertattrError(f"layers={values!r} is not allowed: give one or more distinct layers of input, final")
    return checked


def explore_certificates(model, job: Job, spec: RunSpec, sampling: SamplingConfig, cert: CertConfig,
                         taus: Sequence[float] = DEFAULT_TAUS, *, cache_dir: str | None = None,
                         progress: bool = False) -> Exploration:
    """Certify ``job``'s image (3, H, W) in [0, 1] (its ``target``: a class index, or None for the model's top-1
    class; its ``image_id`` seeds the noise) for every method (``spec.methods``: names, or "all") and layer of
    ``spec`` at its one noise σ (``spec.sigmas``, [0, 1] pixel units, with ``spec.method_overrides``), at each τ
    of ``taus`` (in [0.5, 1)), with the ``sampling`` (n, seed, chunk size) and ``cert`` (n0, α, correction, K)
    settings, from the samples in ``cache_dir``.

    The engines are those a chapter certifies with the same settings, so after a chapter's own certification
    nothing is sampled: each (method, layer) reads its cached samples once and certifies every τ from their
    counts (``cache_dir=None``: samples once, keeps nothing). The warnings that a certificate cannot certify any
    pixel or is degenerate are not emitted: the explorer shows them as notes. Returns the certificates (each
    with every K) and the undefined pairs.
    """
    image, image_id, target = job.tensor, job.image_id, job.target
    methods, layers, method_overrides = spec.methods, spec.layers, spec.method_overrides
    if len(tuple(spec.sigmas)) != 1:
        raise CertattrError(f"sigmas={list(spec.sigmas)!r} is not allowed: the explorer shows one noise level, give "
                            f"one sigma")
    sigma = tuple(spec.sigmas)[0]
    model = check_model(model)
    if not isinstance(image_id, str) or not image_id:
        raise CertattrError(f"image_id={image_id!r} is not allowed: give the photo's id (a non-empty string; it "
                            f"seeds the noise)")
    image = check_image(image, channels=getattr(model, "channels", 3))
    names, layers = resolve_methods(methods), _check_layers(layers)
    if not names:
        raise CertattrError("methods=[] is not allowed: give one or more method names, or 'all'")
    sigma, taus = check_sigma(sigma), _check_taus(taus)
    config = cert
    check_fits(sampling, config)
    target = resolve_target(model, image, target)
    out = Exploration(image_id, image, target, names, layers, config.ks, taus, sigma, sampling.n, config.n0,
                      config.alpha, config.correction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CertificationWarning)
        warnings.simplefilter("ignore", DegenerateMapWarning)
        for layer in layers:  # methods of one layer one after another: they share the model's memo of a copy
            for name in names:
                method = method_for(name, layer, method_overrides)
                reason = method.undefined_reason(model, layer)
                if reason:
                    out.undefined[(name, layer)] = reason
                    continue
                engine = SmoothedAttribution(model, method, layer, sigma, sampling, config, cache=cache_dir,
                                             progress=progress)
                for tau, cert in zip(taus, _certify_taus(engine, image, image_id, target, taus)):
                    out.certificates[(name, layer, tau)] = cert
    return out


def _certify_taus(engine: SmoothedAttribution, image, image_id: str, target: int, taus) -> list[Certificate]:
    """``engine.certify(image, image_id, target, tau=t)`` for each t of ``taus``, bit for bit, reading the samples
    once: the counts of the top-K maps do not depend on tau, only the test of each pixel does (``image`` and
    ``target`` already checked)."""
    counter = MapCounter(engine.cert.ks, engine.n, engine.cert.n0, image.shape[1:])
    with contextlib.closing(engine.sparsified(image, image_id, target, engine.cert.ks)) as samples:
        for binary, flat in samples:
            counter.add(binary, flat)
    metadata = engine._metadata(image_id, target)  # what engine.certify records
    return [counter.certificate(sigma=engine.sigma, tau=tau, alpha=engine.cert.alpha,
                                correction=engine.cert.correction, metadata=metadata) for tau in taus]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _numbers_text(fractions: dict) -> str:
    """"certified '1': 12.34% · certified '0': 50.00% · abstain: 37.66%" (shares of all pixels of the map)."""
    return (f"certified '1': {_percent(fractions['certified_1'])} · certified '0': "
            f"{_percent(fractions['certified_0'])} · abstain: {_percent(fractions['abstain'])}")


def _entries(exp: Exploration) -> tuple[dict, list]:
    """{key: entry} for every (method, layer, K, tau), and the distinct map images (data URIs) they point to."""
    images, index = [], {}
    entries = {}
    n_pixels = int(exp.image.shape[1] * exp.image.shape[2])
    for name in exp.methods:
        for layer in exp.layers:
            for tau in exp.taus:
                cert: Certificate | None = exp.certificates.get((name, layer, tau))
                radius = certified_radius(exp.sigma, tau)
                for k in exp.ks:
                    title = (f"{method_title(name)} at the {layer_title(layer)} layer, top {k_text(k)}%, "
                             f"τ = {tau:g}")
                    entry = {"title": title, "radius": f"R = σ·Φ⁻¹(τ) = {radius:.3f}", "R": radius, "img": -1,
                             "kind": "map", "note": "", "numbers": "n/a", "fractions": None}
                    if cert is None:
                        reason = re.sub(r"^[a-z0-9_+]+: ", "", exp.undefined[(name, layer)])
                        entry.update(kind="undefined", note=f"Not defined at this layer: {reason}")
                    else:
                        fractions = cert.fractions()[float(k)]
                        entry.update(numbers=_numbers_text(fractions), fractions=fractions, R=cert.radius,
                                     radius=f"R = σ·Φ⁻¹(τ) = {cert.radius:.3f}")
                        if cert.degenerate:
                            entry.update(kind="degenerate", note=f"Degenerate certificate, map not shown: "
                                                                 f"{cert.degenerate}.")
                        else:
                            uri = _data_uri(label_png(cert.label_map(k)), "image/png")
                            if uri not in index:
                                index[uri] = len(images)
                                images.append(uri)
                            entry["img"] = index[uri]
                            needed = min_samples_to_certify(exp.n0, tau, exp.alpha, n_pixels)
                            if exp.n < needed:
                                entry["note"] = (f"n = {exp.n} samples cannot certify any pixel at τ = {tau:g} "
                                                 f"(n0 = {exp.n0}, α = {exp.alpha:g}, {n_pixels} pixels): that "
                                                 f"needs n ≥ {needed}, so every pixel abstains.")
                    entries[entry_key(name, layer, k, tau)] = entry
    return entries, images


def _check_show(show, methods: list, layers: list) -> tuple[str, str]:
    """``show`` as a (method, layer) pair of the explorer's methods and layers, else one line."""
    if not isinstance(show, (list, tuple)) or len(show) != 2:
        raise CertattrError(f"show={show!r} is not allowed: give a (method, layer) pair, e.g. ('lrp', 'input')")
    return check_choice("show[0]", show[0], methods), check_choice("show[1]", show[1], layers)


def _initial(exp: Exploration, entries: dict, show) -> dict:
    """The choice shown first: the largest K, tau = 0.75 (the paper's) where offered, else the smallest tau, and the
    (method, layer) ``show`` if given, else the first method with a map at the first layer where one has (else the
    first method and layer)."""
    tau = DEFAULT_CERT.tau if DEFAULT_CERT.tau in exp.taus else exp.taus[0]
    k = exp.ks[0]
    choice = {"k": k_text(k), "tau": f"{tau:g}"}
    if show is not None:
        method, layer = _check_show(show, exp.methods, exp.layers)
        return {"method": method, "layer": layer, **choice}
    for layer in exp.layers:
        for name in exp.methods:
            if entries[entry_key(name, layer, k, tau)]["kind"] == "map":
                return {"method": name, "layer": layer, **choice}
    return {"method": exp.methods[0], "layer": exp.layers[0], **choice}


_SCRIPT = """(function () {
  var root = document.getElementById("%(id)s");
  if (!root) { return; }
  var data = JSON.parse(root.querySelector("script[type='application/json']").textContent);
  function part(role) { return root.querySelector("[data-role='" + role + "']"); }
  function show() {
    var key = ["method", "layer", "k", "tau"].map(function (c) { return part(c).value; }).join("|");
    var e = data.entries[key];
    var hasMap = e.img >= 0;
    if (hasMap) { part("map").src = data.images[e.img]; }
    part("map").hidden = !hasMap;
    part("photo").hidden = !hasMap;
    part("blank").hidden = hasMap;
    part("blank").textContent = hasMap ? "" : e.note;
    part("note").hidden = !(hasMap && e.note);
    part("note").textContent = hasMap ? e.note : "";
    part("title").textContent = e.title;
    part("numbers").textContent = e.numbers;
    part("radius").textContent = e.radius;
    root.setAttribute("data-shown", key);
  }
  root.querySelectorAll("select").forEach(function (s) { s.addEventListener("change", show); });
  show();
})();"""

_STYLE = """#%(id)s { font-size: 0.9rem; margin: 1em 0; }
#%(id)s .cx-controls { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; margin-bottom: 0.6em; }
#%(id)s .cx-controls label { display: inline-flex; gap: 0.4em; align-items: center; }
#%(id)s .cx-stage { position: relative; width: 100%%; max-width: %(width)dpx; aspect-ratio: %(w)d / %(h)d;
  background: #f4f4f4; border: 1px solid #ccc; }
#%(id)s .cx-stage img { position: absolute; left: 0; top: 0; width: 100%%; height: 100%%; max-width: none;
  margin: 0; border: 0; }
#%(id)s .cx-stage img[data-role='map'] { image-rendering: pixelated; }
#%(id)s .cx-stage img[hidden] { display: none; }
#%(id)s .cx-blank { position: absolute; inset: 0; display: flex; align-items: center; justify-content: center;
  text-align: center; padding: 1.5em; color: #555; font-style: italic; }
#%(id)s .cx-blank[hidden], #%(id)s .cx-note[hidden] { display: none; }
#%(id)s .cx-title { font-weight: bold; margin: 0.5em 0 0.2em 0; }
#%(id)s .cx-note { color: #8a4b00; margin: 0.2em 0; }
#%(id)s .cx-legend { display: flex; flex-wrap: wrap; gap: 0.3em 1em; margin: 0.4em 0; }
#%(id)s .cx-swatch { display: inline-block; width: 1em; height: 1em; vertical-align: middle; margin-right: 0.3em;
  border: 1px solid #888; }"""


def _options(role: str, label: str, values: list, chosen: str) -> str:
    opts = "".join(f'<option value="{_html.escape(v)}"{" selected" if v == chosen else ""}>{_html.escape(t)}</option>'
                   for v, t in values)
    return f'<label>{label} <select data-role="{role}" aria-label="{label}">{opts}</select></label>'


def explorer_html(exp: Exploration, *, show: tuple[str, str] | None = None, max_bytes: int = MAX_BYTES) -> str:
    """The explorer of ``exp`` (:func:`explore_certificates`) as one self-contained HTML fragment (str): controls for
    method, layer, K and tau, the certified map of the chosen combination over the photo (or, where the method is
    not defined at that layer or the certificate is degenerate, a labelled note instead), its %certified ('1', '0',
    abstain, shares of all pixels) and its radius R = sigma Phi^-1(tau) in [0, 1] pixel units. Raises a one-line
    :class:`CertattrError` when the fragment would exceed ``max_bytes`` bytes (UTF-8). ``show``: the (method, layer)
    shown first (default: the first method with a map), at the largest K and tau = 0.75 where offered."""
    max_bytes = check_positive_int("max_bytes", max_bytes)
    entries, images = _entries(exp)
    initial = _initial(exp, entries, show)
    first = entries["|".join(initial[c] for c in ("method", "layer", "k", "tau"))]
    h, w = int(exp.image.shape[1]), int(exp.image.shape[2])
    photo = _data_uri(_photo_jpeg(exp.image), "image/jpeg")
    payload = {"images": images, "entries": {key: {f: e[f] for f in ("title", "radius", "numbers", "note", "img",
                                                                        "kind", "R", "fractions")}
                                             for key, e in entries.items()}}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert inside <script>
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    root = f"certattr-explorer-{digest}"
    controls = "".join([
        _options("method", "Method", [(m, method_title(m)) for m in exp.methods], initial["method"]),
        _options("layer", "Layer", [(l, layer_title(l)) for l in exp.layers], initial["layer"]),
        _options("k", "Top K (%)", [(k_text(k), k_text(k)) for k in exp.ks], initial["k"]),
        _options("tau", "τ", [(f"{t:g}", f"{t:g}") for t in exp.taus], initial["tau"])])
    has_map = first["img"] >= 0
    hidden = "" if has_map else " hidden"
    legend = "".join(f'<span><span class="cx-swatch" style="background:{style}"></span>{_html.escape(text_)}</span>'
                     for style, text_ in (
                         (_css(_PALETTE[_ONE]), "certified '1' (in the top K%)"),
                         (_css(_PALETTE[_ZERO]), "certified '0' (not in the top K%)"),
                         (f"repeating-linear-gradient(45deg,{_css(ABSTAIN_LIGHT)} 0 3px,{_css(ABSTAIN_DARK)} 3px 6px)",
                          "abstain (no claim)")))
    about = (f"{_html.escape(exp.image_id)}, σ = {exp.sigma:g} ([0, 1] pixel units), n = {exp.n} noise samples "
             f"(n0 = {exp.n0} choose each pixel's label), α = {exp.alpha:g} per K ({exp.correction.capitalize()} over the "
             f"{h * w} pixels): with probability at least 1 − α, every certified pixel keeps its label for every "
             f"perturbation of ℓ2 norm below R. Every choice is certified from the same cached samples.")
    parts = [
        f'<div id="{root}" class="certattr-explorer">',
        f"<style>{_STYLE % {'id': root, 'width': min(max(2 * w, 320), 640), 'w': w, 'h': h}}</style>",
        f'<div class="cx-controls">{controls}</div>',
        f'<div class="cx-stage" data-role="stage">',
        f'<img data-role="photo" alt="{_html.escape(exp.image_id)} (greyscale, dimmed)" src="{photo}"{hidden}>',
        f'<img data-role="map" alt="certified top-K map" src="{images[first["img"]] if has_map else photo}"{hidden}>',
        f'<div class="cx-blank" data-role="blank"{"" if not has_map else " hidden"}>'
        f'{_html.escape(first["note"]) if not has_map else ""}</div>',
        "</div>",
        f'<div class="cx-title" data-role="title">{_html.escape(first["title"])}</div>',
        f'<div data-role="numbers">{_html.escape(first["numbers"])}</div>',
        f'<div data-role="radius">{_html.escape(first["radius"])}</div>',
        f'<div class="cx-note" data-role="note"{"" if has_map and first["note"] else " hidden"}>'
        f'{_html.escape(first["note"]) if has_map else ""}</div>',
        f'<div class="cx-legend">{legend}</div>',
        f"<p>{about}</p>",
        f'<script type="application/json">{text}</script>',
        f"<script>{_SCRIPT % {'id': root}}</script>",
        "</div>"]
    out = "\n".join(parts)
    size = len(out.encode("utf-8"))
    if size > max_bytes:
        raise CertattrError(f"the certificate explorer is {size / 1e6:.2f} MB, more than max_bytes = "
                            f"{max_bytes / 1e6:.2f} MB: give fewer methods, layers, K or tau (or a smaller photo)")
    return out


def certificate_explorer(model, job: Job, spec: RunSpec, sampling: SamplingConfig, cert: CertConfig,
                         taus: Sequence[float] = DEFAULT_TAUS, *, cache_dir: str | None = None, progress: bool = False,
                         show: tuple[str, str] | None = None, max_bytes: int = MAX_BYTES) -> str:
    """The explorer of one photo as a self-contained HTML fragment (str, at most ``max_bytes`` bytes): certify
    (:func:`explore_certificates`, from the cache; the same arguments) and render (:func:`explorer_html`). Show it
    in a notebook with ``IPython.display.HTML(...)``; it needs no network and no widget kernel. Every argument is
    checked before any work (``show``: as in :func:`explorer_html`)."""
    check_positive_int("max_bytes", max_bytes)
    if show is not None:
        _check_show(show, resolve_methods(spec.methods), _check_layers(spec.layers))
    exp = explore_certificates(model, job, spec, sampling, cert, taus, cache_dir=cache_dir, progress=progress)
    return explorer_html(exp, show=show, max_bytes=max_bytes)
