"""nnumba against NumPy and PyTorch on this machine, in one run, as Markdown tables.

    python benchmarks/compare.py [--quick] [--repeats N] [--no-torch]

Sections (each time is the median of N runs after one untimed warm-up run;
the implementations take turns run by run, so that a change in the machine's
load hits them alike):

1. One training epoch, float32, softmax cross-entropy, batches in a fixed order
   (no shuffling), from the same initial weights (nnumba's, seed 0) for all:
   - tiny MLP 64-32-10, batch 1, SGD (lr 0.01) and Adam (lr 1e-3), over the
     1797 digits of scikit-learn;
   - CIFAR-shaped MLP 3072-512-256-10 (ReLU), Adam, on synthetic data: batch 1
     over 256 samples, batch 32 over 2048, batch 256 over 4096.
   Columns: the NumPy reference backend (nnumba "numpy"), PyTorch eager on the
   CPU (a hand-written loop: nn.Linear/ReLU, F.cross_entropy, torch.optim.SGD or
   Adam, default thread count) and nnumba "cpu"; the speed-ups of cpu over each;
   the loss over the whole data after the epoch, for each (they agree to
   float32 precision when all three trained the same way).
   nnumba's times are of ``model.fit(X, y, epochs=1, ...)``, input checks
   included; torch's of the loop alone over tensors already made.
2. One Adam step over 10M float32 parameters: textbook NumPy (with
   temporaries), torch.optim.Adam(fused=True) (foreach where fused is refused),
   nnumba's cpu ``adam_step`` kernel; all from the same w, g for the same steps;
   and the memory floor, a pass with the same traffic and no arithmetic.
3. The BLAS rate: the float32 GFLOP/s that numpy.matmul reaches on the matrix
   products of the CIFAR-shaped network at batch 256 (forward x W for the three
   layers, dW = x^T dz for the three, dx = dz W^T for the last two), run as one
   more implementation of the batch-256 row (the products of that epoch and
   nothing else, timed in turn with the epochs), and the rate each batch-256
   epoch achieves counting 7.1 MFLOP per sample, as a share of it.
4. Compile overhead of a fresh process that imports nnumba and fits one tiny
   epoch on the cpu backend: with an empty Numba cache (one run: it compiles
   everything), and with the cache that run filled.
5. The targets, and whether each is met.

``--quick`` shrinks everything (few samples, 1M parameters, one repeat, no
cold compile; the warm start then uses Numba's default cache): a smoke test,
not a measurement. PyTorch runs in a worker process of its own, so that its
thread pool and nnumba's never compete; it is left out when torch does not
import (or with ``--no-torch``).
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

if __package__:  # imported by asv as benchmarks.compare (it holds no benchmarks)
    from . import common
else:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import common

LR = {"sgd": 0.01, "adam": 1e-3}
# Seconds to wait before each timed run: threads of the implementation timed just
# before (OpenMP, BLAS) spin for a while after their work, and on 2 cores they
# would slow down whichever implementation runs next. The wait is a busy one: a
# sleeping virtual CPU comes back slowly (measured: a 1 s sleep before an epoch
# made it up to 2x slower).
SETTLE = 0.2


def settle():
    end = time.perf_counter() + SETTLE
    while time.perf_counter() < end:
        pass
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
ADAM_SIZE, ADAM_SIZE_QUICK = 10_000_000, 1_000_000
GEMM_BATCH = 256

# (label, model, optimizer, batch size, samples, samples with --quick)
WORKLOADS = [
    ("tiny 64-32-10, batch 1, SGD", "tiny", "sgd", 1, 1797, 256),
    ("tiny 64-32-10, batch 1, Adam", "tiny", "adam", 1, 1797, 256),
    ("CIFAR 3072-512-256-10, batch 1, Adam", "cifar", "adam", 1, 256, 16),
    ("CIFAR 3072-512-256-10, batch 32, Adam", "cifar", "adam", 32, 2048, 128),
    ("CIFAR 3072-512-256-10, batch 256, Adam", "cifar", "adam", 256, 4096, 512),
]

# (what, key of the measured value, at least)
TARGETS = [
    ("tiny batch 1 SGD epoch: cpu vs PyTorch", ("torch", 0), 100.0),
    ("tiny batch 1 SGD epoch: cpu vs NumPy", ("numpy", 0), 20.0),
    ("tiny batch 1 Adam epoch: cpu vs PyTorch", ("torch", 1), 100.0),
    ("tiny batch 1 Adam epoch: cpu vs NumPy", ("numpy", 1), 20.0),
    ("CIFAR batch 1 epoch: cpu vs PyTorch", ("torch", 2), 4.0),
    ("CIFAR batch 32 epoch: cpu vs PyTorch", ("torch", 3), 1.5),
    ("CIFAR batch 256 epoch: cpu vs PyTorch", ("torch", 4), 1.3),
    ("CIFAR batch 256 epoch: share of the BLAS rate", ("blas",), 0.85),
    ("Adam step 10M: cpu vs torch fused", ("adam", "torch"), 1.0),
    ("Adam step 10M: cpu vs textbook NumPy", ("adam", "numpy"), 15.0),
]


def out(line=""):
    print(line, flush=True)


def workload_data(model, n):
    """The data of a workload: digits for the tiny MLP, synthetic for the CIFAR-shaped one."""
    if model == "tiny":
        X, y = common.digits_data()
        return X[:n], y[:n]
    return common.model_data(model, n)


def checksum(X, y):
    return float(np.sum(X, dtype=np.float64)) + float(np.sum(y))


def initial_weights(model, optimizer):
    """nnumba's initial weights for the workload (seed 0; the same on every backend)."""
    return common.build_model(model, "numpy", optimizer).get_weights()


