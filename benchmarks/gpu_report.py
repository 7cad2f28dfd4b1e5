"""The cuda backend on a real GPU, in one run: tests, matrix-product speed, epoch times.

    python benchmarks/gpu_report.py [--quick] [--skip-tests] [--epochs N]

1. The CUDA tests without the simulator (``NUMBA_ENABLE_CUDASIM=0 python -m pytest
   tests/test_cuda_kernels.py tests/test_cuda_model.py -q``, a subprocess): its summary.
2. The tiled matrix-product kernel (``dense.matmul``, float32, C = A @ B) against
   cuBLAS (torch.matmul with TF32 off, else cupy) at n = 1024, 2048, 4096: GFLOP/s
   (2 n^3 / time), median of several runs after a warm-up, every timing ending with
   a synchronize; each tile configuration in TILES, so the best can go into _config.
3. Epoch time, float32, softmax cross-entropy, Adam (lr 1e-3), batches in a fixed
   order (no shuffling), from the same initial weights (the nnumba model's, seed 0):
   - MNIST-1D-sized MLP 40-100-100-10 (ReLU), batch 32, 4000 synthetic samples;
   - CIFAR-10-shaped MLP 3072-512-256-10 (ReLU), batch 256, 50,000 synthetic samples;
   for nnumba backend="cuda" (both training paths for the small net), backend="cpu"
   and PyTorch eager on the GPU (nn.Linear/ReLU, F.cross_entropy, torch.optim.Adam).
   Each row gives the median epoch time (the first epoch, which compiles and
   uploads, is left out), the mean training loss of the last epoch (they agree
   when all trained the same way), and each time's ratio to nnumba cuda's.

Everything prints as soon as it is measured (flushed), so a run cut short still
shows what it got. ``--quick`` shrinks every size (and under the simulator, the
launch sizes): a smoke test of this script, not a measurement.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (BM, BN, BK, TM, TN, blocks per SM) tried in section 2; the first is _config's default
TILES = [(128, 128, 16, 8, 8, 1), (128, 128, 8, 8, 8, 1), (128, 128, 8, 8, 8, 2),
         (128, 64, 8, 8, 4, 1), (64, 64, 16, 4, 4, 1), (64, 64, 8, 4, 4, 2)]


def log(*args):
    print(*args, flush=True)


# ---- 1. tests ------------------------------------------------------------------------------------

def run_tests(timeout):
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    cmd = [sys.executable, "-m", "pytest", "tests/test_cuda_kernels.py", "tests/test_cuda_model.py",
           "-q", "-p", "no:cacheprovider"]
    log(f"$ NUMBA_ENABLE_CUDASIM=0 {' '.join(cmd[2:])}")
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
        out = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        out += f"\n(stopped after {timeout} s)"
    lines = [ln for ln in out.splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    for ln in failed[:20] + lines[-3:]:
        log("   ", ln)
    log(f"    ({time.perf_counter() - started:.0f} s)")


# ---- helpers ---------------------------------------------------------------------------------------

def cuda_sync():
    from numba import cuda

    cuda.synchronize()


def median_time(fn, sync, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_cuda():
    """torch, if it imports and sees a GPU; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


# ---- 2. matrix product -------------------------------------------------------------------------

def bench_matmul(sizes, repeats, tiles):
    from nnumba.backends.cuda import _config as cfg
    from nnumba.backends.cuda import dense, memory

    torch = torch_cuda()
    cupy = None
    if torch is None:
        try:
            import cupy
        except ImportError:
            cupy = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        reference = "cuBLAS (torch.matmul, TF32 off)"
    elif cupy is not None:
        reference = "cuBLAS (cupy.matmul)"
    else:
        reference = None
    log(f"\n## 2. matrix product C = A @ B, float32: GFLOP/s (median of {repeats}, after warm-up)")
    head = ["n"] + [f"nnumba {t[0]}x{t[1]}x{t[2]}/{t[3]}x{t[4]} b{t[5]}" for t in tiles]
    head += [reference or "cuBLAS: not available", "best / cuBLAS"]
    log(" | ".join(head))
    saved = cfg.GEMM_TILE, cfg.GEMM_TILE_SMALL, cfg.GEMM_BLOCKS_PER_SM, cfg.GEMM_MIN_BLOCKS
    rng = np.random.default_rng(0)
    try:
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            da, db, dc = memory.to_backend(a), memory.to_backend(b), memory.empty((n, n), np.float32)
            row, rates = [str(n)], []
            expected = None
            for tile in tiles:
                cfg.GEMM_TILE = cfg.GEMM_TILE_SMALL = tile[:5]
                cfg.GEMM_BLOCKS_PER_SM, cfg.GEMM_MIN_BLOCKS = tile[5], 0
                try:
                    t = median_time(lambda: dense.matmul(da, db, dc), cuda_sync, repeats)
                except Exception as exc:  # one tile configuration failing must not end the report
                    row.append(f"failed: {type(exc).__name__}: {exc}"[:80])
                    continue
                rates.append(2 * n ** 3 / t / 1e9)
                if expected is None and n <= 2048:
                    expected = a.astype(np.float64) @ b.astype(np.float64)
                err = ""
                if expected is not None:
                    worst = np.abs(memory.to_host(dc) - expected).max() / np.abs(expected).max()
                    err = f" (err {worst:.0e})"
                row.append(f"{rates[-1]:.0f}{err}")
            ref_rate = None
            if torch is not None:
                ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
                t = median_time(lambda: torch.matmul(ta, tb), torch.cuda.synchronize, repeats)
                ref_rate = 2 * n ** 3 / t / 1e9
            elif cupy is not None:
                ca, cb = cupy.asarray(a), cupy.asarray(b)
                t = median_time(lambda: ca @ cb, cupy.cuda.Device().synchronize, repeats)
                ref_rate = 2 * n ** 3 / t / 1e9
            row.append("-" if ref_rate is None else f"{ref_rate:.0f}")
            row.append("-" if ref_rate is None or not rates else f"{max(rates) / ref_rate:.0%}")
            log(" | ".join(row))
    finally:
        cfg.GEMM_TILE, cfg.GEMM_TILE_SMALL, cfg.GEMM_BLOCKS_PER_SM, cfg.GEMM_MIN_BLOCKS = saved


