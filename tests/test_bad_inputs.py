"""Every bad input of the generated corpus (tests/make_bad_inputs.py) gets a clean, one-line
answer: exit status 2, ``nascsmri: error: FILE: problem`` naming the file, no traceback, nothing
left behind; odd-but-valid inputs succeed. The napari reader never raises from ``get_reader``
and its reader only raises ``InputError``.

Most cases run in this process through ``backend.cli.main`` (fast); a few run as real
``python -m backend`` processes for the exit-status / stderr contract, and the cases declaring
enormous shapes also run in a child under an address-space limit, so that a regression cannot
allocate them.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from backend.cli import main
from backend.errors import InputError
from make_bad_inputs import MARKER, Case, make_corpus
from napari_nascsmri._reader import get_reader

ROOT = Path(__file__).resolve().parents[1]
#: Address-space limit of the child running the enormous-shape cases (torch alone maps ~0.8 GB).
CHILD_ADDRESS_SPACE = 3 << 30


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("bad_inputs")
    return {case.name: case for case in make_corpus(root)}


def _argv(case: Case, out_dir: Path) -> list[str]:
    argv = list(case.argv)
    if case.outputs:
        argv += ["--out", str(out_dir / "out.h5"), "--json", str(out_dir / "out.json")]
    if case.command in ("train", "search"):  # a run folder: it must not be created
        argv += ["--out", str(out_dir / "run")]
    if case.command in ("reconstruct", "evaluate", "train", "search"):
        argv.append("--quiet")
    return argv


def _visible_lines(stderr: str) -> list[str]:
    """The non-empty lines a terminal shows (a progress bar is redrawn with carriage returns)."""
    return [seg for line in stderr.split("\n") if (seg := line.split("\r")[-1]).strip()]


def _problems(case: Case, rc: int, stderr: str, out_dir: Path) -> list[str]:
    """What is wrong with how ``case`` was answered (empty list: all good)."""
    problems = []
    lines = _visible_lines(stderr)
    left = sorted(p.name for p in out_dir.iterdir())
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    if case.expect is None:
        if rc != 0:
            problems.append(f"exit {rc}, expected success")
        bad = [line for line in lines if not line.startswith("notice: ")]
        if bad:
            problems.append(f"unexpected stderr {bad}")
        if case.outputs:
            if left != ["out.h5", "out.json"]:
                problems.append(f"outputs {left}, expected out.h5 and out.json")
            else:
                with h5py.File(out_dir / "out.h5") as f:
                    if not np.all(np.isfinite(f["reconstruction"][()])):
                        problems.append("non-finite reconstruction")
        return problems
    if rc != 2:
        problems.append(f"exit {rc}, expected 2")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1: {lines}")
    elif not lines[0].startswith("nascsmri: error: "):
        problems.append(f"error line {lines[0]!r} lacks the 'nascsmri: error: ' prefix")
    text = " ".join(lines)
    if case.expect not in text:
        problems.append(f"{case.expect!r} not in {text!r}")
    if case.names and case.names not in text:
        problems.append(f"the error does not name {case.names!r}: {text!r}")
    if left:
        problems.append(f"left behind in the output folder: {left}")
    return problems


def _fingerprint(path: str):
    """What must not change about a path: a regular file's bytes, else its kind and device."""
    import hashlib
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(st.st_mode):
        return ("file", hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return ("special", stat.S_IFMT(st.st_mode), st.st_rdev)


def _side_effects(case: Case, before: dict) -> list[str]:
    problems = [f"{path} was changed" for path, print_ in before.items() if _fingerprint(path) != print_]
    problems += [f"{path} was left behind" for path in case.absent if os.path.lexists(path)]
    return problems


def _run_in_process(case: Case, tmp: Path, capsys) -> list[str]:
    out_dir = tmp / case.name
    out_dir.mkdir()
    before = {path: _fingerprint(path) for path in case.untouched}
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:  # a warning is an extra stderr line
        warnings.simplefilter("always")
        try:
            rc = main(_argv(case, out_dir))
        except BaseException as err:  # noqa: BLE001 - reported as the case's problem
            return [f"raised {type(err).__name__}: {err}"]
    captured = capsys.readouterr()
    problems = _problems(case, rc, captured.err, out_dir) + _side_effects(case, before)
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)
    problems += [f"warning: {w.category.__name__}: {w.message}" for w in caught
                 if not issubclass(w.category, hidden)]
    return problems


