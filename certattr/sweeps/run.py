"""Run a plan (:mod:`certattr.book.plans`) on Dask distributed: many workers fill one shared sample cache.

    plan = book_plan("paper", overrides={"imagenet_dir": "/data/val"})
    report = run_sweep(plan)                              # a LocalCluster: one worker per GPU, else per core
    report = run_sweep(plan, scheduler="tcp://host:8786")  # or join a running cluster (e.g. dask-jobqueue SLURM)

A *task* is one group of works that share a model, an image and a noise level (sigma, seed, chunk size): the
methods at both layers and, for a grid, every target cell. A worker computes a group chunk by chunk, every
method of the group on the same noisy batch, so the Final activation of a batch is computed once for all the
Final-layer methods (the model's activation memo), as in a chapter. Each worker loads a model once (kept per
process) and writes each chunk to the cache atomically as soon as it is computed; a chunk already in the cache is
not computed again. Hence:

* results are identical bit for bit to a serial run with the same chunk size (a chunk depends only on its
  indices, and every chunk is computed by the same code as :meth:`SmoothedAttribution.chunks`, and written in
  every encoding its readers take, :attr:`certattr.book.plans.Work.chunk_files`, from one model call); on a CPU, at the
  same number of torch threads per process (a LocalCluster's CPU workers use cores // workers threads each; another
  thread count changes the maps at float rounding, as a different chunk size does);
* a worker that dies mid-task has its task rerun elsewhere (Dask reschedules it), and the rerun skips the chunks
  that were already written;
* a sweep interrupted as a whole resumes: the next run computes only the chunks that are missing;
* two workers (or two processes) computing the same chunk at once both succeed and leave one valid chunk
  (each writes a temporary file of its own and renames it over the chunk).
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import dataclass

import torch

from ..engine.encodings import RAW
from ..engine.heap import release_freed_memory
from ..book.plans import Plan, Work, load_work_model, work_engine
from ..engine.validation import CertattrError
from ..engine.cache import cache_key

__all__ = ["SweepReport", "group_works", "compute_group", "run_sweep", "local_cluster", "worker_device"]


@dataclass
class SweepReport:
    """What a sweep did: tasks (groups), works (cache entries), chunks in the plan, chunks computed now
    (``computed``) and found in the cache (``reused``), wall-clock seconds, and the dashboard link if any."""

    tasks: int
    works: int
    chunks: int
    computed: int
    reused: int
    seconds: float
    dashboard: str | None = None

    def text(self) -> str:
        return (f"{self.works} cache entries in {self.tasks} tasks: {self.chunks} chunks, {self.computed} computed "
                f"now, {self.reused} already in the cache; {self.seconds:.1f} s")


def group_works(plan: Plan) -> list[list[Work]]:
    """The plan's works grouped by (model, image, noise, seed, chunk size): one task each, in plan order."""
    groups: dict = {}
    for w in plan.works:
        groups.setdefault((w.model_key, w.image_key, w.noise, w.sigma, w.seed, w.chunk_size), []).append(w)
    return list(groups.values())


# --- on a worker ------------------------------------------------------------------------------------------------
_MODELS: dict = {}  #: this process's loaded models, by (Work.model_key, device)
_THREADS_SET = [False]


def worker_device(device: str) -> str:
    """The device of this worker: ``cuda`` becomes ``cuda:<i>`` on a worker named with an integer i (a
    LocalCluster's workers are 0, 1, ...), modulo the GPUs it sees, so that each worker gets its own GPU; a
    dask-jobqueue worker sees one GPU and keeps ``cuda``."""
    if device != "cuda" or not torch.cuda.is_available():
        return device
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return device
    if isinstance(name, int) or (isinstance(name, str) and name.isdigit()):
        return f"cuda:{int(name) % torch.cuda.device_count()}"
    return device


def _model(work: Work, device: str):
    key = (work.model_key, device)
    if key not in _MODELS:
        _MODELS[key] = load_work_model(*work.model_key[:2], device, *work.model_key[2:])
    return _MODELS[key]


