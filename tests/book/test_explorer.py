"""The certificate explorer: one entry per (method, layer, K, tau) with the numbers and the map of an independent
certification, no new samples after the chapter's certification, a bounded self-contained fragment, and in headless
Chromium a changed control changes the shown map."""
import base64
import html
import io
import itertools
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from certattr.book.explorer import (MAX_BYTES, certificate_explorer, entry_key, explore_certificates, explorer_html,
                                    label_png)
from certattr.engine.certificate import ABSTAIN
from certattr.engine.certify import certify_maps
from certattr.engine.smoothing import SmoothedAttribution
from certattr.engine.statistics import certified_radius, min_samples_to_certify
from certattr.engine.validation import CertattrError
from certattr.book.plans import ModelPool, PlanBuilder, RunSpec, certify_plan
from certattr.engine.config import CertConfig, SamplingConfig
from certattr.evaluation.jobs import Job, method_for
from certattr.models.data import Image

METHODS = ["grad", "intgrad", "gradcam", "cam"]
LAYERS = ["input", "final"]
KS = [50, 25]
TAUS = [0.6, 0.75, 0.9]  # at n = 60 on 32x32 pixels with alpha = 0.05, tau = 0.9 certifies no pixel
SIGMA = 0.25
SETTINGS = dict(n=60, n0=10, alpha=0.05, correction="bonferroni", seed=0, chunk_size=10)
OVERRIDES = {"intgrad@input": {"steps": 3}}  # as the cpu profile reduces IntGrad at the Input layer
IMAGE_ID, TARGET = "t", 3


def configs(**change):
    """The SamplingConfig and CertConfig of SETTINGS (with ``change``)."""
    settings = {**SETTINGS, **change}
    return (SamplingConfig(n=settings["n"], seed=settings["seed"], chunk_size=settings["chunk_size"]),
            CertConfig(n0=settings["n0"], alpha=settings["alpha"], correction=settings["correction"], ks=KS))


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def _payload(fragment: str) -> dict:
    found = re.findall(r'<script type="application/json">(.*?)</script>', fragment, re.S)
    assert len(found) == 1
    return json.loads(found[0])


def _indices(uri: str) -> np.ndarray:
    from PIL import Image

    header, _, data = uri.partition(",")
    assert header == "data:image/png;base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        assert img.mode == "P"
        return np.array(img)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The chapter's certification (its plan, at tau = 0.75) fills the cache; the explorer then runs with the
    same settings while the model's attribution pass and the cache folder are watched."""
    from certattr.models.testing import tiny_model

    model = tiny_model(seed=0)
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(7))
    cache = tmp_path_factory.mktemp("samples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # what the chapter does first: certify its plan (here one photo, every method and layer) at tau = 0.75
        params = {"weights": "pretrained", "n": SETTINGS["n"], "seed": SETTINGS["seed"],
                  "chunk_size": SETTINGS["chunk_size"], "ks": KS, "cache_dir": str(cache)}
        b = PlanBuilder("method", params, ModelPool("cpu", loader=lambda *key: model), placeholders=False)
        b.add(model, [Job(IMAGE_ID, IMAGE_ID, image, TARGET)], RunSpec(METHODS, LAYERS, [SIGMA], OVERRIDES))
        certify_plan(b.plan(), configs()[1].replace(tau=0.75), n=SETTINGS["n"])
    before = _files(cache)
    calls = []
    original = SmoothedAttribution.attribute_chunk
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SmoothedAttribution, "attribute_chunk",
                   lambda self, *a, **k: calls.append((self.method.name, self.layer, a[-1])) or original(self, *a, **k))
        exp = explore_certificates(model, Job(IMAGE_ID, IMAGE_ID, image, TARGET),
                                   RunSpec(METHODS, LAYERS, [SIGMA], OVERRIDES), *configs(), TAUS, cache_dir=str(cache))
    fragment = explorer_html(exp)
    return {"model": model, "image": image, "cache": cache, "before": before, "after": _files(cache),
            "calls": calls, "exp": exp, "html": fragment, "payload": _payload(fragment)}


def _oracle(model, image, name, layer, tau):
    """An independent certificate: the raw maps of a fresh engine without a cache, sparsified and certified at tau
    by certify_maps (not the cached top-K codes the explorer reads)."""
    maps = SmoothedAttribution(model, method_for(name, layer, OVERRIDES), layer, SIGMA, cache=None, progress=False,
                               n=SETTINGS["n"], seed=SETTINGS["seed"], chunk_size=SETTINGS["chunk_size"]
                               ).sample(image, IMAGE_ID, TARGET)
    with warnings.catch_warnings():  # degenerate maps and tau = 0.9 warn; the entries are checked for notes
        warnings.simplefilter("ignore")
        return certify_maps(maps, KS, sigma=SIGMA, n0=SETTINGS["n0"], tau=tau, alpha=SETTINGS["alpha"],
                            correction=SETTINGS["correction"])


