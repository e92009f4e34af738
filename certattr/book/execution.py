"""The book's "Execution of this build" page: when, on what hardware, with which software, how long each chapter took.

``run_chapter`` records each successful execution beside the executed notebook, in
``book/chapters/.<chapter>.run.json`` (seconds, date, profile); ``build_book`` then calls
:func:`write_execution_page`, which writes ``book/chapters/execution.md`` before the book is built (the page is
in ``_toc.yml``, so it must exist for every profile). A chapter that was not re-executed because it was up to
date shows the date and duration of the run that produced its notebook.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..models.registry import load_model

__all__ = ["PACKAGES", "record_execution", "read_execution", "hardware", "software", "write_execution_page", "machine",
           "chapter_rows", "model_speed", "speed_text"]

#: the distributions whose versions the page lists (PyPI names)
PACKAGES = ["torch", "torchvision", "captum", "zennit", "timm", "numpy", "scipy", "pandas", "matplotlib", "seaborn",
            "papermill", "jupytext", "jupyter-book", "sphinx", "myst-nb", "sphinx-mathjax-offline",
            "sphinxcontrib-bibtex", "certattr"]


def _record_path(output_dir: Path, chapter: str) -> Path:
    return Path(output_dir) / f".{chapter}.run.json"


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def record_execution(output_dir: Path, chapter: str, seconds: float, *, profile: str | None = None,
                     finished: float | None = None, speed: dict | None = None) -> Path:
    """Write the record of one successful execution of ``chapter`` (``finished`` defaults to now); ``speed``: the
    machine's :func:`model_speed` measured when the chapter started."""
    path = _record_path(output_dir, chapter)
    finished = time.time() if finished is None else finished
    path.write_text(json.dumps({"chapter": chapter, "seconds": round(float(seconds), 1), "finished": finished,
                                "date": _date(finished), "profile": profile, "machine": machine(),
                                "speed": speed}, indent=1))
    return path


_SPEED_MODEL: dict = {}


