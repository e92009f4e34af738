"""A catalogue of bad inputs and file-system faults, through the CLI: each is one line on stderr, no
traceback, exit 2, and nothing is lost (old outputs intact, no temporary file left) (issue 16, points 4, 5, 7).

The CLI runs with the tiny test model in place of the registered ones (``_RUNNER``) so that a whole run
takes a second. Read-only and full file systems are real: a tmpfs mounted in a user namespace
(``unshare --user --map-root-user --mount``); where the machine does not allow that, those cases skip.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]

_RUNNER = textwrap.dedent(r"""
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    import certattr.models.registry as models
    from certattr.models.testing import tiny_model
    import dataclasses

    def load_model(name, weights="pretrained", device="cpu", seed=0):
        model = tiny_model(seed=0)  # the CLI reads images at the model's size: 224x224, as the presets (and the
        model.spec = dataclasses.replace(model.spec, resize=256, crop=224)  # sizes the full disk is sized for)
        return model

    models.load_model = load_model
    if "--bomb" in sys.argv:
        sys.argv.remove("--bomb")
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = 1000
    from certattr.cli import main
    sys.exit(main(sys.argv[1:]))
""")

FAST = ["--method", "grad", "--n", "20", "--n0", "5", "--alpha", "0.05", "--k", "50", "--quiet"]  # + --layer


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner") / "run_cli.py"
    path.write_text(_RUNNER.format(root=str(ROOT)))
    return path


def cli(runner, *args, timeout=120):
    return subprocess.run([sys.executable, str(runner), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line(run, *fragments):
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("certattr: error: "), run.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def snapshot(folder: Path) -> dict:
    """{relative path: sha256 of a regular file, or its kind} of everything under ``folder``."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            out[rel] = "special"
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def leftovers(*folders) -> list:
    found = []
    for folder in folders:
        if Path(folder).exists():
            found += [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp") or ".certattr-" in p.name]
    return found


# --- the catalogue: (name, setup(tmp) -> args, fragments of the one line) -------------------------------------
def _out_is_file(tmp):
    (tmp / "out").write_text("x")
    return ["coffee", "--out", tmp / "out"], ["--out", "is a file"]


def _out_parent_is_file(tmp):
    (tmp / "f").write_text("x")
    return ["coffee", "--out", tmp / "f" / "out"], ["--out", "is a file, not a folder"]


def _out_under_proc(tmp):
    return ["coffee", "--out", "/proc/certattr-out"], ["--out", "/proc/certattr-out", "cannot be written"]


def _out_with_other_files(tmp):
    (tmp / "out").mkdir()
    (tmp / "out" / "notes.txt").write_text("mine")
    return ["coffee", "--out", tmp / "out"], ["holds other files (notes.txt)"]


def _cache_is_file(tmp):
    (tmp / "cache").write_text("x")
    return ["coffee", "--out", tmp / "out", "--cache", tmp / "cache"], ["sample cache", "is a file"]


def _cache_under_proc(tmp):
    return ["coffee", "--out", tmp / "out", "--cache", "/proc/certattr-cache"], ["sample cache", "cannot be written"]


def _image_not_an_image(tmp):
    (tmp / "x.png").write_text("hello")
    return [tmp / "x.png", "--out", tmp / "out"], ["x.png", "could not be read as an image"]


def _image_folder(tmp):
    (tmp / "d.png").mkdir()
    return [tmp / "d.png", "--out", tmp / "out"], ["d.png", "is a folder"]


def _image_fifo(tmp):
    os.mkfifo(tmp / "p.png")
    return [tmp / "p.png", "--out", tmp / "out"], ["p.png", "not a regular file"]


def _image_bomb(tmp):
    from PIL import Image

    Image.new("RGB", (64, 64)).save(tmp / "big.png")
    return [tmp / "big.png", "--out", tmp / "out", "--bomb"], ["big.png", "too large to decode"]


def _image_missing(tmp):
    return [tmp / "nope.png", "--out", tmp / "out"], ["nope.png", "does not exist"]


def _repeated_flag(tmp):
    return ["coffee", "--out", tmp / "out", "--sigma", "0.1", "--sigma", "0.2"], ["--sigma was given twice"]


def _absurd_n(tmp):
    return ["coffee", "--out", tmp / "out", "--n", "1000000000000"], ["n=1000000000000 is not allowed", "years"]


def _n_not_an_int(tmp):
    return ["coffee", "--out", tmp / "out", "--n", "10**12"], ["invalid int value: '10**12'"]


def _book_unknown_parameter(tmp):
    return ["book", "--only", "method", "-p", "sigmaa", "0.3"], ["-p sigmaa: no such parameter", "did you mean 'sigma'?", "sigma, "]


def _book_string_for_list(tmp):
    return ["book", "--only", "method", "-p", "layers", "final"], ["expects a list", "-p layers [final]"]


def _book_malformed_value(tmp):
    return ["book", "--only", "method", "-p", "ks", "[10, 30"], ["-p ks", "not valid YAML"]


def _book_parameter_twice(tmp):
    return ["book", "--only", "method", "-p", "sigma", "0.1", "-p", "sigma", "0.2"], ["-p sigma was given twice"]


def _book_missing_root(tmp):
    return ["book", "--root", tmp / "nobook"], ["book root", "does not exist"]


def _book_root_is_file(tmp):
    (tmp / "bookfile").write_text("x")
    return ["book", "--root", tmp / "bookfile"], ["book root", "is a file"]


CATALOGUE = [_out_is_file, _out_parent_is_file, _out_under_proc, _out_with_other_files, _cache_is_file,
             _cache_under_proc, _image_not_an_image, _image_folder, _image_fifo, _image_bomb, _image_missing,
             _repeated_flag, _absurd_n, _n_not_an_int, _book_unknown_parameter, _book_string_for_list,
             _book_malformed_value, _book_parameter_twice, _book_missing_root, _book_root_is_file]


def _with_defaults(args, tmp):
    """``certify`` + the case's arguments + the FAST settings the case does not set itself."""
    args = ["certify", *args]
    extra = FAST + ["--layer", "input", "--cache", tmp / "cache"]
    i = 0
    while i < len(extra):
        flag = extra[i]
        takes = 0 if flag == "--quiet" else 1
        if flag not in args:
            args += extra[i:i + 1 + takes]
        i += 1 + takes
    return args


def cli_in_process(capsys, monkeypatch, args):
    """main() in this process (an uncaught exception fails the test with its traceback)."""
    import types

    import certattr.models.registry as models
    from certattr.cli import main
    from certattr.models.testing import tiny_model

    monkeypatch.setattr(models, "load_model", lambda *a, **k: tiny_model(seed=0))
    if "--bomb" in args:
        from PIL import Image

        args = [a for a in args if a != "--bomb"]
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stderr=captured.err, stdout=captured.out)


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.__name__[1:] for c in CATALOGUE])
def test_catalogue_one_line_no_traceback_nothing_left(case, tmp_path, capsys, monkeypatch):
    if case is _image_fifo and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform (os.mkfifo is missing): the FIFO case cannot be built")
    if case is _out_under_proc and not Path("/proc").is_dir():
        pytest.skip("no /proc on this machine: the case of an output folder under /proc cannot be built")
    args, fragments = case(tmp_path)
    if args[0] != "book":
        args = _with_defaults(args, tmp_path)
    before = snapshot(tmp_path)
    assert_one_line(cli_in_process(capsys, monkeypatch, args), *fragments)
    assert not leftovers(tmp_path)
    assert snapshot(tmp_path) == before  # nothing written, nothing removed (the cache is not created either)


