"""The command line's constants: data-set names, limits, and the --model and --lr-schedule syntax."""

from ..layers import Identity, LeakyReLU, ReLU, Sigmoid, Tanh


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh,
               "identity": Identity}
MAX_CLASSES = 100_000  # the most output units --loss cross_entropy infers from the labels
REGRESSION_LOSSES = ("mse", "mae", "huber")
DATASETS = ("digits", "breast-cancer", "diabetes", "mnist1d[:N]", "cifar10:DIR", "csv:FILE",
            "npz:FILE")
TABULAR = ("breast-cancer", "diabetes", "csv", "npz")   # standardised by default
N_CLASSES = {"digits": 10, "breast-cancer": 2, "mnist1d": 10, "cifar10": 10}
SIDECAR_SUFFIX = ".preprocess.json"
PREPROCESS_FORMAT = "nnumba.preprocess"
MAX_SPEC_FILE_BYTES = 1 << 20
PLOT_EXTRA = 'pip install "nnumba[plot]"'

MODEL_SYNTAX = """\
--model SPEC: the layers in order, as comma-separated tokens, or the path of a
.json or .toml file holding the same tokens as a list (JSON: ["dense:64",
"relu"] or {"layers": [...]}; TOML: layers = ["dense:64", "relu"]).
  dense:UNITS                          fully connected, UNITS outputs
  conv1d:CHANNELS:KERNEL[:STRIDE[:PADDING]]
                                       1-D convolution; STRIDE 1 and PADDING 0
                                       by default, PADDING an integer, valid or same
  maxpool:SIZE[:STRIDE]                max over windows of SIZE steps (STRIDE = SIZE)
  avgpool:SIZE[:STRIDE]                mean over windows of SIZE steps
  globalavgpool                        mean over all steps: one value per channel
  flatten                              (steps, channels) -> steps x channels features
  batchnorm                            batch normalisation of the features or channels
  dropout:RATE                         inverted dropout, RATE in [0, 1), in training only
  relu, tanh, sigmoid, identity, leaky_relu[:ALPHA]   activations (ALPHA 0.01)
Input sizes come from the data. A spec with a conv1d or pool before any dense
reads each sample as a sequence (steps, channels): a table row or a 1-D signal
is steps of one channel, an image its pixels row by row, channels last. A
dense after sequence layers gets a flatten before it. The output layer comes
from the task (one unit per class, or per target): it is added after the spec
unless the spec ends with a dense, which must then have exactly that width.
Examples: "dense:64,relu,dropout:0.2,dense:10",
"conv1d:16:5,relu,maxpool:2,conv1d:32:3,relu,globalavgpool"."""

SCHEDULE_SYNTAX = """\
--lr-schedule SCHEDULE: the learning rate of every iteration (weight update),
from the base rate --lr; formulas of torch.optim.lr_scheduler (nnumba.schedules):
  constant                  --lr throughout (the default)
  cosine[:ETA_MIN]          cosine from --lr down to ETA_MIN (default 0) at the end of the run
  step:EPOCHS[:GAMMA]       times GAMMA (default 0.1) every EPOCHS epochs
  multistep:E1/E2/...[:GAMMA]   times GAMMA after epoch E1, again after E2, ...
  exp:GAMMA                 times GAMMA per epoch, spread evenly over its iterations
  onecycle[:PCT]            1cycle: from --lr/25 up to --lr over the first PCT
                            (default 0.3) of the run, then down to --lr/250000
  warmup:STEPS[,SCHEDULE]   a linear warm-up over the first STEPS iterations, then
                            SCHEDULE over the remaining ones (constant if none),
                            e.g. warmup:100,cosine
The run is --epochs times the iterations per epoch. With --resume, a schedule
spans the whole run, the checkpoint's steps included, and continues from the
checkpoint's step count; without --lr-schedule (and --lr) a resumed model keeps
its own learning rate or schedule."""


def one_line(message):
    """An error or warning message on one line (argparse and our checks may wrap)."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    return text
