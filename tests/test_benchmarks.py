"""The benchmark suite runs: every asv benchmark's setup (which checks the kernels
against the numpy reference) and one call of each of its benchmarks, on the
smallest parameters, for the numpy and cpu backends; ``compare.py --quick``;
``asv check``. Nothing here asserts a time: benchmarks measure, tests check.
"""
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODULES = sorted(p.stem for p in BENCHMARKS.glob("bench_*.py"))
PREFIXES = ("time_", "peakmem_", "mem_", "track_", "timeraw_")
# Too big or too slow for a quick test; their code paths run elsewhere here:
# AdamLarge is Optimizers' code on 10M parameters, Compile and CnnCompile are
# fresh_process_start, which compare.py --quick runs (for the MLP and the CNN).
SKIP = {"AdamLarge", "Compile", "CnnCompile"}
# ... and on one backend: the LSTM epoch on the NumPy reference takes most of a minute; the
# reference's recurrent kernels are tested against torch in test_recurrent*.py
SKIP_ON = {("LstmEpoch", "numpy"): "an LSTM epoch on the reference: see SKIP_ON"}


def benchmark_classes():
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        for cls_name, cls in vars(module).items():
            if (inspect.isclass(cls) and cls.__module__ == module.__name__
                    and any(attr.startswith(PREFIXES) for attr in vars(cls))):
                yield pytest.param(cls, id=f"{name}.{cls_name}",
                                   marks=[pytest.mark.skip("big: see SKIP")] if cls_name in SKIP else [])


def smallest_params(cls, backend):
    """The backend, and for every other parameter its smallest value (first for names)."""
    values = []
    for name, options in zip(cls.param_names, cls.params):
        if name == "backend":
            values.append(backend)
        else:
            values.append(min(options) if all(isinstance(o, (int, float)) for o in options) else options[0])
    return values


def test_modules_import():
    assert MODULES, "no benchmarks/bench_*.py found"
    for name in MODULES + ["common", "compare"]:
        importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("cls", list(benchmark_classes()))
def test_setup_and_one_call(cls, backend):
    if (cls.__name__, backend) in SKIP_ON:
        pytest.skip(SKIP_ON[cls.__name__, backend])
    params = smallest_params(cls, backend)
    bench = cls()
    try:
        bench.setup(*params)
    except NotImplementedError as exc:  # asv's "skip": e.g. the JAX peer without jax
        pytest.skip(str(exc))
    for attr, fn in vars(cls).items():
        if attr.startswith(PREFIXES):
            getattr(bench, attr)(*params)
    if hasattr(bench, "teardown"):
        bench.teardown(*params)


def test_cuda_is_skipped_without_a_gpu():
    from benchmarks import common

    if common.cuda_usable() is None:
        pytest.skip("a GPU is present: cuda runs for real")
    with pytest.raises(NotImplementedError):
        common.require_backend("cuda")


def test_check_catches_a_wrong_result():
    from benchmarks import common

    expected = np.linspace(-1, 1, 100, dtype=np.float32)
    common.assert_close(expected * (1 + 1e-6), expected, "a float32 rounding")
    with pytest.raises(AssertionError, match="differs from the numpy reference"):
        common.assert_close(expected * (1 + 1e-3), expected, "a wrong kernel")
    with pytest.raises(AssertionError):
        common.assert_close(np.full(3, np.nan), np.zeros(3), "NaN")


def test_flop_count():
    from benchmarks import common

    # 2 (3072*512 + 512*256 + 256*10) for forward and for dW, the same minus the first layer for dx
    assert common.train_flops_per_sample("cifar") == 7_093_248
    assert common.n_params("cifar") == 1_707_274 and common.n_params("tiny") == 2_410


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_jax_mlp_epoch_matches_nnumba(optimizer):
    """The JAX peer of the training section trains as nnumba cpu does: same weights, the
    same batches in order (the last one smaller), the same loss after the epoch."""
    pytest.importorskip("jax")
    from benchmarks import common

    X, y = common.digits_data()
    X, y, batch = X[:70], y[:70], 16  # 4 batches of 16 and a last one of 6
    net = common.build_model("tiny", "cpu", optimizer)
    before = net.evaluate(X, y)["loss"]
    fns = common.jax_mlp(common.MODELS["tiny"], optimizer)
    Xb, yb, tail = common.jax_epoch_batches(X, y, batch)
    assert Xb.shape == (4, 16, 64) and tail[0].shape == (6, 64)
    params = fns["epoch"](net.get_weights(), Xb, yb, tail)
    net.fit(X, y, epochs=1, batch_size=batch, shuffle=False)
    after, jax_after = net.evaluate(X, y)["loss"], float(fns["loss"](params, X, y.astype(np.int32)))
    assert after < before
    assert abs(jax_after - after) <= 1e-5 * abs(after), (jax_after, after)