# ---- 3. training ---------------------------------------------------------------------------------

class _EpochTimer:
    """A fit callback recording each epoch's wall time (ending with a synchronize)."""

    def __init__(self, sync):
        self.sync, self.times = sync, []

    def on_epoch_begin(self, epoch, logs):
        self.sync()
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs):
        self.sync()
        self.times.append(time.perf_counter() - self.started)


def make_data(n, widths, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, widths[0]), dtype=np.float32)
    # labels from a random linear map, so the loss can fall
    y = np.argmax(X[:, :min(widths[0], 64)] @ rng.standard_normal((min(widths[0], 64), widths[-1])),
                  axis=1)
    return X, y


def nnumba_model(widths, backend):
    import nnumba as nn

    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Dense(a, b))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    m = nn.Sequential(layers, backend=backend, dtype="float32", seed=0)
    m.compile(loss="cross_entropy", optimizer=nn.optim.Adam(lr=1e-3))
    return m


def measure_nnumba(widths, backend, X, y, batch, epochs):
    """(median epoch time, last epoch's loss); a first, untimed epoch compiles and uploads."""
    sync = cuda_sync if backend == "cuda" else (lambda: None)
    m = nnumba_model(widths, backend)
    timer = _EpochTimer(sync)
    history = m.fit(X, y, epochs=epochs + 1, batch_size=batch, shuffle=False, callbacks=[timer])
    return statistics.median(timer.times[1:]), history["loss"][-1]


def measure_torch(widths, X, y, batch, epochs, device):
    """PyTorch eager, the same network, initial weights, batches and optimizer."""
    import torch
    import torch.nn.functional as F

    torch.backends.cuda.matmul.allow_tf32 = False
    init = nnumba_model(widths, "cpu").get_weights()
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(init[2 * i].T.copy()))
            lin.bias.copy_(torch.from_numpy(init[2 * i + 1]))
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-8)
    tx, ty = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    n = X.shape[0]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def epoch():
        total = torch.zeros((), device=device)
        for a in range(0, n, batch):
            xb, yb = tx[a:a + batch], ty[a:a + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(xb), yb)
            loss.backward()
            opt.step()
            total += loss.detach() * xb.shape[0]  # no host sync inside the epoch
        return total

    times, loss = [], None
    for _ in range(epochs + 1):
        sync()
        t0 = time.perf_counter()
        total = epoch()
        sync()
        times.append(time.perf_counter() - t0)
        loss = float(total) / n
    return statistics.median(times[1:]), loss


