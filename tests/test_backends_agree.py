"""The three backends expose the same kernel functions with the same signatures, so
a test, a benchmark or the model can run any of them through one code path."""
import importlib
import inspect

import pytest

from nnumba.backends import LAZY_MODULES, MODULES

PACKAGES = ("reference", "cpu", "cuda")
# helpers that exist for one backend's own needs (device views, launch factories, Numba
# views), not part of the shared interface
PRIVATE_PREFIX = "_"


def _public_functions(package, module):
    mod = importlib.import_module(f"nnumba.backends.{package}.{module}")
    found = {}
    for name, value in vars(mod).items():
        if name.startswith(PRIVATE_PREFIX) or not callable(value) or inspect.isclass(value):
            continue
        if getattr(value, "__module__", "").startswith("numba") and not hasattr(value, "py_func"):
            continue  # numba's own objects imported by a module (njit, cuda, ...)
        found[name] = value
    return found


def _signature(fn):
    """The required parameters (an optional trailing one, such as the reference
    interpreter's kernel set ``k``, is a backend's own)."""
    fn = getattr(fn, "py_func", fn)
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return [p.name for p in parameters if p.default is inspect.Parameter.empty]


@pytest.mark.parametrize("module", ["network", "interpreter", "conv1d", "pool1d", "dropout",
                                    "batchnorm", "elementwise", "recurrent", "losses", "optim",
                                    "gradients", "dense", "activations"])
def test_the_training_entry_points_have_the_same_signatures(module):
    pytest.importorskip("numba.cuda")
    import cuda_setup  # noqa: F401 (the simulator where there is no GPU)

    assert module in MODULES + LAZY_MODULES
    functions = {p: _public_functions(p, module) for p in PACKAGES}
    # the functions the model and the loops call exist everywhere with the same arguments
    shared = set(functions["reference"]) & set(functions["cpu"]) & set(functions["cuda"])
    entry = {"network": ["train_batches", "forward", "loss_and_gradients", "gather_rows"],
             "interpreter": ["train_batches", "forward", "loss_and_gradients", "output_view"],
             "conv1d": ["conv1d_forward", "conv1d_backward"],
             "recurrent": ["recurrent_forward", "recurrent_backward"],
             "pool1d": ["maxpool1d_forward", "maxpool1d_backward", "avgpool1d_forward",
                        "avgpool1d_backward", "global_avgpool1d_forward",
                        "global_avgpool1d_backward"],
             "dropout": ["dropout_forward", "dropout_backward", "dropout_hash"],
             "batchnorm": ["batchnorm_forward_train", "batchnorm_forward_eval",
                           "batchnorm_backward"],
             "elementwise": ["add", "copy", "add_into"],
             "losses": ["loss_forward_backward"],
             "optim": ["optimizer_step"],
             "gradients": ["sum_of_squares", "clip_by_norm", "clip_by_value",
                           "apply_weight_decay"],
             "dense": ["dense_forward", "dense_backward", "dense_backward_input"],
             "activations": ["activation_forward", "activation_backward"]}[module]
    for name in entry:
        assert name in shared, f"{module}.{name} is missing from a backend"
    for name in sorted(shared):
        sigs = {p: _signature(functions[p][name]) for p in PACKAGES}
        known = [s for s in sigs.values() if s is not None]
        assert all(s == known[0] for s in known), f"{module}.{name}: {sigs}"
