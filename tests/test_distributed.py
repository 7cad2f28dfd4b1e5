"""Data-parallel training over MPI (``fit(..., distributed="mpi")``, nnumba.distributed).

The MPI checks run under ``mpiexec -n 2`` in child processes (tests/mpi_scripts),
each launch bounded by a timeout, so that a hang fails the test instead of the
suite. One launch of ``checks.py`` serves most tests; the children share the
suite's Numba cache (NUMBA_CACHE_DIR, set by conftest), so they load the
compiled loops instead of compiling them again. Skipped without mpi4py,
numba-mpi or an ``mpiexec`` (``pip install 'nnumba[mpi]'`` brings all three).
The pytest process itself never imports mpi4py.
"""
import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnumba as nn

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE / "mpi_scripts"
ROOT = HERE.parent
# a launch that has to compile the loops (a cold cache) takes about a minute on 2 busy cores
LAUNCH_TIMEOUT = 420


def _mpiexec():
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel's, in the environment
    return str(beside) if beside.exists() else shutil.which("mpiexec")


MISSING = [name for name in ("mpi4py", "numba_mpi") if importlib.util.find_spec(name) is None]
MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(bool(MISSING) or MPIEXEC is None,
                               reason=f"needs {', '.join(MISSING) or 'mpiexec'} "
                                      f"(pip install 'nnumba[mpi]')")


def _env():
    env = dict(os.environ)
    env.setdefault("NUMBA_ENABLE_CUDASIM", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    for name in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"):
        env.pop(name, None)  # (not inside another MPI job)
    return env


def _launch(args, cwd, timeout=LAUNCH_TIMEOUT, n=2):
    started = time.monotonic()
    try:
        done = subprocess.run([MPIEXEC, "-n", str(n), *args], cwd=cwd, env=_env(), text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} hung: killed after {timeout} s\n"
                    f"stdout: {exc.stdout}\nstderr: {exc.stderr}")
    return done, time.monotonic() - started


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    """Both ranks' results of one ``mpiexec -n 2 python checks.py`` launch."""
    out = tmp_path_factory.mktemp("mpi_checks")
    done, _ = _launch([sys.executable, str(SCRIPTS / "checks.py"), str(out)], cwd=out)
    assert done.returncode == 0, f"stdout: {done.stdout}\nstderr: {done.stderr}"
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["size"] for r in ranks] == [2, 2]
    for r in ranks:
        for name, result in r["results"].items():
            assert "exception" not in result, f"{name}: {result.get('traceback')}"
    return out, [r["results"] for r in ranks]


def _both(checks, name):
    results = [r[name] for r in checks[1]]
    return results


def _equal_to_single_process(result, tol):
    assert result["rel"] <= tol, result
    assert result["loss_rel"] <= tol, result
    assert result["t"] == result["t_single"], result


# ---- equality with single-process training ------------------------------------------------------

@needs_mpi
def test_float64_mlp_equals_single_process_training(checks):
    """3 epochs, shuffled, with an uneven last batch (11 rows: 5 and 6), validation data:
    the weights agree with one process's to 1e-12 (measured: 1.8e-16) and are the same
    bits on both ranks; so are the loss and validation histories."""
    r0, r1 = _both(checks, "mlp_float64")
    for r in (r0, r1):
        _equal_to_single_process(r, 1e-12)
        assert r["val_rel"] <= 1e-12 and r["val_acc"][0] == r["val_acc"][1]
        assert r["epochs"] == 3 and r["t"] == 3 * 7
    assert r0["crc"] == r1["crc"]


@needs_mpi
def test_float32_mlp(checks):
    """float32: summed in float32 inside the loop; the ranks agree bit for bit, and with one
    process to float32 rounding (measured: 7e-8)."""
    r0, r1 = _both(checks, "mlp_float32")
    for r in (r0, r1):
        _equal_to_single_process(r, 1e-5)
    assert r0["crc"] == r1["crc"]


@needs_mpi
def test_op_table_loop_conv1d_pool_residual(checks):
    r0, r1 = _both(checks, "conv_op_table")
    for r in (r0, r1):
        _equal_to_single_process(r, 1e-12)
    assert r0["crc"] == r1["crc"]


@needs_mpi
def test_batches_smaller_than_the_number_of_ranks(checks):
    """batch_size=1 on 2 ranks (one rank adds zeros in every batch) and a last batch of
    one row: still one process's training (here the numpy reference's, which trains as the
    cpu backend does up to rounding)."""
    for r in _both(checks, "batches_smaller_than_ranks"):
        for case in ("batch_1", "last_1"):
            _equal_to_single_process(r[case], 1e-12)
    r0, r1 = _both(checks, "batches_smaller_than_ranks")
    assert r0["batch_1"]["crc"] == r1["batch_1"]["crc"]


