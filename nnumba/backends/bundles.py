"""The named bundles every backend's training loop takes, instead of two dozen
positional arrays: the same on all three backends (``tests/test_backends_agree``).

- ``Blocks(blocks, alphas)``: the MLP loop's block table and LeakyReLU slopes;
- ``Program(ops, fops, segs)``: the op table, its float settings, the segments;
- ``Data(X, T, labels, order)``: the training data (targets T for mse and
  binary cross-entropy, integer labels for cross-entropy) and this epoch's order;
- ``Step(code, state, hp, t, clip_norm, clip_value, seed)``: the optimizer (its
  code, state rows and float64 hyperparameters, ``codes.HP_*``), its step count
  before the call, clipping (inf: off) and the dropout seed;
- ``MLPWorkspace(xb, tb, lb, acts, deltas)``: the MLP loop's buffers;
- ``Workspace(xb, tb, lb, acts, deltas, cache, icache, scratch, buffer_scratch,
  result)``: the interpreter's (see ``reference.interpreter``).

They are named tuples: Numba takes them as arguments of jitted functions, with
attribute access compiled away.
"""
from collections import namedtuple

Blocks = namedtuple("Blocks", "blocks alphas")
Program = namedtuple("Program", "ops fops segs")
Data = namedtuple("Data", "X T labels order")
Step = namedtuple("Step", "code state hp t clip_norm clip_value seed")
MLPWorkspace = namedtuple("MLPWorkspace", "xb tb lb acts deltas")
Workspace = namedtuple("Workspace", "xb tb lb acts deltas cache icache scratch buffer_scratch result")
