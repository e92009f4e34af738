"""A folder in, one table out: certify every image of a folder (or glob) and gather one tidy table.

``certify_folder(paths, out, job)`` writes, per image, ``out/certificates/<id>.npz`` (the full certificate) and
``out/certificates/<id>.json`` (its summary, the prediction and where the image came from), each atomically, the
JSON last, so an image counts as done when its JSON is there: a rerun skips it (resumable; a killed run loses at
most the images in progress). It then writes ``out/results.csv`` (and ``out/results.parquet`` where pyarrow is
installed) from the JSON files of all the listed images: one row per (image, K) with the fractions certified
'1' / '0' / abstain, R, the target, the clean prediction and the degenerate flag. A bad image (unreadable, not an
image) is one line in ``out/log.txt`` and on stderr, and the run goes on. ``workers`` / ``scheduler`` spread the
images over Dask workers as ``certattr sweep`` does (each worker loads the model once).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..engine.config import CertConfig, SamplingConfig
from ..engine.files import atomic_write_bytes
from ..engine.smoothing import SmoothedAttribution
from ..engine.targets import predict
from ..engine.validation import CertattrError, check_image
from ..models.data import load_image_file
from ..models.sources import list_images, load_from_arguments
from .run import local_cluster, worker_device

__all__ = ["FolderJob", "list_images", "image_ids", "certify_image", "certify_folder", "table_rows", "COLUMNS"]

#: the table's columns, in order
COLUMNS = ("image_id", "path", "model", "method", "layer", "sigma", "k", "certified_1", "certified_0", "abstain",
           "radius", "target", "target_name", "prediction", "prediction_name", "prediction_probability",
           "degenerate", "degenerate_reason", "n", "n0", "tau", "alpha", "correction", "seed")


@dataclass(frozen=True)
class FolderJob:
    """What to certify each image with: the model (the arguments of ``load_from_arguments``), the method, the settings."""

    model: dict  #: arguments of :func:`certattr.models.sources.load_from_arguments`
    method: str
    layer: str
    sigma: float
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    cert: CertConfig = field(default_factory=CertConfig)
    target: int | None = None
    cache_dir: str | None = None
    #: class names by index where the model has none (a labelled folder's class folders or label names)
    class_names: tuple | None = None


def image_ids(paths: Sequence[Path]) -> list[str]:
    """One id per path: its stem, or (where two paths share a stem) its name, then its parent folders too."""
    def candidate(path: Path, depth: int) -> str:
        if depth == 0:
            return path.stem
        return "__".join(path.parts[-depth:])

    depth = [0] * len(paths)
    while True:
        ids = [candidate(p, d) for p, d in zip(paths, depth)]
        clashes = {i for i in ids if ids.count(i) > 1}
        if not clashes:
            return ids
        depth = [d + 1 if i in clashes else d for i, d in zip(ids, depth)]


_MODELS: dict = {}  #: per process: (model arguments, device) -> loaded model (a Dask worker loads it once)


def _model(job: FolderJob):
    args = dict(job.model)
    args["device"] = worker_device(str(args.get("device", "cpu")))
    key = json.dumps(args, sort_keys=True, default=str)
    if key not in _MODELS:
        _MODELS[key] = load_from_arguments(args)
    return _MODELS[key]


def certify_image(path: str, image_id: str, out: str, job: FolderJob) -> tuple[str, str]:
    """Certify one image and write its two files; ("done" | "skipped" | "bad", message)."""
    folder = Path(out) / "certificates"
    summary_path = folder / f"{image_id}.json"
    if summary_path.is_file():
        return "skipped", ""
    model = _model(job)
    try:
        image = load_image_file(path, model.spec.resize, model.spec.crop)
    except CertattrError as err:
        return "bad", str(err)
    image = check_image(image, channels=model.channels)
    engine = SmoothedAttribution(model, job.method, job.layer, job.sigma, job.sampling, job.cert,
                                 cache=job.cache_dir, progress=False)
    cert = engine.certify(image, image_id, job.target)
    prediction, probability = predict(model, image)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{image_id}.npz", cert.to_bytes())
    record = {"image_id": image_id, "path": str(path), "model": model.name, "method": engine.method.name,
              "layer": job.layer, "seed": job.sampling.seed, "prediction": prediction,
              "prediction_probability": probability,
              "classes": model.spec.notes.get("classes") or (list(job.class_names) if job.class_names else None),
              "certificate": cert.summary()}
    atomic_write_bytes(summary_path, (json.dumps(record, indent=1, default=str) + "\n").encode())
    return "done", ""


def table_rows(records: Sequence[dict]) -> list[dict]:
    """The tidy rows (one per image and K, columns :data:`COLUMNS`) of per-image records."""
    rows = []
    for r in records:
        s = r["certificate"]
        names = r.get("classes")
        target = s["metadata"]["target"]
        for k, f in s["fractions"].items():
            rows.append({"image_id": r["image_id"], "path": r["path"], "model": r["model"], "method": r["method"],
                         "layer": r["layer"], "sigma": s["sigma"], "k": float(k), "certified_1": f["certified_1"],
                         "certified_0": f["certified_0"], "abstain": f["abstain"], "radius": s["radius"],
                         "target": target, "target_name": names[target] if names else "",
                         "prediction": r["prediction"], "prediction_name": names[r["prediction"]] if names else "",
                         "prediction_probability": r["prediction_probability"],
                         "degenerate": bool(s.get("degenerate")), "degenerate_reason": s.get("degenerate") or "",
                         "n": s["n"], "n0": s["n0"], "tau": s["tau"], "alpha": s["alpha"],
                         "correction": s["correction"], "seed": r["seed"]})
    return rows


def _write_table(out: Path, rows: list[dict]) -> list[Path]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())
    written = [out / "results.csv"]
    try:
        import pandas as pd
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        return written
    data = io.BytesIO()
    pd.DataFrame(rows, columns=list(COLUMNS)).to_parquet(data, index=False)
    atomic_write_bytes(out / "results.parquet", data.getvalue())
    return written + [out / "results.parquet"]


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="image", desc="certify", disable=not progress)


def _with_target(job: FolderJob, target: int | None) -> FolderJob:
    """``job`` for one image whose own class (its label) is ``target``; ``job`` itself where it has none."""
    return job if target is None else dataclasses.replace(job, target=int(target))


def certify_folder(paths: Sequence[Path], out, job: FolderJob, *, workers: int | None = None,
                   scheduler: str | None = None, progress: bool = True,
                   log: Callable[[str], None] | None = None, targets: Sequence[int | None] | None = None) -> dict:
    """Certify every image of ``paths`` into ``out`` (see the module docstring); returns counts
    {"done", "skipped", "bad"} and the table's paths. ``workers``/``scheduler``: on Dask (else in this process).
    ``targets``: one class per path (a labelled folder's labels, :func:`certattr.models.labelled.labelled_files`),
    else ``job.target`` for every image."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = image_ids(list(paths))
    targets = list(targets) if targets is not None else [None] * len(ids)
    if len(targets) != len(ids):
        raise CertattrError(f"targets has {len(targets)} classes for {len(ids)} images: give one per image")
    counts = {"done": 0, "skipped": 0, "bad": 0}
    log_lines = []

    def report(status: str, path, message: str):
        counts[status] += 1
        if status == "bad":
            line = f"skipped: {' '.join(message.split())}"  # the message names the file
            log_lines.append(line)
            (log or (lambda text: print(f"certattr: warning: {text}", file=sys.stderr)))(line)

    bar = _bar(len(ids), progress)
    try:
        if workers is None and scheduler is None:
            for path, image_id, target in zip(paths, ids, targets):
                status, message = certify_image(str(path), image_id, str(out), _with_target(job, target))
                report(status, path, message)
                bar.update(1)
        else:
            _dask(paths, ids, targets, out, job, workers, scheduler, report, bar)
    finally:
        bar.close()
        if log_lines:
            with open(out / "log.txt", "a", encoding="utf-8") as f:
                f.write("".join(line + "\n" for line in log_lines))
    records = [json.loads((out / "certificates" / f"{i}.json").read_text()) for i in ids
               if (out / "certificates" / f"{i}.json").is_file()]
    return {**counts, "tables": _write_table(out, table_rows(records)), "rows": len(records)}


def _dask(paths, ids, targets, out, job, workers, scheduler, report, bar):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise CertattrError("Dask distributed is not installed: pip install 'dask[distributed]' (or run without "
                            "--workers and --scheduler)") from None
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as err:
                raise CertattrError(f"could not connect to the Dask scheduler {scheduler!r} ({type(err).__name__}); "
                                    f"give the address a running scheduler prints, e.g. tcp://host:8786") from None
        else:
            cluster = local_cluster(str(job.model.get("device", "cpu")), workers)
            client = Client(cluster)
        futures = {client.submit(certify_image, str(p), i, str(out), _with_target(job, t), pure=False): p
                   for p, i, t in zip(paths, ids, targets)}
        for future in as_completed(futures):
            status, message = future.result()
            report(status, futures[future], message)
            bar.update(1)
        client.close()
    finally:
        if cluster is not None:
            cluster.close()