def _check_family(corpus, tmp_path, capsys, command: str) -> int:
    cases = [c for c in corpus.values() if c.command == command and not c.big]
    failures = {c.name: p for c in cases if (p := _run_in_process(c, tmp_path, capsys))}
    assert not failures, "\n" + "\n".join(f"{name}: {'; '.join(p)}" for name, p in failures.items())
    return len(cases)


def test_corpus_is_large_and_covers_every_command(corpus):
    assert len(corpus) >= 20
    commands = {c.command for c in corpus.values()}
    assert {"reconstruct", "evaluate", "model-info", "train", "search"} <= commands
    assert sum(c.expect is not None for c in corpus.values()) >= 20
    assert any(c.big for c in corpus.values())


def test_script_writes_the_corpus(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "make_bad_inputs.py"), str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads((tmp_path / "cases.json").read_text())
    assert len(listed) >= 20 and {"name", "argv", "expect"} <= set(listed[0])
    assert (tmp_path / "truncated_tail.h5").stat().st_size > 0


def test_reconstruct_cases(corpus, tmp_path, capsys):
    assert _check_family(corpus, tmp_path, capsys, "reconstruct") >= 40


def test_model_info_genotype_cases(corpus, tmp_path, capsys):
    assert _check_family(corpus, tmp_path, capsys, "model-info") >= 5


def test_evaluate_cases(corpus, tmp_path, capsys):
    assert _check_family(corpus, tmp_path, capsys, "evaluate") >= 5


def test_corpus_covers_the_reliability_classes(corpus):
    """Issue #18: at least 250 cases, every class of the issue represented."""
    assert len(corpus) >= 250
    classes = {}
    for case in corpus.values():
        classes[case.klass] = classes.get(case.klass, 0) + 1
    for klass in ("data loss", "garbage", "masks", "memory", "internal", "left behind", "messages"):
        assert classes.get(klass, 0) >= 8, (klass, classes)


def test_data_prepare_and_export_cases(corpus, tmp_path, capsys):
    assert _check_family(corpus, tmp_path, capsys, "data") >= 8
    assert _check_family(corpus, tmp_path, capsys, "export-onnx") >= 8


def test_train_and_search_data_folder_cases(corpus, tmp_path, capsys):
    """A bad --data answers in one line before the run folder is made (nothing left behind)."""
    assert _check_family(corpus, tmp_path, capsys, "train") >= 6
    assert _check_family(corpus, tmp_path, capsys, "search") >= 2


def test_pickled_weights_never_run_code(corpus, tmp_path, capsys):
    case = corpus["weights_pickle_payload"]
    marker = Path(case.argv[case.argv.index("--weights") + 1]).parent / MARKER
    assert not marker.exists()
    assert _run_in_process(case, tmp_path, capsys) == []
    assert not marker.exists(), "loading the weights executed the pickle payload"
    # the canary is live: plain unpickling would have created the marker
    import torch

    torch.load(case.argv[case.argv.index("--weights") + 1], weights_only=False)
    assert marker.exists()
    marker.unlink()