@needs_mpi
def test_numpy_backend_with_sample_and_class_weights(checks):
    """The reference backend (host allreduce), weighted: the weighted losses divide by the
    batch's rows, so the shares' weights make the batch's loss exactly."""
    r0, r1 = _both(checks, "numpy_weighted")
    for r in (r0, r1):
        _equal_to_single_process(r, 1e-12)
    assert r0["crc"] == r1["crc"]


@needs_mpi
def test_cuda_backend_host_staged(checks):
    r0, r1 = _both(checks, "cuda_simulator")
    if "skipped" in r0:
        pytest.skip(r0["skipped"])
    for r in (r0, r1):
        _equal_to_single_process(r, 1e-12)
    assert r0["crc"] == r1["crc"]


@needs_mpi
def test_evaluate_reduced_over_the_ranks(checks):
    for r in _both(checks, "evaluate_reduced"):
        assert r["loss_rel"] <= 1e-12 and r["same_metrics"], r
        assert r["keys"] == ["accuracy", "loss", "top_2_accuracy"]


# ---- checkpoints ---------------------------------------------------------------------------------

@needs_mpi
def test_resume_a_two_rank_checkpoint_with_two_ranks_and_with_one(checks):
    """Saved after 2 epochs by a 2-rank run (rank 0 alone writes): continued for a third
    with 2 ranks (there) and alone (here), both give the 3 epochs of one process."""
    out, _ = checks
    r0, r1 = _both(checks, "resume")
    assert r0["written_by_me"] and not r1["written_by_me"]
    for r in (r0, r1):
        assert r["rel"] <= 1e-12 and r["epochs"] == 3, r
    assert r0["crc"] == r1["crc"]

    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((203, 12)), rng.integers(0, 4, 203)
    alone = nn.load(out / "two_epochs.npz", backend="cpu")
    assert alone.epochs_trained == 2
    alone.fit(X, y, epochs=3, initial_epoch=2, batch_size=32, distributed=None)
    single = nn.Sequential([nn.Dense(12, 16), nn.ReLU(), nn.Dense(16, 4)], backend="cpu",
                           dtype="float64", seed=3)
    single.compile("cross_entropy", nn.optim.Adam(1e-2))
    single.fit(X, y, epochs=3, batch_size=32)
    a = np.concatenate([w.ravel() for w in alone.get_weights()])
    b = np.concatenate([w.ravel() for w in single.get_weights()])
    assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()


# ---- errors -------------------------------------------------------------------------------------

@needs_mpi
def test_bad_input_on_one_rank_fails_every_rank_alike(checks):
    """A NaN in rank 1's X, a label changed on rank 1, a BatchNorm model: every rank raises
    the same ValueError (no hang: the launch's timeout), and the model is unchanged."""
    r0, r1 = _both(checks, "bad_input_on_one_rank")
    for key in ("nan", "differs", "refused"):
        assert r0[key] is not None and r0[key] == r1[key], key
    assert r0["nan"].startswith("ValueError: on rank 1 of 2: X contains NaN")
    assert "y differs between rank 0" in r0["differs"]
    assert r0["refused"].startswith("ValueError: distributed='mpi' cannot split") \
        and "BatchNorm(num_features=8" in r0["refused"]
    assert r0["unchanged"] and r1["unchanged"]
    assert r0["after"] == r1["after"]


@needs_mpi
def test_divergence_raises_the_same_error_on_every_rank(checks):
    r0, r1 = _both(checks, "divergence_on_all_ranks")
    assert r0["message"] == r1["message"]
    assert r0["message"].startswith("NonFiniteError: training diverged at epoch 1, iteration 1")
    assert r0["unchanged"] and r1["unchanged"] and r0["t"] == r1["t"] == 7
    # an update that overflows at the 4th step: undone, the epoch's first 3 steps replayed
    # with their allreduces, as one process does
    for r in (r0, r1):
        distributed, alone = r["update"]
        assert distributed == alone, r["update"]
        assert distributed.startswith("NonFiniteError: training diverged at epoch 1, iteration 4 "
                                      "of 7: its update would make a parameter NaN or infinite")
        assert r["update_t"] == [3, 3] and r["update_rel"] <= 1e-12
    assert r0["update_crc"] == r1["update_crc"]


@needs_mpi
def test_callback_errors_and_stops(checks):
    r0, r1 = _both(checks, "callbacks_on_the_ranks")
    assert r0["raised"] == r1["raised"] == "ValueError: callback failed after epoch 2"
    assert r0["stopped_after"] == r1["stopped_after"] == 1


@needs_mpi
def test_an_error_on_one_rank_only_aborts_the_job_instead_of_hanging(tmp_path):
    """Rank 0's callback raises; rank 1 waits for it in the epoch's checks: rank 0 aborts the
    job after FAILURE_TIMEOUT_S (2 s here) with its error."""
    done, seconds = _launch([sys.executable, str(SCRIPTS / "one_rank_fails.py"), "callback"],
                            cwd=tmp_path, timeout=120)
    output = f"status {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode != 0, output
    assert "OSError: the disk of rank 0 is full" in done.stderr, output
    assert "aborting the MPI job" in done.stderr, output
    assert "not aborted" not in done.stdout, output
    assert seconds < 60, output