def model_speed(batch: int = 8, threads: int = 2, rounds: int = 5) -> dict:
    """The machine's speed in the unit every chapter time can be compared in: EfficientNet-Lite0 (ImageNet weights,
    eager, fp32, its fast path) at ``batch`` images of 224x224 on ``threads`` CPU threads, the best of ``rounds``
    timed batches after one warm-up: {"forward": images/s without gradient, "forward_gradient": images/s with the
    gradient of the top logit with respect to the input, "batch", "threads"}. About 3 s on 2 cores."""
    import torch

    net = _SPEED_MODEL.get("net") or _SPEED_MODEL.setdefault("net", load_model("efficientnet_lite0",
                                                                               compilation="off"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        best = {}
        for kind in ("forward", "forward_gradient"):
            times = []
            for r in range(rounds + 1):
                start = time.perf_counter()
                if kind == "forward":
                    with torch.inference_mode():
                        net(x)
                else:
                    xi = x.clone().requires_grad_(True)
                    net(xi).max(1).values.sum().backward()
                if r:  # the first is the warm-up
                    times.append(time.perf_counter() - start)
            best[kind] = round(batch / min(times), 1)
    finally:
        torch.set_num_threads(before)
    return {**best, "batch": batch, "threads": threads}


def speed_text(speed: dict | None) -> str:
    """"EfficientNet-Lite0 at batch 8 on 2 threads: 147 images/s forward, 52 forward+gradient"."""
    if not speed:
        return "machine speed not recorded"
    return (f"EfficientNet-Lite0 at batch {speed['batch']} on {speed['threads']} threads: {speed['forward']:.0f} "
            f"images/s forward, {speed['forward_gradient']:.0f} forward+gradient")


def machine() -> str:
    """The machine a chapter runs on, in words: CPU model, usable cores and GPU (no host name)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    gpu = _gpu()
    text = f"{_cpu_model()}, {usable} core{'' if usable == 1 else 's'}"
    return text + ("" if gpu.startswith(("none", "unknown")) else f", {gpu}")


def read_execution(output_dir: Path, chapter: str) -> dict | None:
    """The record of the last successful execution of ``chapter``, or None (never run, failed, or unreadable)."""
    path = _record_path(output_dir, chapter)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":")[0].strip() in ("model name", "Model", "Hardware"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return "unknown"


def _gpu() -> str:
    try:
        import torch
    except Exception as err:  # torch missing or broken: say so rather than fail the book
        return f"unknown (torch not importable: {type(err).__name__})"
    if not torch.cuda.is_available():
        return "none (torch.cuda.is_available() is False)"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return ", ".join(names) + f" (CUDA {torch.version.cuda})"


def hardware() -> list[tuple[str, str]]:
    """(item, value) rows: CPU model, cores, memory, GPU, operating system."""
    cores = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = cores
    return [("CPU", _cpu_model()),
            ("cores", f"{cores}" + (f" ({usable} usable by this process)" if usable != cores else "")),
            ("memory", _memory_gib()),
            ("GPU", _gpu()),
            ("operating system", platform.platform())]


def software(packages=PACKAGES) -> list[tuple[str, str]]:
    """(package, version) rows, Python first; 'not installed' for a missing distribution."""
    rows = [("Python", sys.version.split()[0] + f" ({platform.python_implementation()})")]
    for name in packages:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, str], rows, caption: str) -> str:
    """A two-column Markdown table under its caption (``caption`` starts "Table N.": the page's own numbering)."""
    number, _, text = caption.partition(". ")
    lines = [f"**{number}.** {text}", "", f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} |" for a, b in rows]
    return "\n".join(lines)


def _seconds(seconds) -> str:
    seconds = float(seconds)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds:.0f} s ({seconds / 60:.1f} min)"


def chapter_rows(output_dir: Path, chapters, *, ran=(), since: float | None = None) -> list[tuple[str, str]]:
    """Per chapter: executed in this run (seconds), up to date (date and seconds of the run that made it), or not run.

    ``ran``: the chapters this build ran (executed or found up to date); ``since``: when this build started, so
    a record written after it is an execution of this run.
    """
    rows = []
    for chapter in chapters:
        record = read_execution(output_dir, chapter)
        if record is None:
            executed = (Path(output_dir) / f"{chapter}.ipynb").exists()
            status = "executed (no timing recorded)" if executed else "not executed"
        elif since is not None and chapter in ran and record.get("finished", 0) >= since:
            status = f"executed in this run on {record['date']} in {_seconds(record['seconds'])}"
        elif chapter in ran:
            status = f"up to date (executed on {record['date']} in {_seconds(record['seconds'])})"
        else:
            status = f"not run in this build (executed on {record['date']} in {_seconds(record['seconds'])})"
        if record is not None and record.get("profile"):
            status += f", profile `{record['profile']}`"
        if record is not None:
            status += f", on {record.get('machine') or 'a machine not recorded'}; {speed_text(record.get('speed'))}"
        rows.append((f"{{doc}}`{chapter}`", status))
    return rows


def write_execution_page(root: Path, profile: str, chapters, *, ran=(), since: float | None = None,
                         overrides: dict | None = None, now: float | None = None) -> Path:
    """Write ``<root>/book/chapters/execution.md`` and return its path."""
    output_dir = Path(root) / "book" / "chapters"
    output_dir.mkdir(parents=True, exist_ok=True)
    now = time.time() if now is None else now
    override_text = (", with the overrides " + ", ".join(f"`{k} = {json.dumps(v)}`" for k, v in overrides.items())
                     if overrides else "")
    records = {c: r for c in chapters if (r := read_execution(output_dir, c))}
    this_build = {c: r for c, r in records.items() if since is not None and c in ran and r.get("finished", 0) >= since}
    total = sum(float(r["seconds"]) for r in records.values())
    machines = sorted({r.get("machine") or "a machine not recorded" for r in records.values()})
    if records:
        executed = _seconds(sum(float(r["seconds"]) for r in this_build.values()))
        if len(this_build) == len(records):
            ran_text = f"all of them, in {executed}."
        elif this_build:
            ran_text = f"{len(this_build)} of them in {executed}; the others come from the earlier runs dated in their rows."
        else:
            ran_text = "none of them: every chapter's numbers come from the earlier run dated in its row."
        total_text = (f"The numbers of the {len(records)} chapters with a recorded run took {_seconds(total)} to compute "
                      f"in all, on {'; '.join(machines)}. This build executed " + ran_text)
    else:
        total_text = "No chapter has a recorded run: the chapters' numbers were not computed by `certattr book`."
    page = "\n".join([
        "# Execution of this build",
        "",
        f"This book was built on **{_date(now)}** with the profile **`{profile}`**{override_text} "
        "(each chapter lists its parameters in its first cell). The chapters were executed with papermill by "
        "`certattr book`; a chapter whose notebook, parameters and `certattr` sources had not changed since its "
        "last run was not executed again, and its row gives the date and duration of the run that produced it.",
        "",
        "## Hardware",
        "",
        _table(("item", "value"), hardware(), "Table 1. The machine that built this book."),
        "",
        "## Software",
        "",
        _table(("package", "version"), software(), "Table 2. The versions of the packages that computed the numbers."),
        "",
        "## Chapters",
        "",
        "Each row gives the machine's speed measured just before the chapter ran (EfficientNet-Lite0, eager, at "
        "batch 8 on 2 threads), so that chapter times from different days or machines can be compared: divide a "
        "time by the ratio of two speeds. The speed is a snapshot of that moment: a low one means the machine was "
        "busy with other work when the chapter started, and its time is then longer than the chapter needs.",
        "",
        _table(("chapter", "where and when its numbers were computed"),
               chapter_rows(output_dir, chapters, ran=ran, since=since),
               "Table 3. Each chapter's run: when, how long, and the machine's speed just before it."),
        "",
        total_text,
        "",
    ])
    path = output_dir / "execution.md"
    path.write_text(page)
    return path