def compute_group(works: list[Work], image: torch.Tensor, cache_dir: str, device: str = "cpu",
                  torch_threads: int | None = None, on_chunk=None) -> tuple[int, int]:
    """Fill the cache entries of ``works`` (one model, one image (3, H, W), one sigma) chunk by chunk;
    returns (chunks computed, chunks found in the cache). ``on_chunk(work, chunk)`` is called after each
    computed chunk (tests interrupt a sweep with it)."""

    if torch_threads and not _THREADS_SET[0]:
        torch.set_num_threads(int(torch_threads))
        _THREADS_SET[0] = True
    device = worker_device(device)
    entries = []
    for work in works:
        model = _model(work, device)
        engine = work_engine(work, model, cache=cache_dir)
        identity = engine.identity(image, work.image_id, work.target)
        key = cache_key(identity)
        engine.cache.check_writable()
        engine.cache.write_manifest(key, identity)
        entries.append((work, model, engine.cache, key, dict(enumerate(work.chunk_specs))))
    computed = reused = 0
    engines: dict = {}
    for i in range(max(len(w.chunk_specs) for w in works)):  # chunk-major: the methods share each noisy batch
        for work, model, cache, key, specs in entries:
            if i not in specs:
                continue
            chunk, size = specs[i]
            encodings = work.encodings(chunk, size)
            missing = [enc for enc in encodings if cache.load_chunk(key, chunk, size, work.chunk_size, enc) is None]
            if not missing:
                reused += 1
                continue
            n = chunk * work.chunk_size + size  # an engine of n samples computes exactly this chunk's samples
            engine = engines.get((work, n))
            if engine is None:
                engine = engines[(work, n)] = work_engine(work, model, cache=cache, n=n)
            maps = engine.attribute_chunk(image, work.image_id, work.target, chunk)
            for enc in missing:  # every encoding the chunk's readers take, from one model call
                cache.save_chunk(key, chunk, maps if enc is RAW else enc.encode(maps, tuple(image.shape[1:])),
                                 work.chunk_size, enc, size)
            computed += 1
            if on_chunk is not None:
                on_chunk(work, chunk)
    release_freed_memory()  # a worker runs task after task: keep its freed memory from piling up
    return computed, reused


# --- on the client ---------------------------------------------------------------------------------------------
def _cuda_count(device: str) -> int:
    return torch.cuda.device_count() if device.startswith("cuda") and torch.cuda.is_available() else 0


def local_cluster(device: str = "cpu", n_workers: int | None = None):
    """A LocalCluster for ``device``: one worker process per GPU, or on a CPU one process per core (one
    thread each; with fewer workers than cores, torch uses cores // workers threads in each)."""
    from distributed import LocalCluster

    gpus = _cuda_count(device)
    cores = os.cpu_count() or 1
    n = int(n_workers or gpus or cores)
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                        silence_logs=logging.ERROR)


def _torch_threads(device: str, n_workers: int) -> int:
    return 1 if device.startswith("cuda") else max(1, (os.cpu_count() or 1) // max(1, n_workers))


def run_sweep(plan: Plan, *, scheduler: str | None = None, client=None, n_workers: int | None = None,
              progress: bool = True, retries: int = 3, serial: bool = False, on_chunk=None,
              print_fn=print, connect_timeout: str = "30s") -> SweepReport:
    """Fill ``plan.cache_dir`` with every chunk of ``plan``.

    ``client``: a ``distributed.Client`` to use; else ``scheduler`` (an address such as ``tcp://host:8786``)
    to join, else a new :func:`local_cluster` with ``n_workers``. ``serial``: run in this process, no Dask
    (``on_chunk`` is then called after each computed chunk). A failing task is retried ``retries`` times (a
    killed worker's tasks are rescheduled by Dask itself), then the sweep stops with a one-line CertattrError."""
    if not plan.cache_dir:
        raise CertattrError("the plan has no cache_dir: a sweep writes to the sample cache the chapters read; "
                            "give --cache-dir or -p cache_dir DIR")
    if any(n.startswith("imagenet_dir is not set") for n in plan.notes):
        raise CertattrError("this plan counts placeholder images (imagenet_dir is not set): it can be printed with "
                            "--dry-run only; give -p imagenet_dir /path/to/val to run it")
    groups = group_works(plan)
    start = time.time()
    chunks = plan.n_chunks
    if serial:
        computed = reused = 0
        bar = _bar(len(groups), progress)
        for works in groups:
            c, r = compute_group(works, plan.images[works[0].image_key], plan.cache_dir, plan.device,
                                 on_chunk=on_chunk)
            computed, reused = computed + c, reused + r
            bar.update(1)
        bar.close()
        return SweepReport(len(groups), len(plan.works), chunks, computed, reused, time.time() - start)
    return _run_dask(plan, groups, scheduler=scheduler, client=client, n_workers=n_workers, progress=progress,
                     retries=retries, print_fn=print_fn, start=start, connect_timeout=connect_timeout)


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="task", desc="sweep", disable=not progress)


