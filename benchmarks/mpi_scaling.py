"""Data-parallel training over MPI: 1 rank against 2, and the alternatives to the
in-loop allreduce, on this machine.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/mpi_scaling.py [--repeats N]

Networks (float32, softmax cross-entropy, Adam lr 1e-3, ReLU between Dense layers,
batches in a fixed order, synthetic data, nnumba's initial weights, seed 0):

- ``cifar``: 3072-512-256-10 (1,707,274 parameters, a 6.8 MB float32 gradient),
  batch 256, 16 iterations an epoch;
- ``mnist1d``: 40-100-100-10 (15,210 parameters, 61 kB), batch 100, 40 iterations
  an epoch (MNIST-1D's 4000 training signals).

Each configuration runs in its own processes (the driver starts them in turn, all
configurations once per round, N rounds): one untimed epoch, then three fits of 4
epochs timed, less a fit of no epochs timed before each (a fit's fixed cost: the
checks, and for the ranks their agreement on the arguments and the data's
checksums and the broadcast of rank 0's state, reported apart); the time per
iteration is the median over the rounds of each round's median. Configurations:

- ``1 rank, 1 thread``: ``fit`` alone, BLAS limited to one thread (the compute
  per iteration on one core, the model's C);
- ``1 rank, 2 threads``: ``fit`` alone with BLAS's default threads (both cores);
- ``2 ranks``: ``mpiexec -n 2``, ``fit(..., distributed="mpi")`` (each rank one
  BLAS thread: nnumba shares the node's cores among its ranks), the allreduce
  inside the compiled loop, in place, float32;
- ``2 ranks, out of place``: the same, the allreduce from one buffer into another
  (numba-mpi's allreduce as it is; ``nnumba.distributed.REDUCE_IN_PLACE = False``)
  instead of in place;
- ``2 ranks, float64 sum``: out of place, summing a float64 copy of the gradient
  (``nnumba.distributed.REDUCE_FLOAT32_VIA_FLOAT64``), the way numba-mpi's own
  dtypes allow;
- ``2 ranks, per-step mpi4py``: the allreduce between compiled calls instead: per
  iteration, Python calls the compiled forward-backward on the rank's share
  (``network.loss_and_gradients``), mpi4py's Allreduce (in place, float32), the
  compiled gradient norms (and checks them), then the compiled optimizer step
  (no clipping, statistics or rollback: a lower bound on that design's cost);
- ``allreduce``: the in-loop reducer alone (numba-mpi, float32) on the n_params + 2
  buffer, and mpi4py's Allreduce on float32 and float64 buffers of that size, in
  turn;
- ``in-loop against per-step``: the two designs in turn in the same two
  processes, 7 rounds (the machine's load hits both alike), the in-loop one as
  the compiled loop called once per epoch without fit's bookkeeping around it.

A worker: ``python mpi_scaling.py --worker CONFIG NET`` (under mpiexec for the
ranked ones) prints one JSON line on rank 0.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

NETS = {"cifar": ((3072, 512, 256, 10), 256, 16), "mnist1d": ((40, 100, 100, 10), 100, 40)}
CONFIGS = ("1 rank, 1 thread", "1 rank, 2 threads", "2 ranks", "2 ranks, out of place",
           "2 ranks, float64 sum", "2 ranks, per-step mpi4py", "allreduce",
           "in-loop against per-step")
EPOCHS = 4  # epochs per timed fit (3 fits per process)


def _model(net):
    import nnumba as nn

    sizes, _, _ = NETS[net]
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Dense(a, b), nn.ReLU()]
    model = nn.Sequential(layers[:-1], backend="cpu", dtype="float32", seed=0)
    model.compile("cross_entropy", nn.optim.Adam(lr=1e-3))
    return model


def _data(net):
    sizes, batch, steps = NETS[net]
    rng = np.random.default_rng(0)
    n = batch * steps
    return rng.standard_normal((n, sizes[0])).astype(np.float32), rng.integers(0, sizes[-1], n)


def _fit_times(model, X, y, batch, distributed):
    """Seconds per epoch (3 rounds after an untimed epoch: a fit of EPOCHS epochs less a
    fit of none in each), and the median seconds of a fit of none (the checks, and for
    the ranks their agreement and the broadcast of rank 0's state)."""
    def timed(epochs):
        first = model.epochs_trained
        started = time.perf_counter()
        model.fit(X, y, epochs=first + epochs, initial_epoch=first, batch_size=batch,
                  shuffle=False, distributed=distributed)
        return time.perf_counter() - started

    timed(1)
    times, fixed = [], []
    for _ in range(3):
        fixed.append(timed(0))
        times.append((timed(EPOCHS) - fixed[-1]) / EPOCHS)
    return times, statistics.median(fixed)


def _per_step_times(model, X, y, batch):
    """The allreduce between compiled calls (mpi4py), per iteration: the compiled forward and
    backward on the rank's share, the share's weight, mpi4py's Allreduce (in place), the
    compiled gradient norms and their check, the compiled optimizer step. Seconds per epoch,
    3 rounds of EPOCHS epochs."""
    from mpi4py import MPI

    from nnumba.backends.reference.network import batch_share

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    net, optim, plan = model._backend.network, model._backend.optim, model.plan
    opt = model.optimizer
    ws = model._loop.workspace(batch, model.dtype)
    params, grads = model._params, model._grads
    labels, no_targets = y.astype(np.int64), np.zeros((0, plan.n_out), np.float32)
    hp, code, state = opt.hp_vector(), opt.code, opt.state
    row, scratch = np.zeros(len(plan.layer_names)), np.zeros(1)

    def epoch():
        for j in range(X.shape[0] // batch):
            lo, n, weight = batch_share(rank, size, j * batch, batch)
            net.loss_and_gradients(plan.blocks, plan.alphas, params, grads, model.loss.code,
                                   X[lo:lo + n], no_targets, labels[lo:lo + n], ws.acts,
                                   ws.deltas, ws.result)
            np.multiply(grads, np.float32(weight), out=grads)
            comm.Allreduce(MPI.IN_PLACE, grads, op=MPI.SUM)
            if not np.isfinite(net.gradient_norms(plan.blocks, grads, row, scratch)):
                raise FloatingPointError("the gradient is not finite")
            opt.t += 1
            optim.optimizer_step(code, params, grads, state, hp, opt.t)

    return _epochs(epoch, comm)


def _in_loop_times(model, X, y, batch):
    """The compiled loop with its in-loop allreduce, called as fit calls it (one call per
    epoch), without fit's bookkeeping around it: seconds per epoch, as _per_step_times."""
    from mpi4py import MPI

    import nnumba.distributed as dist
    from nnumba.backends import codes

    n = X.shape[0]
    comm = dist.world("mpi").comm_bundle(model.plan.n_params, model.dtype)
    data = (*model._upload(X, np.zeros((0, model.plan.n_out), model.dtype), y.astype(np.int64)),
            np.zeros(0, model.dtype))
    order, steps = np.arange(n, dtype=np.int64), n // batch
    stats = np.zeros((steps, codes.STAT_NORMS + len(model.plan.layer_names)))
    ws = model._loop.workspace(batch, model.dtype)
    clip = (np.inf, np.inf)

    def epoch():
        done = model._train_batches(data, order, n, batch, 0, steps, ws, stats, clip, comm)
        if done < steps:
            raise FloatingPointError("diverged")

    return _epochs(epoch, MPI.COMM_WORLD)


def _epochs(epoch, comm):
    epoch()
    times = []
    for _ in range(3):
        comm.Barrier()
        started = time.perf_counter()
        for _ in range(EPOCHS):
            epoch()
        times.append((time.perf_counter() - started) / EPOCHS)
    return times, 0.0


def _fixed_part(model):
    """Seconds of the part of an iteration that every rank does whole, whatever its share:
    the gradient norms and the optimizer step over all the parameters (median of 15 runs of
    10 calls each)."""
    net, optim, plan, opt = model._backend.network, model._backend.optim, model.plan, \
        model.optimizer
    row, scratch, hp = np.zeros(len(plan.layer_names)), np.zeros(1), opt.hp_vector()
    times = []
    for _ in range(16):
        started = time.perf_counter()
        for _ in range(10):
            net.gradient_norms(plan.blocks, model._grads, row, scratch)
            optim.optimizer_step(opt.code, model._params, model._grads, opt.state, hp, opt.t + 1)
        times.append((time.perf_counter() - started) / 10)
    return statistics.median(times[1:])


def _allreduce_times(model):
    """Seconds per allreduce of the n_params + 2 buffer: the in-loop reducer (called from
    a compiled loop), mpi4py's Allreduce on float32 and on float64; the three take turns,
    in alternating order, 10 rounds of 100 calls each, the median round."""
    from mpi4py import MPI
    from numba import njit

    import nnumba.distributed as dist

    comm = dist.world("mpi").comm_bundle(model.plan.n_params, np.float32)

    @njit
    def many(comm, k):
        for _ in range(k):
            comm.reduce(comm.send.ctypes.data, comm.recv.ctypes.data, comm.send.shape[0],
                        comm.scratch.ctypes.data)

    world, k = MPI.COMM_WORLD, 100
    buffers = {dtype: (np.ones(comm.send.shape[0], dtype), np.zeros(comm.send.shape[0], dtype))
               for dtype in (np.float32, np.float64)}

    def mpi4py(dtype):
        a, b = buffers[dtype]
        for _ in range(k):
            world.Allreduce(a, b)

    runs = {"in-loop numba-mpi float32": lambda: many(comm, k),
            "mpi4py float32": lambda: mpi4py(np.float32),
            "mpi4py float64": lambda: mpi4py(np.float64)}
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for r in range(10):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            run = runs[name]
            world.Barrier()
            started = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - started) / k)
    return {name: statistics.median(t) for name, t in times.items()}