@needs_mpi
def test_a_rank_failing_before_fit_joins_the_agreement(tmp_path):
    done, _ = _launch([sys.executable, str(SCRIPTS / "one_rank_fails.py"), "before_fit"],
                      cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = sorted(done.stdout.splitlines())
    assert lines == ["rank 0: FileNotFoundError: on rank 1 of 2: data.npz is missing on rank 1",
                     "rank 1: FileNotFoundError: data.npz is missing on rank 1"]


# ---- the command line -------------------------------------------------------------------------

@needs_mpi
def test_nnumba_train_under_mpiexec(tmp_path):
    """``mpiexec -n 2 nnumba train``: rank 0 alone prints and writes; the model is the one
    the command trains alone."""
    argv = ["train", "--backend", "numpy", "--dtype", "float64", "--epochs", "2", "--quiet",
            "--val-split", "0.1", "--history", "h.csv"]
    done, _ = _launch([sys.executable, "-m", "nnumba.cli", *argv, "--save", "two.npz"],
                      cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("trained 2 epochs") == 1 and done.stdout.count("saved to") == 1
    assert (tmp_path / "two.npz").exists() and (tmp_path / "h.csv").exists()
    assert len((tmp_path / "h.csv").read_text().splitlines()) == 3

    from nnumba.cli import main

    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert main([*argv[:-2], "--save", "one.npz"]) == 0
    finally:
        os.chdir(cwd)
    a, b = (np.concatenate([w.ravel() for w in nn.load(tmp_path / f).get_weights()])
            for f in ("two.npz", "one.npz"))
    assert np.abs(a - b).max() <= 1e-12 * np.abs(b).max()


# ---- without MPI ---------------------------------------------------------------------------------

def test_every_backend_loop_takes_comm():
    """One signature: the loops' optional ``comm`` (None: training alone) on every backend."""
    pytest.importorskip("numba.cuda")
    import cuda_setup  # noqa: F401 (the simulator where there is no GPU)
    import importlib

    for package in ("reference", "cpu", "cuda"):
        for module in ("network", "interpreter"):
            fn = importlib.import_module(f"nnumba.backends.{package}.{module}").train_batches
            parameter = inspect.signature(fn).parameters["comm"]
            assert parameter.default is None, (package, module)


def _child(code, **env):
    done = subprocess.run([sys.executable, "-c", code], env={**_env(), **env}, text=True,
                          capture_output=True, timeout=240, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    return done.stdout


FIT_TWICE = """
import sys, zlib, numpy as np, nnumba as nn
rng = np.random.default_rng(0)
X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
def trained(**kw):
    m = nn.Sequential([nn.Dense(6, 5), nn.ReLU(), nn.Dense(5, 3)], backend="cpu", dtype="float64",
                      seed=1)
    m.compile("cross_entropy", "adam")
    m.fit(X, y, epochs=2, batch_size=8, **kw)
    return zlib.crc32(np.concatenate([w.ravel() for w in m.get_weights()]).tobytes())
plain = trained()
imported = sorted(m for m in ("mpi4py", "numba_mpi", "nnumba.distributed") if sys.modules.get(m))
print(plain == trained(distributed="mpi"), imported,
      sorted(m for m in ("numba_mpi",) if sys.modules.get(m)))
"""


def test_training_alone_never_imports_mpi_and_distributed_alone_is_the_same():
    """Without distributed nothing of MPI is imported; with it, in a world of one rank
    (no mpiexec), fit trains as without it, bit for bit, without numba-mpi."""
    out = _child(FIT_TWICE)
    assert out.split("\n")[0] == "True [] []"


def test_distributed_without_mpi4py():
    """mpi4py missing: alone, distributed="mpi" trains as without it; under a launcher of
    2 processes it refuses, naming the extra to install."""
    hide = "import sys; sys.modules['mpi4py'] = None\n"
    assert _child(hide + FIT_TWICE).split("\n")[0] == "True [] []"
    code = hide + FIT_TWICE.replace("plain == trained(distributed=\"mpi\")",
                                    "plain")
    code += """
try:
    trained(distributed="mpi")
except ImportError as exc:
    print("refused:", exc)
"""
    out = _child(code, PMI_SIZE="2", PMI_RANK="0")
    assert "refused: distributed='mpi' under an MPI launcher (2 processes) needs mpi4py" in out


def test_bad_distributed_argument():
    model = nn.Sequential([nn.Dense(3, 2)], backend="numpy")
    model.compile("mse", "sgd")
    with pytest.raises(ValueError, match="distributed must be None or 'mpi', got 'nccl'"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), distributed="nccl")