def _run_dask(plan, groups, *, scheduler, client, n_workers, progress, retries, print_fn, start,
              connect_timeout) -> SweepReport:
    try:
        from concurrent.futures import CancelledError

        from distributed import Client, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError:
        raise CertattrError("Dask distributed is not installed: pip install 'dask[distributed]' "
                            "(or run the sweep with --serial)") from None
    own_cluster = own_client = None
    if client is None:
        if scheduler:
            try:
                client = own_client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as err:
                raise CertattrError(f"could not connect to the Dask scheduler {scheduler!r} ({type(err).__name__}: "
                                    f"{err}); give the address a running scheduler prints, e.g. tcp://host:8786") from None
        else:
            own_cluster = local_cluster(plan.device, n_workers)
            client = own_client = Client(own_cluster)
    try:
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        dashboard = getattr(client, "dashboard_link", None)
        print_fn(f"[certattr sweep] {workers} Dask worker(s); dashboard: {dashboard or 'none'}")
        threads = _torch_threads(plan.device, workers)
        # every worker holds every image (a killed worker's tasks then find their image on the others)
        images = client.scatter({k: plan.images[k] for k in {w[0].image_key for w in groups}}, broadcast=True)
        run = uuid.uuid4().hex[:8]  # task keys unique to this sweep (a client may run several)

        def submit(i: int, attempt: int, image):
            works = groups[i]
            future = client.submit(compute_group, works, image, plan.cache_dir, plan.device, threads,
                                   key=f"certattr-group-{i}-{_group_token(works)}-{run}-{attempt}", retries=retries,
                                   pure=False)
            index[future.key] = (i, attempt)
            return future

        index: dict = {}
        pending = as_completed([submit(i, 0, images[works[0].image_key]) for i, works in enumerate(groups)])
        computed = reused = 0
        bar = _bar(len(groups), progress)
        try:
            for future in pending:
                i, attempt = index.pop(future.key)
                try:
                    c, r = future.result()
                except CertattrError:
                    raise
                except (CancelledError, KilledWorker) as err:
                    # lost with a dying worker (its task, or an image copy it held): send the image again and
                    # resubmit; the rerun skips the chunks already in the cache
                    if attempt >= retries:
                        raise CertattrError(f"a sweep task was lost {attempt + 1} times ({type(err).__name__}: {err}); "
                                            "finished chunks are kept in the cache, rerun the sweep to resume") from None
                    image = client.scatter(plan.images[groups[i][0].image_key], broadcast=True, hash=False)
                    pending.add(submit(i, attempt + 1, image))
                    continue
                except Exception as err:  # a task that failed on every retry
                    raise CertattrError(f"a sweep task failed ({type(err).__name__}: {err}); finished chunks are "
                                        "kept in the cache, rerun the sweep to resume") from None
                computed, reused = computed + c, reused + r
                bar.update(1)
        finally:
            bar.close()
        return SweepReport(len(groups), len(plan.works), plan.n_chunks, computed, reused, time.time() - start,
                           dashboard)
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()


def _group_token(works) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([w.entry for w in works], default=str).encode()).hexdigest()[:12]


def _size(n: int) -> str:
    """Bytes in KiB below a MiB, MiB below a GiB, else in GiB (binary units)."""
    if n < 2**20:
        return f"{n / 2**10:.1f} KiB"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.2f} GiB"


_KIND_NAMES = {"topk": "top-K codes", "raw": "raw maps", "topset": "top-k sets", "sum": "bounded sums"}


def dry_run_text(plan: Plan, est: dict, profile: str) -> str:
    """The lines ``certattr sweep --dry-run`` prints."""
    s = plan.summary()
    hours = est["seconds"] / 3600
    lines = [f"[certattr sweep] profile {profile}: {s['works']} cache entries (model x method x layer x sigma x "
             f"image x target) on {s['images']} images with {s['models']} models; {len(group_works(plan))} tasks",
             f"  chunks: {s['chunks']}; samples: {s['samples']}",
             f"  model passes: {est['full_passes']:,} full (Input layer, forward and backward), "
             f"{est['forward_passes']:,} forward only (RISE's masks, Occlusion's windows at the Input layer), "
             f"{est['body_passes']:,} to the Final layer "
             f"(shared by the Final-layer methods of an image), {est['head_passes']:,} after it; "
             f"{est['closed_form']:,} more in closed form (RISE, Occlusion, AblationCam through a GAP->linear head)",
             f"  estimated device time on {est['device']}: {hours:.2f} device-hours ({est['seconds']:.0f} s)"
             + "".join(f"\n    {m}: {v / 3600:.2f} h" for m, v in est["per_model_seconds"].items())]
    if est["rates_measured"]:
        lines.append(f"  rates measured now on this machine (one timed batch per model and image size): "
                     f"{', '.join(est['rates_measured'])}" + (f"; stored in {est['rates_file']}" if est["rates_file"] else ""))
    if est["rates_read"]:
        lines.append(f"  rates read from {est['rates_file']} (measured earlier on this device): {', '.join(est['rates_read'])}")
    if est["rates_missing"]:
        lines.append(f"  no rate for {', '.join(est['rates_missing'])}: left out of the estimate (run without --no-measure)")
    kinds = ", ".join(f"{_KIND_NAMES.get(k, k)} {_size(v)}" for k, v in sorted(est["bytes_by_encoding"].items(),
                                                                                 key=lambda kv: -kv[1]))
    lines.append(f"  cache: {_size(est['bytes'])} in {plan.cache_dir} ({kinds}; {est['ratio_text']}); float32 maps "
                 f"of every sample, as the reference code caches them, would take {_size(est['raw_bytes'])} "
                 f"({est['raw_bytes'] / max(est['bytes'], 1):.1f} x more)")
    lines += [f"  note: {n}" for n in plan.notes]
    return "\n".join(lines)