def worker(config, net):
    sizes, batch, steps = NETS[net]
    X, y = _data(net)
    model = _model(net)
    if config == "1 rank, 1 thread":
        from threadpoolctl import threadpool_limits

        import scipy.linalg.cython_blas  # noqa: F401 (numba's BLAS, loaded so that it is limited)

        with threadpool_limits(1, user_api="blas"):
            times = _fit_times(model, X, y, batch, None)
        _report({"ms_per_step": 1e3 * statistics.median(times[0]) / steps,
                 "ms_per_fit": 1e3 * times[1], "ms_fixed_per_step": 1e3 * _fixed_part(model)})
        return
    elif config == "1 rank, 2 threads":
        times = _fit_times(model, X, y, batch, None)
    elif config in ("2 ranks", "2 ranks, out of place", "2 ranks, float64 sum"):
        import nnumba.distributed as dist

        dist.REDUCE_FLOAT32_VIA_FLOAT64 = config.endswith("float64 sum")
        dist.REDUCE_IN_PLACE = config == "2 ranks"
        times = _fit_times(model, X, y, batch, "mpi")
    elif config == "2 ranks, per-step mpi4py":
        from threadpoolctl import threadpool_limits

        import scipy.linalg.cython_blas  # noqa: F401

        with threadpool_limits(1, user_api="blas"):
            times = _per_step_times(model, X, y, batch)
    elif config == "in-loop against per-step":
        # the two designs in turn in the same processes, 7 rounds: the machine's load
        # changes from second to second, and hits both alike here
        from threadpoolctl import threadpool_limits

        import scipy.linalg.cython_blas  # noqa: F401

        other = _model(net)
        inloop, perstep = [], []
        with threadpool_limits(1, user_api="blas"):
            for _ in range(7):
                inloop.append(statistics.median(_in_loop_times(model, X, y, batch)[0]))
                perstep.append(statistics.median(_per_step_times(other, X, y, batch)[0]))
        _report({"in-loop": 1e3 * statistics.median(inloop) / steps,
                 "per-step mpi4py": 1e3 * statistics.median(perstep) / steps})
        return
    else:
        result = _allreduce_times(model)
        _report(result)
        return
    times, overhead = times
    _report({"ms_per_step": 1e3 * statistics.median(times) / steps, "ms_per_fit": 1e3 * overhead})


