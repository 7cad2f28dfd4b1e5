"""Integer codes for the kinds of activation, loss and optimizer.

The Python layer chooses kernels by name (tables in ``nnumba.layers``,
``nnumba.losses`` and ``nnumba.optim``). A compiled model plan has to carry
those choices into jitted code, where strings and objects cannot go, so each
name maps to one of these small integers once, when the plan is built.

The plan of a model is an int64 table with one row per *block*: a Dense layer
together with the activation that follows it (or an activation on its own).
Its columns are named below.
"""

# activations
IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4

# losses
MSE = 0
BINARY_CROSS_ENTROPY = 1
CROSS_ENTROPY = 2

# optimizers
SGD = 0
MOMENTUM = 1
RMSPROP = 2
ADAM = 3

# columns of the plan table (one row per block)
HAS_DENSE = 0  # 1 when the block starts with a Dense layer, 0 for an activation alone
N_IN = 1       # input width
N_OUT = 2      # output width
ACT = 3        # activation code
W_OFF = 4      # offset of W (n_in x n_out, row-major) in the flat parameter buffer, -1 if none
B_OFF = 5      # offset of b (n_out) in the flat parameter buffer, -1 if none
COL = 6        # sum of the output widths of the blocks before this one (workspace offset)
N_COLS = 7

# columns of the per-iteration statistics table written by train_batches
STAT_LOSS = 0     # mean loss of the batch, before the update
STAT_CORRECT = 1  # number of correct predictions in the batch (0 for mse)
STAT_STATUS = 2   # why the iteration stopped the call (a STATUS_* code; 0 when it did not)
STAT_NORMS = 3    # from here on: L2 norm of each Dense layer's weight gradient

# STAT_STATUS values: what turned NaN or infinite first in an iteration that stopped
STATUS_OK = 0
STATUS_LOSS = 1      # the batch loss: no update was made
STATUS_GRADIENT = 2  # the gradient (its global norm): no update was made
STATUS_UPDATE = 3    # a parameter after the update: the update was made and must be undone
STATUS_STATE = 4     # the optimizer state after the update: likewise
STATUS_NAMES = {STATUS_LOSS: "loss", STATUS_GRADIENT: "gradient", STATUS_UPDATE: "update",
                STATUS_STATE: "optimizer state"}

# slots of the float64 hyperparameter vector handed to optimizer_step
HP_LR = 0
HP_BETA1 = 1         # beta of Momentum and RMSprop, beta1 of Adam
HP_BETA2 = 2
HP_EPS = 3
HP_EPS_INSIDE = 4    # RMSprop: 1.0 puts eps inside the square root
N_HP = 5
