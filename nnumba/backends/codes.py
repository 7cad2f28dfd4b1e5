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
MAE = 3
HUBER = 4   # delta = 1
CUSTOM_LOSS = 5  # a user-defined element-wise loss (``nn.losses.loss``), compiled per loss

# optimizers
SGD = 0
MOMENTUM = 1
RMSPROP = 2
ADAM = 3
RULE = 4      # a user-defined element-wise rule (``nn.optim.rule``), compiled per rule

# op kinds: the rows of the op table (``nnumba.plan``) that the interpreters switch on
OP_DENSE = 1           # y = f(x W + b), f the activation in column OP_ACT
OP_ACTIVATION = 2      # y = f(x)
OP_CONV1D = 3          # y = f(conv1d(x, W) + b), through im2col patches in the float cache
OP_MAXPOOL1D = 4       # argmax steps in the int cache
OP_AVGPOOL1D = 5
OP_GLOBAL_AVGPOOL1D = 6
OP_DROPOUT = 7         # rate in the fops column FOP_RATE; the identity outside training
OP_BATCHNORM = 8       # xhat and 1 / std in the float cache; running statistics in buffers
OP_RESIDUAL_BEGIN = 9  # no data: its output is its input; backward adds the skip's gradient
OP_RESIDUAL_ADD = 10   # y = (inner output) + (the begin's input)
OP_SIMPLE_RNN = 11     # recurrent kinds (``backends.reference.recurrent``): input projections of
OP_LSTM = 12           # all steps in one product, the time loop inside the kernel, the states
OP_GRU = 13            # and gates of every step in the float cache for BPTT
RECURRENT_KINDS = (OP_SIMPLE_RNN, OP_LSTM, OP_GRU)
OP_CUSTOM_ACTIVATION = 14  # a user-defined activation (``nn.layers.activation``); OP_K: which
OP_NAMES = {OP_DENSE: "dense", OP_ACTIVATION: "activation", OP_CONV1D: "conv1d",
            OP_MAXPOOL1D: "maxpool1d", OP_AVGPOOL1D: "avgpool1d",
            OP_GLOBAL_AVGPOOL1D: "global_avgpool1d", OP_DROPOUT: "dropout",
            OP_BATCHNORM: "batchnorm", OP_RESIDUAL_BEGIN: "residual", OP_RESIDUAL_ADD: "add",
            OP_SIMPLE_RNN: "simple_rnn", OP_LSTM: "lstm", OP_GRU: "gru",
            OP_CUSTOM_ACTIVATION: "custom_activation"}

# columns of the op table (int64, one row per op). Regions are per-row column offsets:
# for a workspace of `rows` rows, a region starting at column `off` holds its n rows
# contiguously at rows * off (so a batch of n <= rows rows is one (n, size) block).
OP_KIND = 0
OP_ACT = 1          # activation code (OP_DENSE, OP_CONV1D, OP_ACTIVATION)
OP_IN = 2           # input region in acts / deltas; -1: the batch itself
OP_OUT = 3          # output region (a residual begin: its input's)
OP_IN_SIZE = 4      # per-sample input size (steps * channels)
OP_OUT_SIZE = 5     # per-sample output size
OP_STEPS_IN = 6     # sequence geometry (1 step of OP_IN_SIZE channels for flat data)
OP_CH_IN = 7
OP_STEPS_OUT = 8
OP_CH_OUT = 9
OP_K = 10           # kernel or pool size
OP_STRIDE = 11
OP_PAD = 12
OP_W_SEG = 13       # the op's weight segment (W; gamma of BatchNorm), -1 if none
OP_B_SEG = 14       # its bias segment (b; beta of BatchNorm), -1 if none
OP_CACHE = 15       # float cache region (per-row columns), -1 if none
OP_ICACHE = 16      # int cache region, -1 if none
OP_BUF = 17         # offset of its running statistics in the buffers vector, -1 if none
OP_SKIP = 18        # residual begin: the matching add's output region; add: the skip region
OP_UNITS = 19       # recurrent: hidden units U (OP_CH_OUT is the output row's channels: 2U
                    # for the two directions of a Bidirectional layer, which share the region)
OP_REVERSE = 20     # recurrent: 1 runs the steps last to first (a Bidirectional's second op)
OP_SEQUENCES = 21   # recurrent: 1 outputs h at every step, 0 only the last state
OP_OUT_OFFSET = 22  # recurrent: the channel at which its units start in the output row
OP_DX_ADD = 23      # 1 adds dL/d(input) into the input region instead of writing it
OP_N_COLS = 24

# columns of the float64 op table
FOP_ALPHA = 0       # LeakyReLU slope of the op's activation
FOP_RATE = 1        # Dropout rate
FOP_MOMENTUM = 2    # BatchNorm
FOP_EPS = 3         # BatchNorm
FOP_N_COLS = 4

# columns of the segment table (int64, one row per parameter tensor)
SEG_OFF = 0         # offset in the flat parameter buffer
SEG_LEN = 1
SEG_OP = 2          # the op it belongs to
SEG_DECAY = 3       # 1 when weight decay applies
SEG_NORM = 4        # the column of the per-layer gradient-norm statistics it reports to, -1: none
SEG_N_COLS = 5

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
STAT_NORMS = 3    # from here on: L2 norm of each parameterised layer's weight gradient

# STAT_STATUS values: what turned NaN or infinite first in an iteration that stopped
STATUS_OK = 0
STATUS_LOSS = 1      # the batch loss: no update was made
STATUS_GRADIENT = 2  # the gradient (its global norm): no update was made
STATUS_UPDATE = 3    # a parameter after the update: the update was made and must be undone
STATUS_STATE = 4     # the optimizer state after the update: likewise
STATUS_BUFFERS = 5   # BatchNorm's running statistics after the forward pass: likewise
STATUS_NAMES = {STATUS_LOSS: "loss", STATUS_GRADIENT: "gradient", STATUS_UPDATE: "update",
                STATUS_STATE: "optimizer state", STATUS_BUFFERS: "running statistics"}

# slots of the float64 hyperparameter vector handed to optimizer_step
HP_LR = 0
HP_BETA1 = 1         # beta of Momentum and RMSprop, beta1 of Adam
HP_BETA2 = 2
HP_EPS = 3
HP_EPS_INSIDE = 4    # RMSprop: 1.0 puts eps inside the square root
HP_WEIGHT_DECAY = 5  # lambda: g <- g + lambda w (coupled, torch's weight_decay) ...
HP_DECOUPLED = 6     # ... or, with 1.0, w <- (1 - lr lambda) w before the step (AdamW)
N_HP = 7