def test_repeated_k_is_merged_and_a_damaged_chunk_is_one_warning(runner, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    run = cli(runner, "certify", "coffee", "--out", out, "--cache", cache, *FAST, "--layer", "input", "--k", "25")
    assert run.returncode == 0, run.stderr
    assert json.loads((out / "certificate.json").read_text())["ks"] == [50.0, 25.0]  # --k 50 --k 25: both
    chunk = sorted(cache.rglob("chunk_*.npz"))[0]
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    first = snapshot(out)
    run = cli(runner, "certify", "coffee", "--out", out, "--cache", cache, *FAST, "--layer", "input", "--k", "25")
    assert run.returncode == 0 and "Traceback" not in run.stderr
    damaged = [line for line in run.stderr.splitlines() if "damaged chunk" in line]
    assert len(damaged) == 1 and damaged[0].startswith("certattr: warning: sample cache:") and "recomputed" in damaged[0]
    assert snapshot(out) == first  # the recomputed chunk gives the same certificate, overlay and summary
    assert not leftovers(out.parent, cache)


def test_degenerate_maps_are_named_in_one_cli_line(runner, tmp_path):
    out = tmp_path / "out"
    run = cli(runner, "certify", "coffee", "--out", out, "--no-cache", *FAST, "--layer", "final")
    # the tiny model's head is GAP -> linear: Grad at the Final layer is constant up to rounding
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if "DegenerateMapWarning" in line or "rounding" in line]
    assert len(lines) == 1 and lines[0].startswith("certattr: warning:") and "grad@final" in lines[0]
    assert "rounding" in json.loads((out / "certificate.json").read_text())["degenerate"]


