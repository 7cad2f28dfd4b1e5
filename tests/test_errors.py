"""Bad input raises at the call, naming the argument, and leaves the model unchanged."""
import numpy as np
import pytest

import nnumba as nn


def model_4_to_10(backend="cpu"):
    model = nn.Sequential([nn.Dense(4, 8), nn.ReLU(), nn.Dense(8, 10)], backend=backend, seed=0)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    return model


def snapshot(model):
    return (model.get_weights(), model.optimizer.state_dict() if model.optimizer else None,
            model._shuffle_rng.bit_generator.state, model.epochs_trained)


def assert_unchanged(model, before):
    after = snapshot(model)
    for a, b in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)
    if before[1] is not None:
        assert before[1]["t"] == after[1]["t"]
        for k in before[1]["state"]:
            np.testing.assert_array_equal(before[1]["state"][k], after[1]["state"][k])
    assert before[2] == after[2] and before[3] == after[3]


X_OK = np.random.default_rng(0).normal(size=(64, 4))
Y_OK = np.random.default_rng(0).integers(0, 10, size=64)


def with_nan():
    X = X_OK.copy()
    X[3, 2] = np.nan
    return X


def with_inf():
    X = X_OK.copy()
    X[5, 1] = -np.inf
    return X


BAD_FIT_CALLS = [
    (dict(X=X_OK[:, 0]), ValueError, "2-D"),
    (dict(X=X_OK[:0], y=Y_OK[:0]), ValueError, "X is empty"),
    (dict(X=X_OK[:, :3]), ValueError, "X has 3 features but the first Dense layer expects 4"),
    (dict(y=Y_OK[:10]), ValueError, "X has 64 samples but y has 10"),
    (dict(X=with_nan()), ValueError, "NaN"),
    (dict(X=with_inf()), ValueError, "inf"),
    (dict(y=np.where(np.arange(64) == 7, 12, Y_OK)), ValueError, r"labels must be in \[0, 10\), found 12"),
    (dict(y=np.where(np.arange(64) == 7, -1, Y_OK)), ValueError, r"labels must be in \[0, 10\), found -1"),
    (dict(y=Y_OK + 0.5), ValueError, "integer class labels"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-3), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(epochs=1.0), TypeError, "epochs"),
    (dict(X="not an array"), TypeError, "X"),
    (dict(X=np.array([["a", "b", "c", "d"]])), TypeError, "X"),
    (dict(validation_data=(X_OK[:, :3], Y_OK)), ValueError, "X_val has 3 features"),
    (dict(validation_data=(X_OK,)), ValueError, "validation_data"),
    (dict(clip_grad_norm=0.0), ValueError, "clip_grad_norm"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(record_grad_norms="layer"), ValueError, "record_grad_norms"),
    (dict(callbacks=[42]), TypeError, "callbacks"),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_FIT_CALLS)
def test_fit_refuses(host_backend, kwargs, error, match):
    model = model_4_to_10(host_backend)
    model.fit(X_OK, Y_OK, epochs=1)  # some state worth protecting
    before = snapshot(model)
    args = dict(X=X_OK, y=Y_OK, epochs=2)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        model.fit(args.pop("X"), args.pop("y"), **args)
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", ["evaluate", "train_step", "gradients"])
@pytest.mark.parametrize("kwargs, error, match", BAD_FIT_CALLS[:9])
def test_other_calls_refuse(method, kwargs, error, match):
    model = model_4_to_10()
    before = snapshot(model)
    args = dict(X=X_OK, y=Y_OK)
    args.update({k: v for k, v in kwargs.items() if k in ("X", "y")})
    if method == "train_step":
        match = match.replace("X has", "X_batch has").replace("but y has", "but y_batch has")
        match = match.replace("X is empty", "X_batch is empty")
    with pytest.raises(error, match=match):
        getattr(model, method)(args["X"], args["y"])
    assert_unchanged(model, before)


def test_predict_refuses_bad_X():
    model = model_4_to_10()
    with pytest.raises(ValueError, match="X has 3 features but the first Dense layer expects 4"):
        model.predict(X_OK[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(with_nan())
    with pytest.raises(ValueError, match="2-D"):
        model.predict(X_OK[0])


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_step", "gradients"])
def test_calls_before_compile(method):
    model = nn.Sequential([nn.Dense(4, 10)], seed=0)
    with pytest.raises(RuntimeError, match="compile"):
        getattr(model, method)(X_OK, Y_OK)


def test_model_construction_errors():
    with pytest.raises(ValueError, match=r"Dense\(7, 3\) expects 7 inputs but the previous layer gives 8"):
        nn.Sequential([nn.Dense(4, 8), nn.ReLU(), nn.Dense(7, 3)])
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        nn.Sequential([nn.Dense(4, 8)], backend="gpu")
    with pytest.raises(ValueError, match="dtype"):
        nn.Sequential([nn.Dense(4, 8)], dtype="float16")
    with pytest.raises(ValueError, match="layers is empty"):
        nn.Sequential([])
    with pytest.raises(ValueError, match="no Dense layer"):
        nn.Sequential([nn.ReLU()])
    with pytest.raises(TypeError, match="layers"):
        nn.Sequential(nn.Dense(4, 8))
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        nn.Sequential([nn.Dense(4, 8), "relu"])
    with pytest.raises(ValueError, match="seed"):
        nn.Sequential([nn.Dense(4, 8)], seed=-1)


@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.Dense(0, 3), ValueError, "in_features must be >= 1, got 0"),
    (lambda: nn.Dense(3, -2), ValueError, "out_features must be >= 1, got -2"),
    (lambda: nn.Dense(3.0, 2), TypeError, "in_features"),
    (lambda: nn.Dense(True, 2), TypeError, "in_features"),
    (lambda: nn.Dense(3, 2, init="glorot"), ValueError, "unknown initialiser init='glorot'"),
    (lambda: nn.Dense(3, 2, init=5), TypeError, "init"),
    (lambda: nn.LeakyReLU(alpha=-0.1), ValueError, "alpha"),
])
def test_layer_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_custom_initialiser():
    with pytest.raises(ValueError, match="shape"):
        nn.Sequential([nn.Dense(4, 8, init=lambda i, o, rng: np.zeros((o, i)))])