def test_limits_take_the_larger_floor():
    from benchmarks import compare

    row = dict(model="tiny", samples=100, times={"floor": 2e-3, "cpu": 8e-3})
    compare.add_limits(row, blas_rate=1e9)  # 100 * 10,112 FLOP at 1 GFLOP/s: 1.01 ms
    assert row["bound"] == "memory" and row["limit"] == 2e-3 and row["vs_limit"] == 4.0
    compare.add_limits(row, blas_rate=1e8)
    assert row["bound"] == "compute" and abs(row["compute_floor"] - 10.112e-3) < 1e-9
    compare.add_limits(row, blas_rate=None)  # no BLAS rate measured: the memory floor alone
    assert row["bound"] == "memory" and row["compute_floor"] is None
    assert compare.StreamEpoch(10, "adam", 3).bytes == 7 * 4 * 10 * 3


def test_compare_quick():
    # --keep-blas-env: the test suite measures in the environment as it is set
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "compare.py"), "--quick",
                           "--keep-blas-env"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for heading in ("## One training epoch", "## One Adam step", "## BLAS rate",
                    "## Compile overhead", "## Targets"):
        assert heading in text
    assert "| tiny 64-32-10, batch 1, SGD | 256 |" in text
    assert "| tiny 64-32-10, batch 32, Adam | 200 |" in text
    assert "| MNIST-1D MLP 40-100-100-10, batch 100, Adam | 400 |" in text
    assert "| JAX | nnumba cpu | limit | nnumba / limit |" in text and "| cpu vs JAX |" in text
    assert "| tiny batch 1 SGD epoch: cpu vs JAX >= 1.5x |" in text
    assert "| CIFAR batch 256 epoch: share of the BLAS rate >= 90% |" in text
    assert "| memory floor: the same 7 streams, no arithmetic |" in text
    assert "## MNIST-1D CNN epoch" in text and "| MNIST-1D CNN, batch 100, Adam | 400 |" in text
    assert "| MNIST-1D CNN, batch 100, Adam | float32 | warm" in text
    assert "## Recurrent epochs" in text
    assert "| MNIST-1D Bidirectional GRU(1, 6), batch 100, Adam | 400 | 1 |" in text
    assert "| LSTM(32, 128), 50 steps, batch 32, Adam | 128 | 1 |" in text
    assert "| MNIST-1D GRU epoch: cpu vs PyTorch >= 5x |" in text
    assert "BLAS kernels (threadpoolctl)" in text
    assert "## Two thread pools in one process" in text
    if importlib.util.find_spec("jax") is not None:
        assert "| each right after the other's |" in text and "nnumba's epoch took" in text


def test_asv_check():
    pytest.importorskip("asv")
    proc = subprocess.run([sys.executable, "-m", "asv", "check", "--python=same"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "No problems found" in proc.stdout


def test_asv_conf():
    import json
    import re

    text = (ROOT / "asv.conf.json").read_text()
    conf = json.loads(re.sub(r"^\s*//.*$", "", text, flags=re.M))
    assert conf["benchmark_dir"] == "benchmarks" and conf["environment_type"] == "virtualenv"
    assert "pip wheel --no-deps" in conf["build_command"][0]
    assert conf["branches"] == ["main"] and conf["repo"] == "."


def test_compare_runs_again_without_the_forcing_blas_variables():
    """With OPENBLAS_CORETYPE set, compare.py replaces itself by the same command without
    it, and says so; here on --help, which the re-run then prints."""
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "compare.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # (the message names every forcing variable set: OPENBLAS_L2_SIZE too where the
    # machine's environment sets it)
    assert "compare.py: OPENBLAS_CORETYPE=Haswell" in proc.stderr
    assert "forces OpenBLAS's kernels, which a user's machine does not; running again" in proc.stderr
    assert "--keep-blas-env" in proc.stdout
