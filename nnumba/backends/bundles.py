"""The named bundles every backend's training loop takes, instead of two dozen
positional arrays: the same on all three backends (``tests/test_backends_agree``).

- ``Blocks(blocks, alphas)``: the MLP loop's block table and LeakyReLU slopes;
- ``Program(ops, fops, segs)``: the op table, its float settings, the segments;
- ``Data(X, T, labels, order, weights)``: the training data (targets T for the
  regression losses and binary cross-entropy, integer labels for
  cross-entropy), this epoch's order, and one weight per sample (sample_weight
  times class_weight; empty: unweighted);
- ``Step(code, state, hp, t, clip_norm, clip_value, seed, lrs)``: the optimizer
  (its code, state rows and float64 hyperparameters, ``codes.HP_*``), its step
  count before the call, clipping (inf: off), the dropout seed, and the learning
  rate of each iteration of the call when a schedule sets it (float64, n_iter;
  empty: hp's);
- ``MLPWorkspace(xb, tb, lb, acts, deltas, wb)``: the MLP loop's buffers (wb:
  the batch's weights);
- ``Workspace(xb, tb, lb, acts, deltas, cache, icache, scratch, buffer_scratch,
  result, wb)``: the interpreter's (see ``reference.interpreter``).

They are named tuples: Numba takes them as arguments of jitted functions, with
attribute access compiled away.
"""
from collections import namedtuple

Blocks = namedtuple("Blocks", "blocks alphas")
Program = namedtuple("Program", "ops fops segs")
Data = namedtuple("Data", "X T labels order weights")
Step = namedtuple("Step", "code state hp t clip_norm clip_value seed lrs")
MLPWorkspace = namedtuple("MLPWorkspace", "xb tb lb acts deltas wb")
Workspace = namedtuple("Workspace",
                       "xb tb lb acts deltas cache icache scratch buffer_scratch result wb")