def test_one_entry_per_combination(built):
    entries = built["payload"]["entries"]
    expected = {entry_key(m, l, k, t) for m, l, k, t in itertools.product(METHODS, LAYERS, KS, TAUS)}
    assert set(entries) == expected and len(entries) == len(METHODS) * len(LAYERS) * len(KS) * len(TAUS)
    # every map entry points at a decodable image of the photo's size
    images = built["payload"]["images"]
    for key, e in entries.items():
        if e["kind"] == "map":
            assert 0 <= e["img"] < len(images) and _indices(images[e["img"]]).shape == (32, 32), key
        else:
            assert e["img"] == -1 and e["note"], key


def test_numbers_and_maps_equal_an_independent_certification(built):
    entries, images = built["payload"]["entries"], built["payload"]["images"]
    n_pixels = 32 * 32
    checked_maps = 0
    for name, layer in itertools.product(METHODS, LAYERS):
        reason = method_for(name, layer, OVERRIDES).undefined_reason(built["model"], layer)
        for tau in TAUS:
            if reason:  # Cam at the Input layer: a labelled note, never an image
                for k in KS:
                    e = entries[entry_key(name, layer, k, tau)]
                    assert e["kind"] == "undefined" and e["img"] == -1 and e["numbers"] == "n/a"
                    assert e["note"].startswith("Not defined at this layer: ")
                    assert reason.split(": ", 1)[1] in e["note"]
                continue
            cert = _oracle(built["model"], built["image"], name, layer, tau)
            for k in KS:
                e = entries[entry_key(name, layer, k, tau)]
                want = cert.fractions()[float(k)]
                assert e["fractions"] == want, (name, layer, k, tau)
                assert e["numbers"] == (f"certified '1': {100 * want['certified_1']:.2f}% · certified '0': "
                                        f"{100 * want['certified_0']:.2f}% · abstain: {100 * want['abstain']:.2f}%")
                assert e["R"] == pytest.approx(certified_radius(SIGMA, tau), abs=1e-12)
                assert e["radius"] == f"R = σ·Φ⁻¹(τ) = {certified_radius(SIGMA, tau):.3f}"
                if cert.degenerate:  # Grad at the Final layer of a GAP->linear head: constant maps
                    assert e["kind"] == "degenerate" and e["img"] == -1 and "Degenerate" in e["note"]
                    continue
                assert e["kind"] == "map"
                labels = cert.label_map(k)
                idx = _indices(images[e["img"]])
                shown = np.where(idx == 1, 1, np.where(idx == 0, 0, ABSTAIN))
                np.testing.assert_array_equal(shown, labels, err_msg=str((name, layer, k, tau)))
                checked_maps += 1
                cannot = SETTINGS["n"] < min_samples_to_certify(SETTINGS["n0"], tau, SETTINGS["alpha"], n_pixels)
                assert ("cannot certify any pixel" in e["note"]) == cannot
                if cannot:
                    assert (labels == ABSTAIN).all()
    assert checked_maps >= 10
    # the degenerate and the undefined cases were both met (the test model has them)
    kinds = {e["kind"] for e in entries.values()}
    assert kinds == {"map", "degenerate", "undefined"}
    # tau changes what is shown: a smaller tau certifies at least as many pixels, and here strictly more
    lo, mid = entries[entry_key("gradcam", "input", 50, 0.6)], entries[entry_key("gradcam", "input", 50, 0.75)]
    assert lo["fractions"]["abstain"] < mid["fractions"]["abstain"] and lo["img"] != mid["img"]


def test_re_certifying_at_other_tau_reads_the_cache_without_sampling(built):
    assert built["calls"] == []
    assert built["after"] == built["before"]  # no chunk written or rewritten
    assert any(name.endswith(".npz") for name in built["before"])
    # the explorer certified every tau (not only the chapter's 0.75) from those samples
    assert {t for (_, _, t) in built["exp"].certificates} == set(TAUS)


