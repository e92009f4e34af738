"""The user's devices and shared caches on the CLI: devices this machine lacks, a read-only sample cache.

A read-only cache that holds everything a run needs is read (the same certificate); a run that must write to it
stops with one line. Made read-only with chmod where the tests do not run as root, else with a real read-only
tmpfs in a user namespace (root ignores file modes); skipped where neither is possible.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from certattr.cli import main
from certattr.engine.validation import CertattrError, check_device

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "TINY", "--final-layer", "last", "--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25",
        "--input-size", "32", "--trust-pickle", "--method", "grad", "--layer", "input", "--n", "20", "--n0", "4",
        "--alpha", "0.2", "--tau", "0.6", "--k", "50", "--quiet"]


@pytest.mark.parametrize("device, message", [
    ("mps", "device='mps' is not available here: no Apple GPU (MPS) was found; use --device cpu"),
    ("meta", "device='meta' is not allowed: the meta device holds shapes, not values"),
    ("tpu", "device='tpu' is not allowed: give cpu, cuda, cuda:N or mps"),
    ("cuda:3", "device='cuda:3' is not available here"),
])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, device, message):
    if device == "cuda:3" and torch.cuda.is_available() and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3, so 'cuda:3' is no device it lacks")
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS, so 'mps' is no device it lacks")
    code = main(["certify", "coffee", "--out", str(tmp_path / "out"), "--device", device])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("certattr: error:")
    with pytest.raises(CertattrError, match="is not (available|allowed)"):
        check_device(device)
    assert check_device("cpu") == torch.device("cpu")


_SCRIPT = textwrap.dedent(r"""
    import json, os, subprocess, sys
    from pathlib import Path
    cache, out, mode, flags = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    if mode == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(cache)], check=True)
    def run(*args):
        return subprocess.run([sys.executable, "-m", "certattr.cli", "certify", "coffee", "--cache", str(cache),
                               *flags, *map(str, args)], capture_output=True, text=True)
    first = run("--out", out / "first")
    assert first.returncode == 0, first.stderr
    if mode == "tmpfs":
        subprocess.run(["mount", "-o", "remount,ro", str(cache)], check=True)
    else:
        for folder, _, files in os.walk(cache):
            for name in files + [""]:
                os.chmod(Path(folder) / name, 0o555 if not name else 0o444)
    again, other = run("--out", out / "again"), run("--out", out / "other", "--seed", "1")
    same = (out / "again" / "certificate.npz").is_file() and \
        (out / "first" / "certificate.npz").read_bytes() == (out / "again" / "certificate.npz").read_bytes()
    print(json.dumps({"again": [again.returncode, again.stderr], "other": [other.returncode, other.stderr],
                      "same": same}))
""")


def test_a_read_only_cache_that_holds_everything_is_read(tmp_path):
    torch.manual_seed(0)
    from certattr.models.tiny_nets import TinyResNet

    torch.save(TinyResNet(10, 8).eval(), tmp_path / "tiny.pt")
    flags = [str(tmp_path / "tiny.pt") if f == "TINY" else f for f in TINY]
    cache, out = tmp_path / "cache", tmp_path / "out"
    cache.mkdir()
    out.mkdir()
    script = tmp_path / "ro.py"
    script.write_text(_SCRIPT)
    args = [sys.executable, str(script), str(cache), str(out)]
    if os.geteuid() != 0:
        command = args + ["chmod", json.dumps(flags)]
    elif shutil.which("unshare") and subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"],
                                                    capture_output=True).returncode == 0:
        command = ["unshare", "--user", "--map-root-user", "--mount"] + args + ["tmpfs", json.dumps(flags)]
    else:
        pytest.skip("running as root without user namespaces: a folder cannot be made read-only here")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    try:
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout.strip().splitlines()[-1])
        assert result["again"][0] == 0 and result["same"], result  # everything was there: read, nothing written
        code, err = result["other"]  # another seed must write new chunks: one line
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("certattr: error: the sample cache"), err
        assert "read-only" in lines[0] or "permission denied" in lines[0].lower(), lines[0]
    finally:
        for folder, _, files in os.walk(cache):
            os.chmod(folder, 0o755)
