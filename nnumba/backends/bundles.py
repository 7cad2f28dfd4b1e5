"""The named bundles every backend's training loop takes, instead of two dozen
positional arrays: the same on all three backends (``tests/test_backends_agree``).

- ``Blocks(blocks, alphas)``: the MLP loop's block table and LeakyReLU slopes;
- ``Program(ops, fops, segs, custom, loss)``: the op table, its float settings,
  the segments, the model's custom activations and its custom loss, compiled for
  the backend (``backends.<b>.rules.compile_activations`` / ``compile_loss``;
  None for none);
- ``Data(X, T, labels, order, weights)``: the training data (targets T for the
  regression losses and binary cross-entropy, integer labels for
  cross-entropy), this epoch's order, and one weight per sample (sample_weight
  times class_weight; empty: unweighted);
- ``Step(code, state, hp, t, clip_norm, clip_value, seed, lrs, rule)``: the
  optimizer (its code, state rows and float64 hyperparameters, ``codes.HP_*``),
  its step count before the call, clipping (inf: off), the dropout seed, the
  learning rate of each iteration of the call when a schedule sets it (float64,
  n_iter; empty: hp's), and a user-defined rule compiled for the backend
  (``backends.<b>.rules``; None for the built-ins);
- ``MLPWorkspace(xb, tb, lb, acts, deltas, wb)``: the MLP loop's buffers (wb:
  the batch's weights);
- ``Workspace(xb, tb, lb, acts, deltas, cache, icache, scratch, buffer_scratch,
  result, wb)``: the interpreter's (see ``reference.interpreter``);
- ``Comm(rank, size, reduce, send, recv, scratch)``: data-parallel training over
  MPI (``nnumba.distributed``; None, the default of every ``train_batches``,
  trains alone): this process's rank among ``size``, ``reduce(send_address,
  recv_address, count, scratch_address)`` the allreduce (SUM) of ``count``
  elements of the model's dtype, returning MPI's status (a Numba cfunc: called
  by jitted code at its address, ``reduce.address``, from Python as
  ``reduce.ctypes``; send == recv reduces in place), and two host buffers of
  n_params + 2 elements (the gradient, then the batch's loss and correct count;
  the loops alternate them as send and receive buffers; one array twice when
  the reduce runs in place) and the reduce's own scratch.

They are named tuples: Numba takes them as arguments of jitted functions, with
attribute access compiled away.
"""
from collections import namedtuple

Blocks = namedtuple("Blocks", "blocks alphas")
Program = namedtuple("Program", "ops fops segs custom loss")
Data = namedtuple("Data", "X T labels order weights")
Step = namedtuple("Step", "code state hp t clip_norm clip_value seed lrs rule")
MLPWorkspace = namedtuple("MLPWorkspace", "xb tb lb acts deltas wb")
Workspace = namedtuple("Workspace",
                       "xb tb lb acts deltas cache icache scratch buffer_scratch result wb")
Comm = namedtuple("Comm", "rank size reduce send recv scratch")