def bench_training(name, widths, n, batch, epochs, cpu_samples, quick, both_paths=True):
    from nnumba.backends.cuda import _config as cfg

    X, y = make_data(n, widths)
    log(f"\n## 3. epoch time: {name} MLP {'-'.join(map(str, widths))}, batch {batch}, {n} samples, "
        f"Adam, float32 (median over {epochs} epochs after a first one)")
    log("implementation | s / epoch | last-epoch loss | time / nnumba cuda")
    rows = []

    def report(label, t, loss, note=""):
        base = rows[0][1] if rows else t
        rows.append((label, t))
        log(f"{label} | {t:.4f} | {loss:.5f} | {t / base:.2f}x{note}")

    saved = cfg.FUSED_PATH
    try:
        from nnumba.backends.cuda.network import use_single_block

        plan = nnumba_model(widths, "cpu").plan
        auto = "single-block" if use_single_block(plan.blocks, plan.n_params, batch) else "per-layer"
        t, loss = measure_nnumba(widths, "cuda", X, y, batch, epochs)
        report(f"nnumba cuda ({auto} path, the default)", t, loss)
        other = "never" if auto == "single-block" else "always"
        if not both_paths:
            pass
        elif other == "always" and plan.n_params > 4 * cfg.FUSED_MAX_PARAMS:
            log("nnumba cuda (single-block path) | skipped: far above its thresholds")
        else:
            cfg.FUSED_PATH = other
            t, loss = measure_nnumba(widths, "cuda", X, y, batch, epochs)
            report(f"nnumba cuda ({'per-layer' if other == 'never' else 'single-block'} path, forced)",
                   t, loss)
        if auto == "single-block" and not quick:
            for tpb in (256, 1024):  # the block size of the single-block path, for tuning
                saved_tpb, cfg.FUSED_PATH, cfg.FUSED_TPB = cfg.FUSED_TPB, "always", tpb
                try:
                    report(f"nnumba cuda (single-block path, FUSED_TPB={tpb})",
                           *measure_nnumba(widths, "cuda", X, y, batch, epochs))
                except Exception as exc:
                    log(f"nnumba cuda (single-block path, FUSED_TPB={tpb}) | failed: {exc!r}"[:200])
                finally:
                    cfg.FUSED_TPB = saved_tpb
    finally:
        cfg.FUSED_PATH = saved

    m = min(n, cpu_samples)
    cpu_epochs = epochs if m == n else 1
    t, loss = measure_nnumba(widths, "cpu", X[:m], y[:m], batch, cpu_epochs)
    note = "" if m == n else f"  (measured on the first {m} samples, {cpu_epochs} epoch(s), scaled " \
                             f"to {n}; its loss is over those samples only)"
    report("nnumba cpu", t * n / m, loss, note)

    torch = torch_cuda()
    if torch is not None:
        t, loss = measure_torch(widths, X, y, batch, epochs, "cuda")
        report("PyTorch CUDA (eager, Adam)", t, loss)
    elif quick:
        try:
            t, loss = measure_torch(widths, X, y, batch, epochs, "cpu")
            report("PyTorch CPU (no GPU for torch: quick run only)", t, loss)
        except ImportError:
            log("PyTorch | not installed")
    else:
        log("PyTorch CUDA | not available (torch missing or built without CUDA)")


# ---- main ----------------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--skip-tests", action="store_true", help="leave out section 1")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per measurement")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from numba import cuda

    if not cuda.is_available():
        log("no CUDA GPU (and the simulator is off): nothing to report")
        return 1
    from nnumba.backends.cuda import _config as cfg

    device = "Numba CUDA simulator" if cfg.SIMULATOR else cuda.get_current_device().name
    log(f"# nnumba cuda report ({device})")
    if cfg.SIMULATOR and not args.quick:
        log("the simulator is on: use --quick (its timings mean nothing)")
        return 1
    saved = {}
    if args.quick and cfg.SIMULATOR:
        small = dict(TPB=8, MAX_BLOCKS=2, REDUCE_TPB=8, REDUCE_BLOCKS=2, COLSUM_TX=4, COLSUM_TY=2,
                     CE_TPB=4, GEMM_TILE=(8, 8, 4, 2, 2), GEMM_TILE_SMALL=(8, 8, 4, 2, 2),
                     FUSED_TPB=16)
        saved = {k: getattr(cfg, k) for k in small}
        for k, v in small.items():
            setattr(cfg, k, v)
    try:
        if not args.skip_tests:
            log("\n## 1. CUDA tests on the GPU")
            run_tests(timeout=240)
            log(f"    [{time.perf_counter() - started:.0f} s so far]")
        if args.quick:
            tiles = [(8, 8, 4, 2, 2, 1)] if cfg.SIMULATOR else TILES[:2]
            sections = [(bench_matmul, ([16], 1, tiles)),
                        (bench_training, ("MNIST-1D-sized (reduced)", (8, 6, 6, 4), 16, 8, 1, 16,
                                          True)),
                        (bench_training, ("CIFAR-10-shaped (reduced)", (12, 8, 6, 4), 24, 12, 1, 12,
                                          True, False))]
        else:
            sections = [(bench_matmul, ([1024, 2048, 4096], 5, TILES)),
                        (bench_training, ("MNIST-1D-sized", (40, 100, 100, 10), 4000, 32,
                                          args.epochs, 4000, False)),
                        (bench_training, ("CIFAR-10-shaped", (3072, 512, 256, 10), 50_000, 256,
                                          args.epochs, 12_800, False))]
        for fn, fn_args in sections:
            try:
                fn(*fn_args)
            except Exception as exc:  # report it and go on with the next section
                log(f"section failed: {exc!r}")
                if args.quick:
                    raise
            log(f"    [{time.perf_counter() - started:.0f} s so far]")
    finally:
        for k, v in saved.items():
            setattr(cfg, k, v)
    log(f"\ndone in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