def test_certificates_are_those_of_the_engine_at_each_tau(built):
    """Counting once and testing per tau gives what SmoothedAttribution.certify(tau=...) gives, bit for bit."""
    exp = built["exp"]
    assert exp.certificates and set(exp.undefined) == {("cam", "input")}
    for (name, layer, tau), cert in exp.certificates.items():
        engine = SmoothedAttribution(built["model"], method_for(name, layer, OVERRIDES), layer, SIGMA,
                                     cache=str(built["cache"]), progress=False, ks=KS, **SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert engine.certify(built["image"], IMAGE_ID, TARGET, tau=tau) == cert, (name, layer, tau)
        assert cert.tau == tau and cert.ks == (50.0, 25.0)


def test_without_a_cache_every_tau_comes_from_one_sampling(built, monkeypatch):
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k))
    exp = explore_certificates(built["model"], Job(IMAGE_ID, IMAGE_ID, built["image"], TARGET),
                               RunSpec(["gradcam"], ["final"], [SIGMA]), *configs(), TAUS, cache_dir=None)
    assert calls == list(range(6))  # n = 60 in chunks of 10, once for the three tau
    assert all(exp.certificates[("gradcam", "final", t)] == built["exp"].certificates[("gradcam", "final", t)]
               for t in TAUS)


def test_a_different_sampling_setting_would_sample(built, tmp_path, monkeypatch):
    """The counter above can fail: with another chunk size (another cache entry) the same call samples."""
    calls = []
    original = SmoothedAttribution.attribute_chunk
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk",
                        lambda self, *a, **k: calls.append(a[-1]) or original(self, *a, **k))
    explore_certificates(built["model"], Job(IMAGE_ID, IMAGE_ID, built["image"], TARGET),
                         RunSpec(["gradcam"], ["final"], [SIGMA]), *configs(chunk_size=20), [0.75],
                         cache_dir=str(built["cache"]))
    assert calls == [0, 1, 2]


def test_fragment_is_self_contained_and_bounded(built):
    fragment = built["html"]
    size = len(fragment.encode("utf-8"))
    assert size <= MAX_BYTES
    assert "://" not in fragment  # no http(s), file or other URL: every image is a data: URI
    refs = re.findall(r'\b(?:src|href)="([^"]*)"', fragment)
    assert refs and all(r.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for r in refs)
    assert "<script src" not in fragment and "<link" not in fragment and "@import" not in fragment
    # a bound below the fragment's size is refused in one line
    with pytest.raises(CertattrError, match=r"^the certificate explorer is [\d.]+ MB, more than max_bytes") as err:
        explorer_html(built["exp"], max_bytes=size - 1)
    assert "\n" not in str(err.value)
    assert len(explorer_html(built["exp"], max_bytes=size)) == len(fragment)


def test_show_chooses_what_is_shown_first(built):
    """Without JavaScript the page shows the initial choice: its selected options, map and numbers."""
    fragment = explorer_html(built["exp"], show=("gradcam", "final"))
    entries, images = _payload(fragment)["entries"], _payload(fragment)["images"]
    e = entries[entry_key("gradcam", "final", 50, 0.75)]
    assert re.search(r'<option value="gradcam" selected>', fragment) and re.search(r'<option value="final" selected>',
                                                                                 fragment)
    assert f'data-role="map" alt="certified top-K map" src="{images[e["img"]]}"' in fragment
    assert f'<div data-role="numbers">{html.escape(e["numbers"])}</div>' in fragment
    # by default: the first method with a map at the first layer, the largest K, tau = 0.75
    assert '<option value="grad" selected>' in built["html"] and '<option value="0.75" selected>' in built["html"]
    # a method not defined there: the note is shown in place of the map, and the images are hidden
    fragment = explorer_html(built["exp"], show=("cam", "input"))
    assert re.search(r'<div class="cx-blank" data-role="blank">Not defined at this layer: ', fragment)
    assert len(re.findall(r'<img data-role="\w+"[^>]* hidden>', fragment)) == 2


def test_label_png_is_a_small_indexed_image():
    labels = np.full((224, 224), ABSTAIN, dtype=np.int8)
    labels[50:120, 60:160] = 1
    labels[150:, :] = 0
    png = label_png(labels)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[24] == 2  # bit depth 2 (4 palette entries)
    assert len(png) < 224 * 224 / 4  # smaller than its raw 2-bit pixels
    idx = _indices("data:image/png;base64," + base64.b64encode(png).decode())
    np.testing.assert_array_equal(np.where(idx == 1, 1, np.where(idx == 0, 0, ABSTAIN)), labels)
    with pytest.raises(CertattrError, match="labels of shape"):
        label_png(np.full((4, 4), 2))


