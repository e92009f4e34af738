"""The GPU check's run: its time guard, the steps that failed, and its outputs (``gpu_check.json`` and the
``gpu_check.md`` table), rewritten after every step so that a run killed from outside still leaves what it measured.
The measurements are in :mod:`certattr.profiling.gpu_measurements`, the command in :mod:`certattr.profiling.gpu_check`.
"""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import torch


class Run:
    """The outputs being filled, the clock and the guard."""

    def __init__(self, out: Path, settings: dict, meta: dict):
        self.out, self.settings, self.start = out, settings, time.perf_counter()
        self.budget = self.deadline = settings["budget_seconds"]
        self.result = {"meta": meta, "limits": {}, "methods": [], "precision": [], "batching": [], "memory": {},
                       "skipped": [], "failed": []}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def phase(self, until: float) -> None:
        """The steps that follow must start before ``until`` (a fraction of the budget), so that a slow step
        leaves time to the later ones."""
        self.deadline = until * self.budget

    def allowed(self, what: str, estimate: float = 0.0) -> bool:
        """False (and the step recorded as skipped) when starting ``what`` would pass the phase's deadline."""
        if self.elapsed() + estimate <= self.deadline:
            return True
        self.result["skipped"].append({"what": what, "reason": f"time guard: {self.elapsed():.0f} s spent, about "
                                       f"{estimate:.0f} s more needed, this phase ends at {self.deadline:.0f} s "
                                       f"of {self.budget:.0f} s"})
        return False

    def failed(self, what: str, err: Exception) -> None:
        """Record a step that raised (the run goes on with the next one)."""
        self.result["failed"].append({"what": what, "error": f"{type(err).__name__}: {err}"})
        print(f"  {what} failed: {type(err).__name__}: {err}", flush=True)
        if isinstance(err, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        self.save()

    def save(self) -> None:
        self.result["meta"]["elapsed_s"] = round(self.elapsed(), 2)
        self.result["memory"]["host_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu_check.json").write_text(json.dumps(self.result, indent=1))
        (self.out / "gpu_check.md").write_text(markdown(self.result))


# --- the table ---------------------------------------------------------------------------------------------------
def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [f"# GPU check: {meta['model']} on {meta['device_name']} ({meta['settings_name']} settings)", "",
             (f"n = {meta['settings']['n']}, n0 = {meta['settings']['n0']}, sigma = {meta['settings']['sigma']}, "
              f"K = {meta['settings']['ks']}, chunk_size = {meta['settings']['chunk_size']}, image "
              f"{meta['image']}; torch {meta['torch']}; {meta.get('elapsed_s', 0):.0f} s in all."),
             (f"Execution: {meta['execution']}; TF32 allowed in cuDNN convolutions: {meta['cudnn_allow_tf32']}, "
              f"in matmuls: {meta['matmul_allow_tf32']}."), "",
             "## The model's limit (images/s at the fastest batch size)", "",
             "| precision | forward | (batch) | forward+backward | (batch) |", "|---|---|---|---|---|"]
    for precision, entry in result["limits"].items():
        f, b = entry.get("forward", {}), entry.get("forward_backward", {})
        lines.append(f"| {precision} | {f.get('best_images_per_s')} | {f.get('best_batch')} | "
                     f"{b.get('best_images_per_s')} | {b.get('best_batch')} |")
    lines += ["", "## Every method, fp32", "",
              ("| method@layer | s / image | limit s / image (reference) | x limit | outside the model / model | "
               "peak GPU MB |"), "|---|---|---|---|---|---|"]
    for r in result["methods"]:
        if "undefined" in r:
            lines.append(f"| {r['method']}@{r['layer']} | undefined | | | | |")
            continue
        ref = "fwd" if r["reference"] == "forward" else "fwd+bwd"
        peak = "n/a" if r["peak_memory_bytes"] is None else f"{r['peak_memory_bytes'] / 2**20:.0f}"
        lines.append(f"| {r['method']}@{r['layer']} | {r['seconds_per_image']:.3f} | {r['limit_seconds_per_image']} "
                     f"({ref}, {r['passes_per_map']} passes/map) | {r['ratio_to_limit']} | "
                     f"{r['overhead']['outside_over_model']} | {peak} |")
    lines += ["", "## Reduced precision against fp32", "",
              ("| method@layer | precision | s / image | speed-up | labels differing | per K | 1 -> 0 | 0 -> 1 | "
               "majority differing |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in result["precision"]:
        per_k = ", ".join(f"{k}: {v:.4f}" for k, v in r["differing_share_per_k"].items())
        lines.append(f"| {r['method']}@{r['layer']} | {r['precision']} | {r['seconds_per_image']:.3f} | "
                     f"{r['speedup_vs_fp32']} | {r['differing_share']:.4f} | {per_k} | {r['one_to_zero']} | "
                     f"{r['zero_to_one']} | {r['majority_differing_share']:.4f} |")
    lines += ["", "## Batching: chunk_size copies per call against one per call", "",
              "| method@layer | batched maps/s | one at a time maps/s | gain |", "|---|---|---|---|"]
    for r in result["batching"]:
        lines.append(f"| {r['method']}@{r['layer']} | {r['batched_maps_per_s']} | {r['single_maps_per_s']} | "
                     f"{r['gain']} |")
    memory = result["memory"]
    by_chunk = memory.get("peak_bytes_by_chunk")
    lines += ["", "## Memory", "",
              f"* largest chunk (GB at the Input layer, doubling from 64) that fits: {memory.get('largest_chunk')}"
              + (f" (peak bytes by chunk: {by_chunk})" if by_chunk else ""),
              f"* copy of one chunk to the device: {memory.get('transfer_seconds_per_chunk')} s",
              f"* host peak RSS: {memory.get('host_peak_rss_mb')} MB"]
    if result["failed"]:
        lines += ["", "## Failed", ""] + [f"* {s['what']}: {s['error']}" for s in result["failed"]]
    if result["skipped"]:
        lines += ["", "## Skipped by the time guard", ""] + [f"* {s['what']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines) + "\n"
