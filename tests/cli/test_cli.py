"""The CLI end to end on a bundled photo, and its one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from certattr.cli import main
from certattr.engine.certificate import Certificate


@pytest.mark.slow
def test_certify_end_to_end_on_a_bundled_photo(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "certattr.cli", "certify", "coffee", "--method", "gradcam", "--layer", "final",
           "--sigma", "0.15", "--k", "50", "25", "5", "--n", "100", "--n0", "10", "--tau", "0.75", "--alpha", "0.001",
           "--correction", "holm", "--seed", "3", "--out", str(out), "--cache", str(tmp_path / "cache")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "sample" in run.stderr  # the tqdm progress bar
    summary = json.loads((out / "certificate.json").read_text())
    assert summary["ks"] == [50.0, 25.0, 5.0] and summary["correction"] == "holm" and summary["n"] == 100
    assert round(summary["radius"], 3) == 0.101 and summary["metadata"]["target"] == 967  # espresso
    assert "1 - 3*alpha" in summary["guarantee"]
    cert = Certificate.load(out / "certificate.npz")
    for k, f in summary["fractions"].items():
        assert f == cert.fractions()[float(k)]
        assert abs(sum(f.values()) - 1) < 1e-9
    assert summary["fractions"]["50.0"]["certified_1"] > 0.1  # GradCAM at the final layer certifies regions
    # the band certificate: written always, one claim at alpha, at least the per-K certificates at alpha/3 each
    assert cert.band_labels.shape == cert.labels.shape and "bands (all K together at 1 - alpha = 0.999)" in run.stdout
    for k, f in summary["band_fractions"].items():
        assert f == cert.band_fractions()[float(k)]
    png = np.asarray(PILImage.open(out / "overlay.png"))
    assert png.ndim == 3 and png.shape[0] > 300 and png.std() > 10
    # a second run reuses the cache and gives the identical certificate
    run2 = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, timeout=600)
    assert run2.returncode == 0 and Certificate.load(out / "certificate.npz") == cert


@pytest.mark.parametrize("args,message", [
    (["--sigma", "0"], "sigma=0.0 is not allowed: the noise level must be > 0"),
    (["--sigma", "nan"], "sigma=nan is not allowed: it must be a finite number"),
    (["--tau", "0.4"], "0.5 <= tau < 1"),
    (["--tau", "1"], "0.5 <= tau < 1"),
    (["--alpha", "0"], "0 < alpha < 1"),
    (["--n", "10", "--n0", "10"], "n0=10 is not allowed with n=10"),
    (["--k", "0"], "0 < K <= 100"),
    (["--k", "101"], "0 < K <= 100"),
    (["--method", "saliency"], "method='saliency' is unknown: allowed are"),
])
def test_bad_arguments_give_one_line_errors(tmp_path, capsys, args, message):
    code = main(["certify", "coffee", "--out", str(tmp_path)] + args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("certattr: error:")


def test_argparse_choices_and_missing_image(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["certify", "coffee", "--out", str(tmp_path), "--layer", "middle"])
    assert exc.value.code == 2 and "invalid choice: 'middle'" in capsys.readouterr().err
    assert main(["certify", str(tmp_path / "nope.png"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_list_names_every_registered_model_method_layer_and_photo_in_order(capsys):
    """`certattr list` against the registries themselves: each model with its title and Final layer, each method
    with its title and family, the two layers and the bundled photos, nothing more."""
    from certattr.methods import get_method, method_names
    from certattr.models.data import BUNDLED_PHOTOS
    from certattr.models.registry import LAYERS, MODELS

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    models, methods = lines.index("models:"), lines.index("methods:")
    shown = [line.split(None, 1) for line in lines[models + 1:methods]]
    assert [name for name, _ in shown] == list(MODELS)
    for name, text in shown:
        assert text == f"{MODELS[name].title}; Final layer: {MODELS[name].final_layer}"
    rest = lines[methods + 1:]
    shown = [line.split(None, 1) for line in rest[:len(method_names())]]
    assert [name for name, _ in shown] == method_names()
    for name, text in shown:
        method = get_method(name)
        assert text.startswith(f"{method.title} ({method.family})"), text
    assert rest[len(method_names()):] == [f"layers: {', '.join(LAYERS)}",
                                          f"bundled photos: {', '.join(BUNDLED_PHOTOS)}"]