@pytest.mark.parametrize("change,match", [
    ({"taus": [0.4]}, r"^tau=0\.4 is not allowed"),
    ({"taus": [0.75, 0.75]}, r"^taus=\[0\.75, 0\.75\] is not allowed"),
    ({"layers": ["middle"]}, r"^layer='middle' is unknown"),
    ({"methods": ["nope"]}, r"^method='nope' is unknown"),
    ({"image_id": ""}, r"^image_id='' is not allowed"),
    ({"sigma": 0}, r"^sigma=0 is not allowed"),
    ({"ks": [0]}, r"^k=0 is not allowed"),
    ({"n0": 60}, r"^n0=60 is not allowed with n=60"),
    ({"show": ("gradcam", "input")}, r"^show\[1\]='input' is unknown: allowed are final"),
    ({"show": "gradcam"}, r"^show='gradcam' is not allowed: give a \(method, layer\) pair"),
    ({"max_bytes": 0}, r"^max_bytes=0 is not allowed"),
])
def test_bad_input_is_refused_in_one_line_before_any_sampling(built, change, match, monkeypatch):
    monkeypatch.setattr(SmoothedAttribution, "attribute_chunk", lambda *a, **k: pytest.fail("sampled"))
    args = {"image_id": IMAGE_ID, "methods": ["gradcam"], "layers": ["final"], "sigma": SIGMA, "ks": KS,
            "taus": TAUS, **SETTINGS}
    args.update(change)
    with pytest.raises(CertattrError, match=match) as err:
        job = Job(args["image_id"], args.pop("image_id"), built["image"], TARGET)
        spec = RunSpec(args.pop("methods"), args.pop("layers"), [args.pop("sigma")])
        ks, taus = args.pop("ks"), args.pop("taus")
        sampling = SamplingConfig(n=args.pop("n"), seed=args.pop("seed"), chunk_size=args.pop("chunk_size"))
        cert = CertConfig(n0=args.pop("n0"), alpha=args.pop("alpha"), correction=args.pop("correction"), ks=ks)
        certificate_explorer(built["model"], job, spec, sampling, cert, taus, **args)
    assert "\n" not in str(err.value)


# --- in a browser -----------------------------------------------------------------------------------------------
_DRIVER = """<script>
(function () {
  var root = document.querySelector(".certattr-explorer");
  function part(role) { return root.querySelector("[data-role='" + role + "']"); }
  function state() {
    return {shown: root.getAttribute("data-shown"), src: part("map").getAttribute("src"),
            mapHidden: part("map").hidden, blank: part("blank").hidden ? "" : part("blank").textContent,
            numbers: part("numbers").textContent, radius: part("radius").textContent};
  }
  function choose(role, value) {
    var select = part(role);
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
  var log = [state()];
  choose("tau", "0.6"); log.push(state());
  choose("k", "25"); log.push(state());
  choose("method", "cam"); choose("layer", "input"); log.push(state());
  var out = document.createElement("pre");
  out.id = "explorer-log";
  out.textContent = JSON.stringify(log);
  document.body.appendChild(out);
})();
</script>"""


def test_headless_chromium_shows_the_chosen_map(built, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed: install it as root (apt-get update && apt-get install -y "
                    "chromium)")
    page = tmp_path / "explorer.html"
    page.write_text("<!doctype html><html><head><meta charset='utf-8'><title>explorer</title></head><body>"
                    + built["html"] + _DRIVER + "</body></html>", encoding="utf-8")
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000", "--dump-dom",
           page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<pre id="explorer-log">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    log = json.loads(html.unescape(found.group(1)))
    entries, images = built["payload"]["entries"], built["payload"]["images"]
    first, tau_changed, k_changed, undefined = log
    # the fragment's own script ran (only it sets data-shown) and shows the initial choice
    start = entry_key("grad", "input", 50, 0.75)
    assert first["shown"] == start and first["src"] == images[entries[start]["img"]]
    assert first["numbers"] == entries[start]["numbers"] and not first["mapHidden"]
    # changing tau changes the shown map, its numbers and R, to those of the new combination
    key = entry_key("grad", "input", 50, 0.6)
    assert tau_changed["shown"] == key and tau_changed["src"] == images[entries[key]["img"]]
    assert tau_changed["src"] != first["src"] and tau_changed["numbers"] == entries[key]["numbers"]
    assert tau_changed["numbers"] != first["numbers"] and tau_changed["radius"] != first["radius"]
    key = entry_key("grad", "input", 25, 0.6)
    assert k_changed["shown"] == key and k_changed["src"] == images[entries[key]["img"]] != tau_changed["src"]
    # a method not defined at the layer: the map is hidden and the reason shown in its place
    assert undefined["shown"] == entry_key("cam", "input", 25, 0.6) and undefined["mapHidden"]
    assert undefined["blank"].startswith("Not defined at this layer: ") and undefined["numbers"] == "n/a"