def _report(result):
    import nnumba.distributed as dist

    if dist.rank() == 0:
        print(json.dumps(result), flush=True)


def _mpiexec():
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else "mpiexec"


def drive(repeats, link, latency):
    here = os.path.abspath(__file__)
    rows = {}
    for round_ in range(repeats):
        for net in NETS:
            for config in CONFIGS:
                ranked = not config.startswith("1 rank")
                cmd = ([_mpiexec(), "-n", "2"] if ranked else []) + \
                    [sys.executable, here, "--worker", config, net]
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                rows.setdefault((net, config), []).append(result)
                print(f"round {round_ + 1}: {net} {config}: {result}", file=sys.stderr, flush=True)
    print("| network, batch | configuration | ms per iteration | speed-up over 1 rank, 1 thread "
          "| a fit's fixed cost, ms |")
    print("|---|---|---:|---:|---:|")
    for net, (sizes, batch, _) in NETS.items():
        base = statistics.median(r["ms_per_step"] for r in rows[(net, CONFIGS[0])])
        for config in CONFIGS[:-2]:
            ms = statistics.median(r["ms_per_step"] for r in rows[(net, config)])
            fixed = statistics.median(r["ms_per_fit"] for r in rows[(net, config)])
            print(f"| {'-'.join(map(str, sizes))}, {batch} | {config} | {ms:.3f} | "
                  f"{base / ms:.2f}x | {fixed:.1f} |")
    print()
    print("| network | allreduce of the gradient (n_params + 2), 2 ranks | ms |")
    print("|---|---|---|")
    for net in NETS:
        found = rows[(net, "allreduce")]
        for key in found[0]:
            print(f"| {net} | {key} | {1e3 * statistics.median(r[key] for r in found):.3f} |")
    print()
    print("| network | in turn, in the same 2 ranks: ms per iteration | in-loop allreduce | "
          "per-step mpi4py |")
    print("|---|---|---:|---:|")
    for net in NETS:
        found = rows[(net, "in-loop against per-step")]
        print(f"| {net} | median of {len(found)} runs of 7 rounds | "
              f"{statistics.median(r['in-loop'] for r in found):.3f} | "
              f"{statistics.median(r['per-step mpi4py'] for r in found):.3f} |")
    print()
    compute = {net: statistics.median(r["ms_per_step"] for r in rows[(net, CONFIGS[0])]) * 1e-3
               for net in NETS}
    fixed = {net: statistics.median(r["ms_fixed_per_step"] for r in rows[(net, CONFIGS[0])])
             * 1e-3 for net in NETS}
    model_table(compute, link, latency, fixed)