def test_compile_errors():
    model = nn.Sequential([nn.Dense(4, 1)], seed=0)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        model.compile("hinge", "sgd")
    with pytest.raises(ValueError, match="cross_entropy needs at least 2 outputs"):
        model.compile("cross_entropy", "sgd")
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'"):
        model.compile("mse", "adagrad")
    with pytest.raises(TypeError, match="optimizer"):
        model.compile("mse", 0.1)
    shared = nn.optim.Adam()
    model.compile("mse", shared)
    other = nn.Sequential([nn.Dense(4, 1)], seed=1)
    with pytest.raises(ValueError, match="another model"):
        other.compile("mse", shared)


def test_target_errors():
    model = nn.Sequential([nn.Dense(4, 2)], seed=0)
    model.compile("binary_cross_entropy", "sgd")
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        model.fit(X_OK, np.full((64, 2), 2.0))
    with pytest.raises(ValueError, match=r"shape \(64, 2\)"):
        model.fit(X_OK, np.zeros((64, 3)))
    model.compile("mse", "sgd")
    bad = np.zeros((64, 2))
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        model.fit(X_OK, bad)


def test_set_weights_errors():
    model = model_4_to_10()
    before = snapshot(model)
    weights = model.get_weights()
    with pytest.raises(ValueError, match="4 parameters"):
        model.set_weights(weights[:2])
    with pytest.raises(ValueError, match=r"W1 have shape \(10, 8\), expected \(8, 10\)"):
        model.set_weights(weights[:2] + [weights[2].T] + weights[3:])
    weights[1][0] = np.inf
    with pytest.raises(ValueError, match="inf"):
        model.set_weights(weights)
    assert_unchanged(model, before)


def test_batch_size_above_n_is_capped_at_n():
    model = model_4_to_10()
    h = model.fit(X_OK, Y_OK, batch_size=1000, drop_last=True)
    # batch_size is capped at N (as Keras does), so one full batch remains
    assert h.iterations_per_epoch == 1 and h.batch_size == 64


def test_the_finiteness_check_reads_a_sum_and_looks_closer_when_it_overflows():
    """X's NaN/inf check is one sum; a sum that overflows (finite values near the dtype's
    limit) or meets both infinities (inf - inf is NaN) is decided element by element."""
    from nnumba import _checks

    huge = np.full(8, 3e38, np.float32)  # finite, but their sum is inf in float32
    _checks.finite(huge, "X")
    assert _checks.finite_as(huge, "X", np.float32) is huge  # no copy when nothing converts
    both = huge.copy()
    both[2], both[5] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"0 NaN, 2 inf; first at index 2"):
        _checks.finite(both, "X")
    with pytest.raises(ValueError, match=r"X contains NaN \(1 NaN, 0 inf; first at index 3\)"):
        _checks.finite(np.where(np.arange(8) == 3, np.nan, 1.0), "X")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_the_finiteness_check_finds_one_bad_value_in_any_layout(dtype, layout, bad):
    """The sum finds a single NaN or inf, wherever it is, in C- and F-ordered and strided
    arrays of each float dtype, and passes the same array without it."""
    from nnumba import _checks

    def fresh():
        base = np.random.default_rng(0).standard_normal((30, 20)).astype(dtype)
        return {"C": base, "F": np.asfortranarray(base), "strided": base[::2, ::3]}[layout]

    a = fresh()
    _checks.finite(a, "X")
    for index in [(0, 0), (a.shape[0] - 1, a.shape[1] - 1), (a.shape[0] // 2, 1)]:
        b = fresh()
        b[index] = bad
        with pytest.raises(ValueError, match=rf"first at index \({index[0]}, {index[1]}\)"):
            _checks.finite(b, "X")


def test_a_hyperparameter_changed_after_a_fit_is_checked_again_in_the_models_dtype():
    """The dtype check of the hyperparameters remembers what passed, keyed by their
    values: lr set to 1e39 (inf in float32) after a good fit is still refused."""
    model = model_4_to_10()
    model.fit(X_OK, Y_OK, epochs=1)
    before = snapshot(model)
    model.optimizer.lr = 1e39
    with pytest.raises(ValueError, match=r"lr=1e\+39 is not finite in float32"):
        model.fit(X_OK, Y_OK, epochs=1)
    assert_unchanged(model, before)
    model.optimizer.lr = 0.01
    model.fit(X_OK, Y_OK, epochs=1)