def test_enormous_declared_shapes_are_not_allocated(corpus, tmp_path):
    """The ``big`` cases in a child limited to 3 GiB of address space: each declares far more
    (up to terabytes), so reading it would fail there with MemoryError instead of InputError."""
    big = [c for c in corpus.values() if c.big]
    assert len(big) >= 6
    jobs = [{"name": c.name, "argv": _argv(c, tmp_path / c.name)} for c in big]
    for c in big:
        (tmp_path / c.name).mkdir()
    script = textwrap.dedent("""
        import contextlib, io, json, sys
        from backend.cli import main
        results = []
        for job in json.loads(sys.stdin.read()):
            err = io.StringIO()
            try:
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    rc = main(job["argv"])
            except BaseException as exc:
                rc, err = -1, io.StringIO(f"{type(exc).__name__}: {exc}")
            results.append({"name": job["name"], "rc": rc, "stderr": err.getvalue()})
        print(json.dumps(results))
    """)

    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(jobs), capture_output=True,
                          text=True, cwd=ROOT, preexec_fn=_limit_address_space, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    failures = {}
    for result in json.loads(proc.stdout.strip().splitlines()[-1]):
        case = corpus[result["name"]]
        problems = _problems(case, result["rc"], result["stderr"], tmp_path / case.name)
        if problems:
            failures[case.name] = problems
    assert not failures, failures


# -- real processes: exit status and stderr as a user sees them --------------------------------
SUBPROCESS_CASES = [
    ("truncated_tail", True),  # HDF5 library error -> one line
    ("nan_kspace", False),  # fails at slice 1, after the progress bar started (no --quiet)
    ("weights_sidecar_enormous_channels", True),  # torch / safetensors path
    ("genotype_unknown_op", True),  # model-info
    ("evaluate_prediction_complex", True),  # evaluate (used to print numpy warnings)
]


@pytest.mark.parametrize("name,quiet", SUBPROCESS_CASES, ids=[n for n, _ in SUBPROCESS_CASES])
def test_cli_process_contract(corpus, tmp_path, name, quiet):
    case = corpus[name]
    argv = _argv(case, tmp_path)
    if not quiet and "--quiet" in argv:
        argv.remove("--quiet")
    # bytes, not text=True: universal newlines would turn the bar's carriage returns into lines
    proc = subprocess.run([sys.executable, "-m", "backend", *argv], capture_output=True,
                          cwd=tmp_path, timeout=120, preexec_fn=_limit_address_space)
    assert proc.returncode == 2
    assert _problems(case, proc.returncode, proc.stderr.decode(), tmp_path) == []
    assert proc.stdout == b""


# -- napari reader ---------------------------------------------------------------------------
def test_reader_never_raises_and_reads_or_reports(corpus, tmp_path):
    paths = {c.reader for c in corpus.values() if c.reader}
    paths |= {arg for c in corpus.values() for arg in c.argv[1:] if os.path.sep in arg}
    assert len(paths) >= 40
    failures, read, declined, reported = {}, 0, 0, 0
    for path in sorted(paths):
        for candidate in (path, [path], Path(path)):
            try:
                reader = get_reader(candidate)
            except BaseException as err:  # noqa: BLE001
                failures[path] = f"get_reader raised {type(err).__name__}: {err}"
                break
        else:
            if reader is None:
                declined += 1
                continue
            try:
                layers = reader(path)
            except InputError as err:
                reported += 1
                if os.path.basename(path) not in str(err) or "\n" in str(err):
                    failures[path] = f"InputError does not name the file in one line: {err}"
                continue
            except BaseException as err:  # noqa: BLE001
                failures[path] = f"reader raised {type(err).__name__}: {err}"
                continue
            read += 1
            data, meta, kind = layers[0]
            if kind != "image" or data.ndim != 3 or not np.all(np.isfinite(data)):
                failures[path] = f"odd layer {kind} {data.shape}"
    assert not failures, failures
    assert read >= 5 and declined >= 5 and reported >= 20
    # odd arguments are declined, not raised on
    for odd in ([], [corpus["not_hdf5"].reader] * 2, str(tmp_path), None, 3):
        assert get_reader(odd) is None


def test_reader_reads_the_odd_but_valid_inputs(corpus):
    for name in ("all_zero_kspace", "header_not_utf8", "nifti_int8", "huge_ismrmrd_header"):
        path = corpus[name].reader
        layers = get_reader(path)(path)
        assert layers[0][0].shape[0] >= 1, name