def n_params(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def allreduce_seconds(p, nbytes, link, latency):
    """Ring allreduce: 2 (p - 1) / p of the bytes over the link, plus latency log2 p."""
    return 2 * (p - 1) / p * nbytes / link + latency * np.log2(p)


def model_table(compute, link, latency, fixed=None):
    """time per step T(p) = C / p + allreduce(p), C the compute of a step on one core
    (measured, taken proportional to the batch: c = C / B per sample, and a machine computes
    ceil(B / p) samples); the speed-up C / T(p) on p machines, and the smallest global
    batches at which p machines beat one and 2p machines beat p. With ``fixed`` (seconds per
    step that every machine spends whole: norms and the optimizer step), the last column
    is the speed-up of T'(p) = (C - F) / p + F + allreduce(p)."""
    print(f"Model: link {link / 1e9:g} GB/s, latency {latency * 1e6:g} us per step of the ring")
    print()
    fixed = fixed or {}
    print("| network, batch | C (1 core) | gradient | p | allreduce | step T(p) | speed-up | "
          "p machines beat 1 from batch | 2p machines beat p from batch | speed-up, the step "
          "whole on each |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for net, (sizes, batch, _) in NETS.items():
        nbytes = 4 * (n_params(sizes) + 2)
        c = compute[net]
        for p in (2, 8, 64):
            a = allreduce_seconds(p, nbytes, link, latency)
            step = c / p + a
            per_sample = c / batch

            def t(q, b):
                return per_sample * -(-b // q) + (allreduce_seconds(q, nbytes, link, latency)
                                                  if q > 1 else 0.0)

            beats_one = next(b for b in range(1, 1 << 20) if t(p, b) < t(1, b))
            doubling = next(b for b in range(1, 1 << 20) if t(2 * p, b) < t(p, b))
            f = fixed.get(net)
            whole = "" if f is None else f"{c / ((c - f) / p + f + a):.1f}x (F {1e3 * f:.2f} ms)"
            print(f"| {'-'.join(map(str, sizes))}, {batch} | {1e3 * c:.3f} ms | "
                  f"{nbytes / 1e6:.2f} MB | {p} | {1e3 * a:.3f} ms | {1e3 * step:.3f} ms | "
                  f"{c / step:.1f}x | {beats_one:.0f} | {doubling:.0f} | {whole} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--link-gbps", type=float, default=25.0, help="the model's link, GB/s")
    parser.add_argument("--latency-us", type=float, default=5.0,
                        help="the model's latency per step of the ring, microseconds")
    parser.add_argument("--model-only", nargs=2, type=float, metavar=("CIFAR_MS", "MNIST1D_MS"),
                        help="print the model for these compute times per step (1 core)")
    parser.add_argument("--fixed-ms", nargs=2, type=float, metavar=("CIFAR_MS", "MNIST1D_MS"),
                        help="with --model-only: the norms and step every machine does whole")
    parser.add_argument("--worker", nargs=2, metavar=("CONFIG", "NET"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
    elif args.model_only:
        fixed = None if args.fixed_ms is None else \
            {"cifar": args.fixed_ms[0] * 1e-3, "mnist1d": args.fixed_ms[1] * 1e-3}
        model_table({"cifar": args.model_only[0] * 1e-3, "mnist1d": args.model_only[1] * 1e-3},
                    args.link_gbps * 1e9, args.latency_us * 1e-6, fixed)
    else:
        drive(args.repeats, args.link_gbps * 1e9, args.latency_us * 1e-6)