# --- real read-only and full file systems ---------------------------------------------------------------------
_NS = textwrap.dedent(r"""
    import hashlib, json, os, subprocess, sys
    from pathlib import Path
    runner, mnt, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    fast = {fast!r} + ["--layer", "input"]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    def run(*args):
        return subprocess.run([sys.executable, runner, *map(str, args)], capture_output=True, text=True)
    def snap(folder):
        return {{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}} \
            if folder.is_dir() else {{}}
    out, cache = mnt / "out", mnt / "cache"
    first = run("certify", "coffee", "--out", out, "--cache", cache, *fast)
    assert first.returncode == 0, first.stderr
    old = snap(out)
    chunks_before = sorted(p.name for p in cache.rglob("chunk_*"))
    if mode == "readonly":
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        second = run("certify", "coffee", "--out", out, "--cache", cache, *fast, "--seed", "1")
    else:
        # fill the disk, then free 64 KB: enough for the checks, not for a new chunk or a new output set
        with open(mnt / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        os.truncate(mnt / "filler", max(0, os.path.getsize(mnt / "filler") - 65536))
        target = sys.argv[4]
        args = ["--cache", cache, "--seed", "1"] if target == "cache" else ["--no-cache"]
        second = run("certify", "coffee", "--out", out, *args, *fast)
    left = [str(p) for p in mnt.rglob("*") if p.name.endswith(".tmp") or ".certattr-" in p.name]
    print(json.dumps({{"rc": second.returncode, "stderr": second.stderr, "same": snap(out) == old, "left": left,
                      "chunks_kept": set(chunks_before) <= set(p.name for p in cache.rglob("chunk_*"))}}))
""")


def _namespace_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("mount"):
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.parametrize("mode,target", [pytest.param("readonly", "out", marks=pytest.mark.slow), ("full", "out"),
                                         pytest.param("full", "cache", marks=pytest.mark.slow)])
def test_read_only_and_full_file_systems(mode, target, runner, tmp_path):
    if not _namespace_available():
        pytest.skip("this machine does not allow a tmpfs in a user namespace (unshare --user --mount)")
    script = tmp_path / "ns.py"
    script.write_text(_NS.format(fast=[str(a) for a in FAST]))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, str(script),
                          str(runner), str(mnt), mode, target], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rc"] == 2 and "Traceback" not in result["stderr"], result
    lines = result["stderr"].strip().splitlines()
    errors = [line for line in lines if line.startswith("certattr: error:")]
    assert len(errors) == 1 and all(line.startswith("certattr: warning:") for line in lines if line not in errors), result
    cause = "read-only" if mode == "readonly" else "disk is full"
    assert cause in errors[0] and str(mnt) in errors[0], errors[0]
    assert result["same"] and result["left"] == [] and result["chunks_kept"], result


# --- a kill at any moment leaves the complete old set or the complete new set ---------------------------------
_WRITER = textwrap.dedent(r"""
    import sys
    sys.path.insert(0, {root!r})
    from certattr.engine.files import write_file_set
    out, start = sys.argv[1], int(sys.argv[2])
    for generation in range(start, start + 100000):
        tag = str(generation).encode()
        write_file_set(out, {{"certificate.npz": tag * 20000, "certificate.json": tag * 10, "overlay.png": tag * 50000}})
        print(generation, flush=True)
""")


def test_sigkill_at_any_moment_leaves_a_complete_set(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(root=str(ROOT)))
    out = tmp_path / "out"
    rng = np.random.default_rng(0)
    start = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(script), str(out), str(start)], stdout=subprocess.PIPE)
        proc.stdout.readline()  # one set written: now kill it somewhere inside a later write
        time.sleep(float(rng.uniform(0, 0.2)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        start += 100000
        files = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else {}
        if not files:
            continue
        assert set(files) == {"certificate.npz", "certificate.json", "overlay.png"}
        tags = {name: data[: len(data) // {"certificate.npz": 20000, "certificate.json": 10,
                                           "overlay.png": 50000}[name]] for name, data in files.items()}
        assert len(set(tags.values())) == 1, "a mixed set of files"
        gen = list(tags.values())[0]
        assert files["certificate.npz"] == gen * 20000 and files["overlay.png"] == gen * 50000  # complete
    assert out.exists()
    # stale staging folders of killed writers are removed by the next write
    from certattr.engine.files import write_file_set

    write_file_set(out, {"certificate.npz": b"a", "certificate.json": b"b", "overlay.png": b"c"})
    assert not leftovers(tmp_path)