def adam_arrays(n):
    """w and g of the Adam section: fixed seed, float32."""
    gen = common.rng(7)
    return (gen.standard_normal(n, dtype=np.float32),
            (1e-2 * gen.standard_normal(n, dtype=np.float32)).astype(np.float32))


# ---- nnumba ----------------------------------------------------------------------------------

class NnumbaEpoch:
    """One workload on one nnumba backend: a fresh model from seed 0 per run."""

    def __init__(self, backend, model, optimizer, batch, X, y, warm):
        self.args = (model, backend, optimizer)
        self.batch, self.X, self.y = batch, X, y
        net = common.build_model(*self.args)
        net.fit(X[:warm], y[:warm], epochs=1, batch_size=batch, shuffle=False)

    def run(self, with_loss):
        net = common.build_model(*self.args)
        settle()
        start = time.perf_counter()
        net.fit(self.X, self.y, epochs=1, batch_size=self.batch, shuffle=False)
        seconds = time.perf_counter() - start
        return seconds, (net.evaluate(self.X, self.y)["loss"] if with_loss else None)


def textbook_adam(w, g, m, v, t, lr=LR["adam"], beta1=BETA1, beta2=BETA2, eps=EPS):
    """Adam as written in the paper, in NumPy with temporaries; returns the new (m, v)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    mhat = m / (1 - beta1 ** t)
    vhat = v / (1 - beta2 ** t)
    w -= lr * mhat / (np.sqrt(vhat) + eps)
    return m, v


_floor_kernels = {}


def memory_floor(w, g, m, v):
    """The Adam step's memory traffic with no arithmetic to speak of: reads w, g, m, v
    and writes w, m, v in one pass, on all cores from the size where adam_step uses
    them (PARALLEL_MIN_SIZE). No Adam step can be much faster than this here."""
    from nnumba.backends.cpu._config import PARALLEL_MIN_SIZE

    parallel = w.shape[0] >= PARALLEL_MIN_SIZE
    if parallel not in _floor_kernels:
        from numba import njit, prange

        def stream(w, g, m, v):
            for i in prange(w.shape[0]):
                gi = g[i]
                m[i] = m[i] + gi
                v[i] = v[i] - gi
                w[i] = w[i] + (m[i] + v[i])

        _floor_kernels[parallel] = njit(parallel=parallel, error_model="numpy")(stream)
    _floor_kernels[parallel](w, g, m, v)


# ---- the PyTorch worker ----------------------------------------------------------------------

def worker_main():
    """Serve PyTorch measurements: one JSON request per line on stdin, one reply on stdout."""
    reply = sys.stdout
    sys.stdout = sys.stderr  # nothing but replies on the pipe

    def send(obj):
        reply.write(json.dumps(obj) + "\n")
        reply.flush()

    try:
        import torch
    except Exception as exc:
        send({"error": f"import torch failed: {exc!r}"})
        return
    F = torch.nn.functional
    send({"version": torch.__version__, "threads": torch.get_num_threads()})
    state = {}

    def make_net(model, weights):
        sizes, mods = common.MODELS[model], []
        it = iter(weights)
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            lin = torch.nn.Linear(a, b)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(next(it).T)))
                lin.bias.copy_(torch.from_numpy(next(it)))
            mods.append(lin)
            if i < len(sizes) - 2:
                mods.append(torch.nn.ReLU())
        return torch.nn.Sequential(*mods)

    def make_opt(name, params):
        if name == "sgd":
            return torch.optim.SGD(params, lr=LR["sgd"])
        return torch.optim.Adam(params, lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS)

    def epoch(n_rows, with_loss):
        s = state
        net = make_net(s["model"], s["weights"])
        opt = make_opt(s["optimizer"], net.parameters())
        X, y, batch = s["X"], s["y"], s["batch"]
        settle()
        start = time.perf_counter()
        for i in range(0, n_rows, batch):
            opt.zero_grad()
            loss = F.cross_entropy(net(X[i:i + batch]), y[i:i + batch])
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        final = None
        if with_loss:
            with torch.no_grad():
                final = float(F.cross_entropy(net(X), y))
        return seconds, final

    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "epoch_setup":
            X, y = workload_data(req["model"], req["n"])
            state.clear()
            state.update(model=req["model"], optimizer=req["optimizer"], batch=req["batch"],
                         X=torch.from_numpy(X), y=torch.from_numpy(y),
                         weights=initial_weights(req["model"], req["optimizer"]))
            epoch(req["warm"], False)
            send({"checksum": checksum(X, y)})
        elif cmd == "epoch_run":
            seconds, final = epoch(state["X"].shape[0], req["with_loss"])
            send({"seconds": seconds, "loss": final})
        elif cmd == "adam_setup":
            w, g = adam_arrays(req["n"])
            state.clear()
            p = torch.nn.Parameter(torch.from_numpy(w))
            p.grad = torch.from_numpy(g)
            mode = "fused"
            try:
                opt = torch.optim.Adam([p], lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS, fused=True)
                opt.step()  # the warm-up step (t = 1)
            except (RuntimeError, ValueError, TypeError) as exc:
                mode = f"foreach (fused refused: {exc})"
                p.data.copy_(torch.from_numpy(adam_arrays(req["n"])[0]))
                opt = torch.optim.Adam([p], lr=LR["adam"], betas=(BETA1, BETA2), eps=EPS, foreach=True)
                opt.step()
            state.update(p=p, opt=opt)
            send({"mode": mode})
        elif cmd == "adam_step":
            settle()
            start = time.perf_counter()
            state["opt"].step()
            send({"seconds": time.perf_counter() - start})
        elif cmd == "adam_save":
            np.save(req["path"], state["p"].detach().numpy())
            send({})
        elif cmd == "quit":
            send({})
            return


class TorchWorker:
    """The PyTorch side, in a child process (see ``worker_main``)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--torch-worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the PyTorch worker died (see its output above)")
        return json.loads(line)

    def ask(self, cmd, **kwargs):
        self.proc.stdin.write(json.dumps(dict(cmd=cmd, **kwargs)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except (RuntimeError, BrokenPipeError, OSError):
                pass
            self.proc.wait(timeout=30)


# ---- formatting ------------------------------------------------------------------------------

def fmt_s(seconds):
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def fmt_x(ratio):
    return "n/a" if ratio is None else f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


def ratio(slow, fast):
    return None if slow is None or fast is None else slow / fast


def median(values):
    return float(np.median(values)) if values else None


# ---- sections --------------------------------------------------------------------------------

def section_training(args, torch_worker, results):
    out("## One training epoch (float32, softmax cross-entropy)")
    out()
    out(f"Median of {args.repeats} after a warm-up; tiny rows on scikit-learn's digits, "
        "CIFAR rows on synthetic data. Final loss: over the whole data after the epoch.")
    out()
    out("| workload | samples | NumPy ref | PyTorch | nnumba cpu | cpu vs NumPy | cpu vs PyTorch "
        "| final loss NumPy / PyTorch / cpu | max rel. diff |")
    out("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    results["epochs"] = []
    for label, model, optimizer, batch, n_full, n_quick in WORKLOADS:
        n = n_quick if args.quick else n_full
        X, y = workload_data(model, n)
        # a whole epoch of warm-up: the first seconds after large arrays are allocated
        # run slow on this virtual machine (measured: 350-460 ms epochs, then 175 ms)
        warm = n
        impls = {b: NnumbaEpoch(b, model, optimizer, batch, X, y, warm) for b in ("numpy", "cpu")}
        if model == "cifar" and batch == GEMM_BATCH:
            impls["blas"] = BlasEpoch(n)
        if torch_worker is not None:
            reply = torch_worker.ask("epoch_setup", model=model, optimizer=optimizer, batch=batch,
                                     n=n, warm=warm)
            if abs(reply["checksum"] - checksum(X, y)) > 1e-6 * abs(checksum(X, y)):
                raise RuntimeError("the PyTorch worker built different data")
        times = {"blas": [], "numpy": [], "torch": [], "cpu": []}
        losses = {}
        for r in range(args.repeats):
            last = r == args.repeats - 1
            for name in ("blas", "numpy", "torch", "cpu"):
                if name == "blas" and name not in impls:
                    continue
                if name == "torch":
                    if torch_worker is None:
                        continue
                    reply = torch_worker.ask("epoch_run", with_loss=last)
                    seconds, loss = reply["seconds"], reply["loss"]
                else:
                    seconds, loss = impls[name].run(last)
                times[name].append(seconds)
                if last and name != "blas":
                    losses[name] = loss
        t = {k: median(v) for k, v in times.items()}
        ref_loss = losses["numpy"]
        diff = max(abs(v - ref_loss) / abs(ref_loss) for v in losses.values())
        row = dict(label=label, samples=n, times=t, losses=losses,
                   vs_numpy=ratio(t["numpy"], t["cpu"]), vs_torch=ratio(t["torch"], t["cpu"]),
                   loss_diff=diff, model=model, batch=batch, blas=impls.get("blas"))
        results["epochs"].append(row)
        loss_text = " / ".join("n/a" if losses.get(k) is None else f"{losses[k]:.5f}"
                               for k in ("numpy", "torch", "cpu"))
        out(f"| {label} | {n} | {fmt_s(t['numpy'])} | {fmt_s(t['torch'])} | {fmt_s(t['cpu'])} "
            f"| {fmt_x(row['vs_numpy'])} | {fmt_x(row['vs_torch'])} | {loss_text} | {diff:.1e} |")
    out()


def section_adam(args, torch_worker, results):
    n = ADAM_SIZE_QUICK if args.quick else ADAM_SIZE
    out(f"## One Adam step over {n:,} float32 parameters")
    out()
    from nnumba.backends import get_backend

    cpu = get_backend("cpu").optim
    w0, g = adam_arrays(n)
    w_np, m_np, v_np = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    w_cpu, m_cpu, v_cpu = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    del w0
    mode = None
    if torch_worker is not None:
        mode = torch_worker.ask("adam_setup", n=n)["mode"]
    # the warm-up step, t = 1 (torch's was made by adam_setup)
    m_np, v_np = textbook_adam(w_np, g, m_np, v_np, 1)
    cpu.adam_step(w_cpu, g, m_cpu, v_cpu, LR["adam"], BETA1, BETA2, EPS, 1)
    floor_arrays = (w_cpu.copy(), g, np.zeros_like(g), np.zeros_like(g))
    memory_floor(*floor_arrays)  # compiles
    times = {"numpy": [], "torch": [], "cpu": [], "floor": []}
    for t in range(2, args.repeats + 2):
        settle()
        start = time.perf_counter()
        m_np, v_np = textbook_adam(w_np, g, m_np, v_np, t)
        times["numpy"].append(time.perf_counter() - start)
        if torch_worker is not None:
            times["torch"].append(torch_worker.ask("adam_step")["seconds"])
        settle()
        start = time.perf_counter()
        cpu.adam_step(w_cpu, g, m_cpu, v_cpu, LR["adam"], BETA1, BETA2, EPS, t)
        times["cpu"].append(time.perf_counter() - start)
        settle()
        start = time.perf_counter()
        memory_floor(*floor_arrays)
        times["floor"].append(time.perf_counter() - start)
    del floor_arrays
    diffs = {"cpu": float(np.max(np.abs(w_cpu - w_np)))}
    if torch_worker is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.npy")
            torch_worker.ask("adam_save", path=path)
            diffs["torch"] = float(np.max(np.abs(np.load(path) - w_np)))
    t = {k: median(v) for k, v in times.items()}
    results["adam"] = dict(n=n, times=t, mode=mode, numpy=ratio(t["numpy"], t["cpu"]),
                           torch=ratio(t["torch"], t["cpu"]), diffs=diffs)
    torch_label = "PyTorch Adam" + ("" if mode is None else f" ({mode})")
    gbytes = 7 * 4 * n / 1e9  # reads w, g, m, v and writes w, m, v
    out(f"Median of {args.repeats} steps after a warm-up step; all from the same w and g, "
        f"{args.repeats + 1} steps each. Memory traffic of one fused pass: {gbytes:.2f} GB.")
    out()
    out("| implementation | time per step | GB/s (fused pass) | cpu speed-up | max abs diff of w vs textbook |")
    out("|---|---:|---:|---:|---:|")
    rows = [("textbook NumPy (temporaries)", "numpy"), (torch_label, "torch"),
            ("nnumba cpu adam_step", "cpu"),
            ("memory floor: the same 7 streams, no arithmetic", "floor")]
    for label, key in rows:
        if t[key] is None:
            out(f"| {label} | n/a | | | |")
            continue
        diff = {"numpy": "(reference)", "floor": "(not a step)"}.get(
            key, f"{diffs.get(key, float('nan')):.1e}")
        out(f"| {label} | {fmt_s(t[key])} | {gbytes / t[key]:.1f} | {fmt_x(ratio(t[key], t['cpu']))} "
            f"| {diff} |")
    out()
    results["adam"]["floor"] = t["floor"]
    out(f"nnumba's step takes {t['cpu'] / t['floor']:.2f}x the time of the memory floor, so "
        f"no step can be more than {t['numpy'] / t['floor']:.1f}x faster than this run's "
        f"textbook NumPy, whose time depends on whether the kernel backs its {4 * n / 1e6:.0f} MB "
        "temporaries with huge pages.")
    out()


class BlasEpoch:
    """The matrix products of one epoch of the CIFAR-shaped network at batch GEMM_BATCH,
    and nothing else: for each batch, x W for the three layers, dW = x^T dz for the
    three and dx = dz W^T for the last two (the first layer's dx is not needed), each
    numpy.matmul into a preallocated output, on transposed views where nnumba uses them."""

    def __init__(self, n):
        B, sizes = GEMM_BATCH, common.MODELS["cifar"]
        gen = common.rng(9)
        self.n_batches = n // B
        self.products = []  # (name, a, b, out)
        for i, (k, m) in enumerate(zip(sizes[:-1], sizes[1:])):
            x = gen.standard_normal((B, k), dtype=np.float32)
            w = gen.standard_normal((k, m), dtype=np.float32)
            dz = gen.standard_normal((B, m), dtype=np.float32)
            self.products.append((f"layer {i + 1} x W: {B}x{k} @ {k}x{m}", x, w, np.empty((B, m), np.float32)))
            self.products.append((f"layer {i + 1} x^T dz: {k}x{B} @ {B}x{m}", x.T, dz,
                                  np.empty((k, m), np.float32)))
            if i > 0:
                self.products.append((f"layer {i + 1} dz W^T: {B}x{m} @ {m}x{k}", dz, w.T,
                                      np.empty((B, k), np.float32)))
        self.flops_per_batch = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, a, b, _ in self.products)
        assert self.flops_per_batch == common.train_flops_per_sample("cifar") * B
        self.per_product = [[] for _ in self.products]
        self.run(False)

    def run(self, with_loss):
        clock = time.perf_counter
        spent = [0.0] * len(self.products)
        settle()
        start = clock()
        for _ in range(self.n_batches):
            for j, (_, a, b, c) in enumerate(self.products):
                t0 = clock()
                np.matmul(a, b, out=c)
                spent[j] += clock() - t0
        seconds = clock() - start
        for j, s in enumerate(spent):
            self.per_product[j].append(s / self.n_batches)
        return seconds, None


def section_gemm(args, results):
    out(f"## BLAS rate on the CIFAR-shaped network's products at batch {GEMM_BATCH}")
    out()
    row = next((r for r in results.get("epochs", []) if r.get("blas") is not None), None)
    if row is None:
        out("(not measured)")
        out()
        return
    blas = row["blas"]
    per_sample_flops = common.train_flops_per_sample("cifar")
    blas_seconds = row["times"]["blas"]
    blas_rate = per_sample_flops * row["samples"] / blas_seconds
    results["blas_rate"] = blas_rate
    out(f"The products alone of the batch-{GEMM_BATCH} epoch above ({row['samples']} samples, "
        f"{per_sample_flops / 1e6:.2f} MFLOP per sample: forward, dW, and dx except the first "
        f"layer's), numpy.matmul (BLAS: {blas_name()}), timed in turn with the epochs: "
        f"{fmt_s(blas_seconds)}, {fmt_s(blas_seconds / row['samples'])} per sample, "
        f"**{blas_rate / 1e9:.1f} GFLOP/s**.")
    out()
    out("| product (per batch) | median time | GFLOP/s |")
    out("|---|---:|---:|")
    for (name, a, b, _), samples in zip(blas.products, blas.per_product):
        seconds = median(samples)
        out(f"| {name} | {fmt_s(seconds)} | {2 * a.shape[0] * a.shape[1] * b.shape[1] / seconds / 1e9:.1f} |")
    out()
    out(f"| batch-{GEMM_BATCH} epoch ({row['samples']} samples) | time | GFLOP/s achieved | share of the BLAS rate |")
    out("|---|---:|---:|---:|")
    for key, label in (("numpy", "NumPy ref"), ("torch", "PyTorch"), ("cpu", "nnumba cpu")):
        seconds = row["times"][key]
        if seconds is None:
            out(f"| {label} | n/a | | |")
            continue
        rate = per_sample_flops * row["samples"] / seconds
        if key == "cpu":
            results["blas_share"] = rate / blas_rate
        out(f"| {label} | {fmt_s(seconds)} | {rate / 1e9:.1f} | {100 * rate / blas_rate:.0f}% |")
    out()


def section_compile(args, results):
    out("## Compile overhead of a fresh process")
    out()
    out("A new interpreter imports nnumba and fits one tiny epoch (64-32-10, 1797 samples, "
        "batch 32, Adam) on the cpu backend, then the same epoch again; compile overhead = "
        "first epoch - second epoch.")
    out()
    out("| Numba cache | runs | process wall time | import nnumba | first epoch | steady epoch | compile overhead |")
    out("|---|---:|---:|---:|---:|---:|---:|")

    def row(label, runs):
        med = {k: median([r[k] for r in runs]) for k in runs[0]}
        out(f"| {label} | {len(runs)} | {fmt_s(med['wall'])} | {fmt_s(med['import'])} "
            f"| {fmt_s(med['first_epoch'])} | {fmt_s(med['steady_epoch'])} | {fmt_s(med['overhead'])} |")
        return med

    tmp = tempfile.mkdtemp(prefix="nnumba-compare-cache-")
    try:
        if args.quick:
            out("| cold (empty) | 0 | skipped with --quick | | | | |")
            common.fresh_process_start(None)  # fills Numba's default cache if it is cold
            results["warm"] = row("warm (Numba's default cache, --quick)", [common.fresh_process_start(None)])
        else:
            results["cold"] = row("cold (empty folder)", [common.fresh_process_start(tmp)])
            runs = [common.fresh_process_start(tmp) for _ in range(args.repeats)]
            results["warm"] = row("warm (filled by the cold run)", runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out()


def section_targets(results, have_torch):
    out("## Targets")
    out()
    out("| target | measured | met |")
    out("|---|---:|---|")
    epochs = results.get("epochs", [])
    for what, key, least in TARGETS:
        value = None
        if key[0] in ("torch", "numpy") and key[1] < len(epochs):
            value = epochs[key[1]]["vs_torch" if key[0] == "torch" else "vs_numpy"]
        elif key[0] == "blas":
            value = results.get("blas_share")
        elif key[0] == "adam" and "adam" in results:
            value = results["adam"][key[1]]
        if value is None:
            why = "PyTorch not available" if not have_torch else "not measured"
            out(f"| {what} >= {least:g}{'' if key[0] == 'blas' else 'x'} | n/a | n/a ({why}) |")
            continue
        if key[0] == "blas":
            out(f"| {what} >= {least:.0%} | {value:.0%} | {'yes' if value >= least else '**no**'} |")
        else:
            out(f"| {what} >= {least:g}x | {fmt_x(value)} | {'yes' if value >= least else '**no**'} |")
    warm = results.get("warm")
    if warm is not None:
        met = "yes" if warm["overhead"] < 1.0 else "**no**"
        out(f"| warm-cache start: compile overhead < 1 s | {fmt_s(warm['overhead'])} | {met} |")
    out()


def blas_name():
    try:
        return np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:
        return "unknown"


def load_text():
    try:
        return "Load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()) + "."
    except OSError:
        return ""


def header(args, torch_worker):
    import numba

    out("# nnumba: CPU comparison on this machine")
    out()
    torch_text = "not used"
    if torch_worker is not None:
        torch_text = f"{torch_worker.hello['version']} ({torch_worker.hello['threads']} threads)"
    out(f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"Python {platform.python_version()}, NumPy {np.__version__} (BLAS {blas_name()}), "
        f"Numba {numba.__version__} ({numba.config.NUMBA_NUM_THREADS} threads), "
        f"PyTorch {torch_text}. "
        f"{'--quick: smoke test sizes, not a measurement. ' if args.quick else ''}"
        f"Speed-ups are time of the other / time of nnumba cpu. {load_text()}")
    out()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 5, 1 with --quick)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        return worker_main()
    if args.repeats is None:
        args.repeats = 1 if args.quick else 5
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    started = time.perf_counter()
    torch_worker = None
    if not args.no_torch:
        torch_worker = TorchWorker()
        if "error" in torch_worker.hello:
            out(f"(PyTorch left out: {torch_worker.hello['error']})")
            torch_worker.close()
            torch_worker = None
    results = {}
    try:
        header(args, torch_worker)
        section_training(args, torch_worker, results)
        section_adam(args, torch_worker, results)
    finally:
        if torch_worker is not None:
            torch_worker.close()
    section_gemm(args, results)
    section_compile(args, results)
    section_targets(results, torch_worker is not None)
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = "none (no parallel kernel ran)"
    out(f"(Numba threading layer: {layer}; compare.py took {time.perf_counter() - started:.0f} s. "
        f"{load_text()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
