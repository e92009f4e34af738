"""`certattr certify DIR --out RESULTS/`: one certificate per image, one tidy table, resumable, bad images logged.

Oracles: the per-image certificates read back (the table's values), the files' modification times (a resumed run
does not redo finished images), and the certificate of the same image certified alone.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from certattr.cli import main
from certattr.engine.certificate import Certificate
from certattr.engine.config import CertConfig, SamplingConfig
from certattr.engine.validation import CertattrError
from certattr.models.tiny_nets import TinyResNet
from certattr.sweeps import images as folder
from certattr.sweeps.images import COLUMNS, FolderJob, certify_folder, image_ids, list_images

FLAGS = ["--final-layer", "last", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25", "--input-size", "32",
         "--trust-pickle", "--method", "gradcam", "--n", "30", "--n0", "4", "--tau", "0.6", "--alpha", "0.2",
         "--k", "50", "20", "--quiet", "--no-cache"]


@pytest.fixture()
def setup(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        rgb = (np.random.RandomState(i).rand(40, 48, 3) * 255).astype("uint8")
        PILImage.fromarray(rgb).save(photos / f"img{i}.png")
    (photos / "broken.png").write_bytes(b"not an image")
    (photos / "notes.txt").write_text("not listed: no image suffix")
    torch.manual_seed(0)
    torch.save(TinyResNet(10, 8).eval(), tmp_path / "net.pt")
    return photos, tmp_path / "net.pt"


def _job(model_path):
    source = {"source": str(model_path), "final_layer": "last", "mean": [0.5] * 3, "std": [0.25] * 3,
              "input_size": 32, "trust_pickle": True}
    return FolderJob(source, "gradcam", "final", 0.15, SamplingConfig(n=30), CertConfig(n0=4, tau=0.6, alpha=0.2,
                                                                                       ks=(50, 20)))


def test_the_table_holds_every_images_certificate_and_a_bad_image_is_one_log_line(setup, tmp_path, capsys):
    photos, model = setup
    out = tmp_path / "results"
    assert main(["certify", str(photos), "--model", str(model), "--out", str(out)] + FLAGS) == 0
    printed = capsys.readouterr()
    assert "3 certified, 0 already done, 1 unreadable" in printed.out
    assert printed.err.count("broken.png") == 1 and "certattr: warning: skipped: image file" in printed.err
    assert (out / "log.txt").read_text().count("\n") == 1 and "broken.png" in (out / "log.txt").read_text()
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 3 * 2  # three images, two K each
    for row in rows:
        cert = Certificate.load(out / "certificates" / f"{row['image_id']}.npz")
        fractions = cert.fractions()[float(row["k"])]
        for column in ("certified_1", "certified_0", "abstain"):
            assert float(row[column]) == fractions[column]
        assert float(row["radius"]) == cert.radius and int(row["target"]) == cert.metadata["target"]
        assert row["degenerate"] == str(bool(cert.degenerate))
        assert int(row["prediction"]) == int(row["target"])  # no --target: the top-1 class is explained
    # the same image certified alone (a single-image run) gives the same certificate
    alone = tmp_path / "alone"
    assert main(["certify", str(photos / "img1.png"), "--model", str(model), "--out", str(alone)] + FLAGS) == 0
    assert Certificate.load(alone / "certificate.npz") == Certificate.load(out / "certificates" / "img1.npz")


def test_a_killed_run_resumes_where_it_stopped(setup, tmp_path, monkeypatch):
    photos, model = setup
    paths, out, job = list_images(str(photos / "img*.png")), tmp_path / "results", _job(model)
    real, calls = folder.certify_image, []

    def killed_at_the_second(path, image_id, out_dir, job):
        calls.append(image_id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies while certifying the second image
        return real(path, image_id, out_dir, job)

    monkeypatch.setattr(folder, "certify_image", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        certify_folder(paths, out, job, progress=False)
    assert sorted(p.name for p in (out / "certificates").iterdir()) == ["img0.json", "img0.npz"]
    first = (out / "certificates" / "img0.npz").stat().st_mtime_ns
    monkeypatch.setattr(folder, "certify_image", real)
    result = certify_folder(paths, out, job, progress=False)
    assert (result["done"], result["skipped"], result["bad"], result["rows"]) == (2, 1, 0, 3)
    assert (out / "certificates" / "img0.npz").stat().st_mtime_ns == first  # not redone
    assert len(list(csv.DictReader((out / "results.csv").open()))) == 6
    again = certify_folder(paths, out, job, progress=False)
    assert (again["done"], again["skipped"]) == (0, 3)


def test_image_ids_are_unique_and_bad_patterns_are_one_line(tmp_path):
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    assert image_ids([a, b, tmp_path / "y.png"]) == ["a__x.png", "b__x.png", "y"]
    with pytest.raises(CertattrError, match="matches no file"):
        list_images(str(tmp_path / "*.png"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CertattrError, match="is a folder that holds no image file"):
        list_images(str(tmp_path / "empty"))


@pytest.mark.slow
def test_dask_workers_give_the_serial_results(setup, tmp_path):
    photos, model = setup
    serial, spread = tmp_path / "serial", tmp_path / "dask"
    assert main(["certify", str(photos / "img*.png"), "--model", str(model), "--out", str(serial)] + FLAGS) == 0
    assert main(["certify", str(photos / "img*.png"), "--model", str(model), "--out", str(spread),
                 "--workers", "2"] + FLAGS) == 0
    for i in range(3):
        assert Certificate.load(serial / "certificates" / f"img{i}.npz") == \
            Certificate.load(spread / "certificates" / f"img{i}.npz")
    assert json.loads((spread / "certificates" / "img0.json").read_text())["model"] == "net.pt"


def test_the_parquet_table_holds_the_csv_tables_rows_with_typed_columns(setup, tmp_path):
    pd = pytest.importorskip("pandas", reason="pandas, a dependency of certattr, is not installed")
    pytest.importorskip("pyarrow", reason="pyarrow is not installed, so no Parquet table is written: it is in the "
                        "[test] and [parquet] extras (`make test` installs the first)")
    photos, model = setup
    out = tmp_path / "results"
    assert main(["certify", str(photos / "img*.png"), "--model", str(model), "--out", str(out)] + FLAGS) == 0
    from_csv, from_parquet = pd.read_csv(out / "results.csv"), pd.read_parquet(out / "results.parquet")
    assert list(from_parquet.columns) == list(COLUMNS) and len(from_parquet) == len(from_csv) == 3 * 2
    assert from_parquet["degenerate"].dtype == bool and from_parquet["n"].dtype.kind == "i"
    for column in COLUMNS:
        a, b = from_csv[column].to_numpy(), from_parquet[column].to_numpy()
        if b.dtype.kind in "fiub":  # typed in Parquet: the CSV's text parses to the same numbers
            np.testing.assert_allclose(a.astype(float), b.astype(float), rtol=1e-12, equal_nan=True, err_msg=column)
        else:  # text (an empty CSV cell reads back as NaN)
            assert [str(x) if x == x else "" for x in a] == [str(x) for x in b], column


@pytest.mark.slow
def test_a_running_scheduler_gives_the_serial_results(setup, tmp_path, capsys):
    from distributed import LocalCluster

    photos, model = setup
    serial, spread = tmp_path / "serial", tmp_path / "scheduler"
    assert main(["certify", str(photos / "img*.png"), "--model", str(model), "--out", str(serial)] + FLAGS) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["certify", str(photos / "img*.png"), "--model", str(model), "--out", str(spread),
                     "--scheduler", cluster.scheduler_address] + FLAGS) == 0
    for i in range(3):
        assert Certificate.load(serial / "certificates" / f"img{i}.npz") == \
            Certificate.load(spread / "certificates" / f"img{i}.npz")
    assert (serial / "results.csv").read_text() == (spread / "results.csv").read_text()
    capsys.readouterr()
    assert main(["certify", str(photos), "--model", str(model), "--out", str(spread), "--workers", "2",
                 "--scheduler", "tcp://127.0.0.1:1"] + FLAGS) == 2
    assert "cannot be combined with --workers" in capsys.readouterr().err
