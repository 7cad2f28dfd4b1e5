"""The command line as a research workflow: every data set choice, the --model spec,
the validation split, standardisation, learning-rate schedules, early stopping,
checkpoints and exact resumption, the history and the plot, and evaluate / predict
with the preprocessing recorded next to the model.

Runs are in-process (``main(argv)``) on tiny data with the numpy backend, which
compiles nothing; one test uses the cpu backend. (User errors in general are in
tests/test_cli_errors.py.)"""
import csv
import json

import numpy as np
import pytest

import nnumba as nn
import nnumba.cli as cli
from nnumba.cli import main

FAST = ["--backend", "numpy", "--quiet"]


# ---- helpers -----------------------------------------------------------------------------------

def run(capsys, argv, code=0):
    """main(argv) -> its stdout, after checking the exit status."""
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == code, err
    return out


def one_line_error(capsys, argv, code=2):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nnumba: error: ") and "Traceback" not in err, err
    return lines[0]


def printed(out, key):
    """The number printed after 'key:' (e.g. 'test loss')."""
    return float(out.split(key + ":")[1].split()[0])


def write_csv(path, X, y=None, header=None):
    columns = X if y is None else np.column_stack([X, y])
    lines = [",".join(header)] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in columns]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def classification_csv(tmp_path, n=60, n_features=5, n_classes=3, seed=0, name="c.csv",
                       offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    y = (np.argmax(X[:, :n_classes], axis=1)).astype(int)
    X = offset + scale * X
    header = [f"x{i}" for i in range(n_features)] + ["label"]
    return write_csv(tmp_path / name, X, y, header), X, y


def regression_csv(tmp_path, n=80, seed=0, name="r.csv"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = 100 + 30 * X[:, 0] - 20 * X[:, 1] + rng.normal(size=n)
    return write_csv(tmp_path / name, X, y), X, y


def write_cifar10(folder, train_counts=(3, 3, 3, 3, 3), n_test=4, seed=0):
    """Tiny CIFAR-10 binary files: records of a label byte and 3072 pixel bytes."""
    folder.mkdir()
    rng = np.random.default_rng(seed)

    def records(n):
        out = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        out[:, 0] = rng.integers(0, 10, size=n)
        return out.tobytes()

    for i, n in enumerate(train_counts, 1):
        (folder / f"data_batch_{i}.bin").write_bytes(records(n))
    (folder / "test_batch.bin").write_bytes(records(n_test))
    return str(folder)


@pytest.fixture
def fits(monkeypatch):
    """Record the arguments of every Sequential.fit call (and still train)."""
    calls = []
    real = nn.Sequential.fit

    def spy(self, X, y, *args, **kwargs):
        calls.append(dict(kwargs, X=np.array(X), y=np.array(y), model=self))
        return real(self, X, y, *args, **kwargs)

    monkeypatch.setattr(nn.Sequential, "fit", spy)
    return calls


def weights_equal(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    return len(wa) == len(wb) and all(np.array_equal(x, y) for x, y in zip(wa, wb))


# ---- each data set -----------------------------------------------------------------------------

def test_digits(capsys, fits):
    out = run(capsys, ["train", "--dataset", "digits", "--epochs", "1", *FAST])
    assert "data: digits, 1293 training, 144 validation and 360 test samples, 64 features " \
           "(standardized: no)" in out
    assert "41 iterations per epoch" in out and "41 weight updates" in out
    assert "loss cross_entropy" in out and 0 <= printed(out, "test accuracy") <= 1
    assert fits[0]["X"].shape == (1293, 64) and fits[0]["model"].plan.n_out == 10


def test_breast_cancer_is_standardized_by_default(capsys, fits):
    out = run(capsys, ["train", "--dataset", "breast-cancer", "--epochs", "1", *FAST])
    assert "409 training, 46 validation and 114 test samples, 30 features (standardized: inputs)" \
        in out
    X = fits[0]["X"]
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-6)  # fitted on exactly this part
    np.testing.assert_allclose(X.std(axis=0), 1, rtol=1e-6)
    assert fits[0]["model"].plan.n_out == 2  # two classes, cross_entropy
    out = run(capsys, ["train", "--data", "breast_cancer", "--epochs", "1", "--no-standardize",
                       *FAST])  # the old spelling still works
    assert "(standardized: no)" in out and fits[1]["X"].max() > 100


def test_diabetes_is_a_regression_with_standardized_targets(capsys, fits):
    out = run(capsys, ["train", "--dataset", "diabetes", "--epochs", "2", "--metrics", "mae,r2",
                       *FAST])
    assert "317 training, 36 validation and 89 test samples, 10 features (standardized: inputs " \
           "and targets)" in out
    assert "loss mse" in out and "test r2:" in out and "(in the targets' units)" in out
    y = fits[0]["y"]
    assert y.shape == (317, 1)
    np.testing.assert_allclose([y.mean(), y.std()], [0, 1], atol=1e-5)
    # the error in the targets' own units is the standardised one times their scale
    assert printed(out, "test mae (in the targets' units)") > 10 * printed(out, "test mae")


def test_mnist1d_with_the_real_generator(capsys, fits):
    out = run(capsys, ["train", "--dataset", "mnist1d", "--epochs", "1", *FAST])
    assert "3600 training, 400 validation and 1000 test samples, 40 features" in out
    assert fits[0]["X"].shape == (3600, 40)


def test_mnist1d_as_sequences_for_a_convolution(capsys, fits):
    out = run(capsys, ["train", "--dataset", "mnist1d:200", "--epochs", "1", "--model",
                       "conv1d:4:5:1:same,relu,maxpool:2,globalavgpool", *FAST])
    assert "Conv1D(1, 4, 5, stride=1, padding=2)" in out and "GlobalAvgPool1D" in out
    assert fits[0]["X"].shape == (144, 40, 1)  # 200 -> 40 test, 160 -> 16 validation
    assert fits[0]["model"].input_shape == (40, 1)


def test_cifar10_from_binary_files(tmp_path, capsys, fits):
    folder = write_cifar10(tmp_path / "cifar")
    out = run(capsys, ["train", "--dataset", f"cifar10:{folder}", "--epochs", "1", "--hidden", "8",
                       *FAST])
    assert "13 training, 2 validation and 4 test samples, samples of shape 32x32x3" in out
    assert fits[0]["X"].shape == (13, 3072) and fits[0]["model"].plan.n_out == 10
    # for a convolution, an image is its 1024 pixels (row by row) of 3 channels
    run(capsys, ["train", "--dataset", f"cifar10:{folder}", "--epochs", "1", "--model",
                 "conv1d:4:3:2,relu,globalavgpool", *FAST])
    X = fits[1]["X"]
    assert X.shape == (13, 1024, 3)
    images = nn.data.load_cifar10(folder)[0]
    assert {tuple(np.round(x[5], 6)) for x in X} <= {tuple(np.round(x[0, 5], 6)) for x in images}
    line = one_line_error(capsys, ["train", "--dataset", f"cifar10:{folder}", "--test-size", "0.3",
                                   *FAST])
    assert "--test-size does not apply" in line and "test_batch.bin" in line


def test_csv_npz_and_bare_paths(tmp_path, capsys, fits):
    path, X, y = classification_csv(tmp_path)
    np.savez(tmp_path / "c.npz", X=X, y=y)
    outs = [run(capsys, ["train", "--dataset", spec, "--epochs", "1", *FAST])
            for spec in (f"csv:{path}", path, f"npz:{tmp_path / 'c.npz'}", str(tmp_path / "c.npz"))]
    for out in outs:
        assert "43 training, 5 validation and 12 test samples, 5 features (standardized: inputs)" \
            in out
    # the same samples, the same split, the same run: csv and npz alike
    assert len({printed(out, "test loss") for out in outs}) == 1
    assert np.array_equal(fits[0]["X"], fits[1]["X"])
    np.testing.assert_allclose(fits[0]["X"], fits[2]["X"], rtol=1e-6)


# ---- --model -----------------------------------------------------------------------------------

def layers_of(spec, input_shape=(64,), n_out=10):
    return cli.build_layers(cli.parse_model_spec(spec), input_shape, n_out)


def test_model_spec_with_its_own_output_layer():
    layers = layers_of("dense:64,relu,dropout:0.2,dense:10")
    assert [type(layer) for layer in layers] == [nn.Dense, nn.ReLU, nn.Dropout, nn.Dense]
    assert (layers[0].in_features, layers[0].out_features) == (64, 64)
    assert layers[2].rate == 0.2 and (layers[3].in_features, layers[3].out_features) == (64, 10)


def test_model_spec_gets_the_output_layer_from_the_task():
    layers = layers_of("dense:32,tanh,dense:16,leaky_relu:0.2,batchnorm", (5,), 3)
    assert [type(layer) for layer in layers] == [nn.Dense, nn.Tanh, nn.Dense, nn.LeakyReLU,
                                                 nn.BatchNorm, nn.Dense]
    assert layers[3].alpha == 0.2 and layers[4].num_features == 16
    assert (layers[-1].in_features, layers[-1].out_features) == (16, 3)
    assert [type(layer) for layer in layers_of("sigmoid", (5,), 1)] == [nn.Sigmoid, nn.Dense]
    assert [type(layer) for layer in cli.build_layers([], (5,), 2)] == [nn.Dense]


def test_model_spec_of_sequence_layers():
    layers = layers_of("conv1d:8:5:1:same,relu,maxpool:2,batchnorm,conv1d:4:3:2:1,avgpool:2:1,"
                       "globalavgpool", (40, 1), 10)
    conv, _, pool, bn, conv2, avg, gap, out = layers
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (1, 8, 5, 2)
    assert (pool.pool_size, pool.stride) == (2, 2) and bn.num_features == 8
    # (40, 8) -> maxpool (20, 8) -> conv k3 s2 p1: (20 + 2 - 3) // 2 + 1 = 10 steps of 4
    assert (conv2.in_channels, conv2.stride, conv2.padding) == (8, 2, 1)
    assert (avg.pool_size, avg.stride) == (2, 1) and isinstance(gap, nn.GlobalAvgPool1D)
    assert (out.in_features, out.out_features) == (4, 10)
    model = nn.Sequential(layers, backend="numpy", input_shape=(40, 1))
    assert model.plan.n_out == 10


def test_a_dense_after_sequence_layers_gets_a_flatten():
    layers = layers_of("conv1d:4:3,relu,dense:16,relu", (40, 1), 10)
    assert [type(layer) for layer in layers] == [nn.Conv1D, nn.ReLU, nn.Flatten, nn.Dense, nn.ReLU,
                                                 nn.Dense]
    assert layers[3].in_features == 38 * 4
    layers = layers_of("conv1d:4:3,maxpool:2", (40, 1), 10)  # and so does the output layer
    assert [type(layer) for layer in layers[-2:]] == [nn.Flatten, nn.Dense]
    assert layers[-1].in_features == 19 * 4


def test_which_specs_read_samples_as_sequences():
    layout = lambda spec: cli.input_layout(cli.parse_model_spec(spec))  # noqa: E731
    assert layout("dense:8,relu") == "flat" and layout("relu,dense:8") == "flat"
    assert layout("batchnorm,conv1d:4:3") == "sequence" and layout("maxpool:2") == "sequence"
    assert layout("dropout:0.1") == "flat"


@pytest.mark.parametrize("spec, expected", [
    ("dense:64,relu,dens:10", ["token 3 'dens:10'", "unknown layer 'dens'", "did you mean 'dense'"]),
    ("dense:16,,relu", ["token 2 is empty"]),
    ("dense:abc", ["token 1 'dense:abc': UNITS must be an integer >= 1, got 'abc'"]),
    ("dense:0,relu", ["token 1 'dense:0': UNITS must be an integer >= 1, got '0'"]),
    ("maxpool", ["token 1 'maxpool': maxpool takes 1 to 2 arguments (maxpool:SIZE[:STRIDE]), got 0"]),
    ("relu:3", ["token 1 'relu:3': relu takes 0 arguments"]),
    ("dense:8,dropout:1.5", ["token 2 'dropout:1.5': RATE must be a number in [0, 1)"]),
    ("dense:16,relu,dense:7", ["token 3 'dense:7': a final dense is the output layer and needs 3 "
                               "units (3 classes), got 7"]),
    ("dense:16,conv1d:4:3", ["token 2 'conv1d:4:3': conv1d works on sequences", "16 features"]),
    ("conv1d:4:9", ["token 1 'conv1d:4:9'", "kernel_size 9 is larger than the padded input"]),
    ("conv1d:4:2:1:same", ["token 1 'conv1d:4:2:1:same'", "padding='same' needs an odd kernel_size"]),
    ("maxpool:2:x", ["token 1 'maxpool:2:x': STRIDE must be an integer >= 1, got 'x'"]),
    (" ", ["--model: the spec is empty"]),
])
def test_bad_model_specs_are_one_line_naming_the_token(tmp_path, capsys, spec, expected):
    path, _, _ = classification_csv(tmp_path)
    line = one_line_error(capsys, ["train", "--dataset", path, "--model", spec, "--epochs", "1",
                                   *FAST])
    assert line.startswith("nnumba: error: --model")
    for fragment in expected:
        assert fragment in line


def test_model_spec_files_json_and_toml(tmp_path, capsys, fits):
    path, _, _ = classification_csv(tmp_path)
    (tmp_path / "m.json").write_text(json.dumps(["dense:16", "relu", "dropout:0.1"]))
    (tmp_path / "m2.json").write_text(json.dumps({"layers": ["dense:12,tanh"]}))
    (tmp_path / "m.toml").write_text('layers = ["dense:16", "relu", "dropout:0.1"]\n')
    for spec_file in ("m.json", "m2.json", "m.toml"):
        run(capsys, ["train", "--dataset", path, "--model", str(tmp_path / spec_file), "--epochs",
                     "1", *FAST])
    first, second, third = (call["model"] for call in fits)
    assert [type(layer) for layer in first.layers] == [nn.Dense, nn.ReLU, nn.Dropout, nn.Dense]
    assert first.layers[0].out_features == 16 and first.layers[-1].out_features == 3
    assert [type(layer) for layer in second.layers] == [nn.Dense, nn.Tanh, nn.Dense]
    assert repr(first.layers) == repr(third.layers)
    (tmp_path / "bad.json").write_text('["dense:16", "relu",')
    line = one_line_error(capsys, ["train", "--dataset", path, "--model", str(tmp_path / "bad.json"),
                                   *FAST])
    assert "bad.json" in line and "not a readable JSON file" in line
    (tmp_path / "typo.toml").write_text('layers = ["dense:16", "rleu"]\n')
    line = one_line_error(capsys, ["train", "--dataset", path, "--model",
                                   str(tmp_path / "typo.toml"), *FAST])
    assert "token 2 'rleu'" in line and "typo.toml" in line
    line = one_line_error(capsys, ["train", "--dataset", path, "--model",
                                   str(tmp_path / "none.json"), *FAST])
    assert "none.json: no such file" in line


def test_hidden_and_activation_still_build_the_mlp(tmp_path, capsys, fits):
    path, _, _ = classification_csv(tmp_path)
    run(capsys, ["train", "--dataset", path, "--hidden", "8", "4", "--activation", "tanh",
                 "--epochs", "1", *FAST])
    model = fits[0]["model"]
    assert [type(layer) for layer in model.layers] == [nn.Dense, nn.Tanh, nn.Dense, nn.Tanh,
                                                       nn.Dense]
    assert [layer.out_features for layer in model.layers[::2]] == [8, 4, 3]
    line = one_line_error(capsys, ["train", "--dataset", path, "--model", "dense:8,relu", "--hidden",
                                   "4", *FAST])
    assert "--hidden applies without --model only" in line


# ---- the validation split and the held-out test set --------------------------------------------

def test_validation_is_held_out_from_the_training_part_and_test_from_both(tmp_path, capsys, fits):
    rng = np.random.default_rng(3)
    n = 50
    X = np.column_stack([np.arange(n), rng.normal(size=n)])   # column 0 names the row
    y = np.arange(n) % 2
    path = write_csv(tmp_path / "ids.csv", X, y)
    out = run(capsys, ["train", "--dataset", path, "--val-split", "0.25", "--no-standardize",
                       "--epochs", "1", *FAST])
    assert "30 training, 10 validation and 10 test samples" in out
    call = fits[0]
    train_ids = set(call["X"][:, 0].astype(int))
    val_ids = set(call["validation_data"][0][:, 0].astype(int))
    assert len(train_ids) == 30 and len(val_ids) == 10 and not train_ids & val_ids
    test_ids = set(range(n)) - train_ids - val_ids
    # the test part is the one of the 80/20 split of all the samples, which the others avoid
    X32, y32 = nn.data.load_csv(path)
    expected = nn.data.train_val_test_split(X32, y32, val_size=0, test_size=0.2, seed=0)[4]
    assert test_ids == set(expected[:, 0].astype(int))
    out = run(capsys, ["train", "--dataset", path, "--val-split", "0", "--no-standardize",
                       "--epochs", "1", *FAST])
    assert "40 training and 10 test samples" in out and "validation loss" not in out
    assert fits[1]["validation_data"] is None and set(fits[1]["X"][:, 0].astype(int)) == \
        train_ids | val_ids


# ---- standardisation ---------------------------------------------------------------------------

def test_standardization_is_on_for_csv_and_off_with_no_standardize(tmp_path, capsys, fits):
    path, X, y = classification_csv(tmp_path, n=80, offset=1000.0, scale=50.0)
    on = run(capsys, ["train", "--dataset", path, "--epochs", "3", *FAST])
    off = run(capsys, ["train", "--dataset", path, "--epochs", "3", "--no-standardize", *FAST])
    assert "(standardized: inputs)" in on and "(standardized: no)" in off
    X_on, X_off = fits[0]["X"], fits[1]["X"]
    np.testing.assert_allclose(X_on.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(X_on.std(axis=0), 1, rtol=1e-4)
    assert X_off.min() > 500  # the raw values
    # the training part's own statistics, not those of all the data
    stats = nn.data.Standardizer().fit(X_off)
    np.testing.assert_allclose((X_off - stats.mean_) / stats.scale_, X_on, atol=1e-4)
    # and the validation part gets the same transformation (the same split in both runs)
    val_on, val_off = fits[0]["validation_data"][0], fits[1]["validation_data"][0]
    np.testing.assert_allclose((val_off - stats.mean_) / stats.scale_, val_on, atol=1e-4)
    assert printed(on, "test loss") != printed(off, "test loss")


# ---- learning-rate schedules -------------------------------------------------------------------

def test_schedule_syntax():
    s = cli.parse_schedule("cosine", 0.01, 100, 10)
    assert isinstance(s, nn.schedules.CosineAnnealingLR) and (s.lr, s.T_max, s.eta_min) == (0.01, 100, 0)
    s = cli.parse_schedule("step:10:0.5", 0.01, 1000, 10)  # every 10 epochs of 10 iterations
    assert isinstance(s, nn.schedules.StepLR) and (s.step_size, s.gamma) == (100, 0.5)
    assert s(100) == 0.01 and s(101) == 0.005
    s = cli.parse_schedule("onecycle", 0.1, 200, 10)
    assert isinstance(s, nn.schedules.OneCycleLR) and (s.max_lr, s.total_steps) == (0.1, 200)
    s = cli.parse_schedule("warmup:20,cosine:0.001", 0.01, 100, 10)
    assert isinstance(s, nn.schedules.LinearWarmup) and s.warmup_steps == 20
    assert isinstance(s.schedule, nn.schedules.CosineAnnealingLR)
    assert (s.schedule.T_max, s.schedule.eta_min) == (80, 0.001) and s(20) == pytest.approx(0.01)
    assert cli.parse_schedule("warmup:5", 0.01, 100, 10).schedule is None
    s = cli.parse_schedule("exp:0.5", 0.01, 100, 4)  # halved every epoch of 4 iterations
    assert s(5) == pytest.approx(0.005) and s(9) == pytest.approx(0.0025)
    s = cli.parse_schedule("multistep:2/5:0.1", 0.01, 100, 10)
    assert s.milestones == [20, 50]
    assert cli.parse_schedule("constant", 0.01, 100, 10) is None


@pytest.mark.parametrize("spec, fragment", [
    ("cosnie", "unknown schedule 'cosnie' (did you mean 'cosine'?)"),
    ("step:x:0.5", "EPOCHS must be an integer >= 1, got 'x'"),
    ("step", "step is step:EPOCHS[:GAMMA]"),
    ("warmup:10,onecycle", "onecycle has its own warm-up"),
    ("warmup:5,cosine,step:2", "one schedule, optionally after a warm-up"),
    ("cosine,", "an empty part"),
    ("onecycle:1.5", "PCT must be a number in [0, 1], got '1.5'"),
])
def test_bad_schedules_are_refused_before_the_data_are_loaded(capsys, monkeypatch, spec, fragment):
    monkeypatch.setattr(cli.commands, "load_data", lambda *a, **k: pytest.fail("data loaded"))
    line = one_line_error(capsys, ["train", "--lr-schedule", spec, *FAST])
    assert f"--lr-schedule {spec!r}" in line and fragment in line


def test_schedule_over_the_run_is_applied_per_iteration(tmp_path, capsys, fits):
    path, _, _ = classification_csv(tmp_path)
    out = run(capsys, ["train", "--dataset", path, "--epochs", "3", "--batch-size", "8", "--lr",
                       "0.01", "--lr-schedule", "warmup:4,cosine", "--save", str(tmp_path / "m.npz"),
                       *FAST])
    assert "learning rate: LinearWarmup" in out
    schedule = nn.load(tmp_path / "m.npz").optimizer.lr
    # 43 training samples in batches of 8: 6 iterations per epoch, 18 in the run
    assert isinstance(schedule, nn.schedules.LinearWarmup) and schedule.schedule.T_max == 14
    assert schedule(4) == 0.01 and schedule(18) > 0
    line = one_line_error(capsys, ["train", "--dataset", path, "--epochs", "1", "--batch-size", "8",
                                   "--lr-schedule", "warmup:6", *FAST])
    assert "a warm-up of 6 steps leaves none of the 6 steps of the run (1 epochs x 6" in line


def test_weight_decay_and_metrics(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path)
    out = run(capsys, ["train", "--dataset", path, "--epochs", "1", "--optimizer", "adamw",
                       "--weight-decay", "0.05", "--metrics", "top_2_accuracy",
                       "--save", str(tmp_path / "m.npz"), *FAST])
    assert "test top_2_accuracy:" in out and "validation top_2_accuracy:" in out
    model = nn.load(tmp_path / "m.npz")
    assert type(model.optimizer) is nn.optim.AdamW and model.optimizer.weight_decay == 0.05
    line = one_line_error(capsys, ["train", "--dataset", path, "--metrics", "r2", *FAST])
    assert line.startswith("nnumba: error: --metrics r2:") and "regression" in line
    line = one_line_error(capsys, ["train", "--dataset", path, "--optimizer", "sgd", "--beta1", "0.9",
                                   *FAST])
    assert "--beta1 does not apply to sgd" in line


# ---- early stopping ----------------------------------------------------------------------------

def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path, capsys):
    # a linear model with a learning rate past the stable limit: full-batch SGD on the mean
    # squared error multiplies the error by |1 - 2 lr| = 3 each update, so epoch 1 is the best
    # and every later one worse; with patience 2 training stops after epoch 3 (of 20)
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    path = write_csv(tmp_path / "lin.csv", x[:, None], x + 0.1 * rng.normal(size=200))
    argv = ["train", "--dataset", path, "--hidden", "--optimizer", "sgd", "--lr", "2",
            "--batch-size", "0", "--dtype", "float64", *FAST]
    out = run(capsys, [*argv, "--epochs", "20", "--early-stopping", "2",
                       "--history", str(tmp_path / "h.csv"), "--save", str(tmp_path / "es.npz")])
    assert "trained 3 epochs" in out
    assert "stopped after epoch 3, restored the weights of epoch 1" in out
    rows = list(csv.DictReader(open(tmp_path / "h.csv")))
    assert len(rows) == 3
    val = [float(r["val_loss"]) for r in rows]
    assert val[0] < val[1] < val[2]
    assert printed(out, "validation loss") == pytest.approx(val[0], abs=1e-4)
    # the saved weights are those after epoch 1: a 1-epoch run gives the same bits
    run(capsys, [*argv, "--epochs", "1", "--save", str(tmp_path / "one.npz")])
    assert weights_equal(nn.load(tmp_path / "es.npz"), nn.load(tmp_path / "one.npz"))
    line = one_line_error(capsys, [*argv, "--early-stopping", "2", "--val-split", "0"])
    assert "--early-stopping watches the validation loss: it needs --val-split > 0" in line


# ---- checkpoints and resuming ------------------------------------------------------------------

def test_checkpoint_and_resume_continue_exactly(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path, n=90)
    common = ["--batch-size", "8", "--backend", "numpy", "--quiet"]
    setup = ["--dataset", path, "--model", "dense:16,relu,dropout:0.25", "--dtype", "float64",
             "--lr", "0.01", "--lr-schedule", "step:1:0.7", *common]
    t = lambda name: str(tmp_path / name)  # noqa: E731
    run(capsys, ["train", *setup, "--epochs", "4", "--save", t("full.npz")])
    run(capsys, ["train", *setup, "--epochs", "2", "--save", t("half.npz"),
                 "--checkpoint", t("ck.npz"), "--history", t("h.csv")])
    # (the batch size, like the data set and split, comes from the record next to half.npz)
    out = run(capsys, ["train", "--resume", t("half.npz"), "--epochs", "2", "--save", t("res.npz"),
                       "--history", t("h.csv"), "--backend", "numpy", "--quiet"])
    assert "resuming" in out and "2 epochs and 16 weight updates done" in out
    assert "trained 2 more epochs" in out
    full, resumed = nn.load(t("full.npz")), nn.load(t("res.npz"))
    assert weights_equal(full, resumed)   # 2 + 2 epochs = 4, bit for bit
    assert resumed.epochs_trained == full.epochs_trained == 4
    assert resumed.optimizer.t == full.optimizer.t == 32   # 64 training samples: 8 per epoch
    # the history continues: epochs 0, 1 from the first run, 2, 3 from the resumed one
    rows = list(csv.DictReader(open(t("h.csv"))))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    # the checkpoint holds the best epoch of the first run (lowest val_loss), with its record
    record = json.loads(open(t("ck.npz.json")).read())
    val = [float(r["val_loss"]) for r in rows[:2]]
    assert record["epoch"] == int(np.argmin(val))
    best = nn.load(t("ck.npz"))
    assert best.epochs_trained == record["epoch"] + 1
    assert json.load(open(t("ck.npz.preprocess.json")))["dataset"] == f"csv:{path}"
    if record["epoch"] == 1:
        assert weights_equal(best, nn.load(t("half.npz")))
    # resuming from the checkpoint also works, and takes its recorded data set and split
    out = run(capsys, ["train", "--resume", t("ck.npz"), "--epochs", "1", *common])
    assert f"data: csv:{path}, 64 training, 8 validation and 18 test samples" in out


def test_a_new_run_starts_a_new_best_checkpoint(tmp_path, capsys):
    # ModelCheckpoint keeps the best value in <path>.json; a new (not resumed) run must not be
    # held to an earlier run's best, so it removes that record
    path, _, _ = classification_csv(tmp_path)
    ck = str(tmp_path / "ck.npz")
    run(capsys, ["train", "--dataset", path, "--epochs", "3", "--lr", "0.01", "--checkpoint", ck,
                 *FAST])
    record = json.load(open(ck + ".json"))
    record["best"] = -1.0   # an unbeatable val_loss
    (tmp_path / "ck.npz.json").write_text(json.dumps(record))
    out = run(capsys, ["train", "--dataset", path, "--epochs", "1", "--seed", "5", "--checkpoint", ck,
                       *FAST])
    assert "(removed " in out and "best checkpoint: " + ck + " (epoch 1" in out
    assert nn.load(ck).epochs_trained == 1 and json.load(open(ck + ".json"))["best"] > 0


def test_resume_with_a_schedule_that_ran_out(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path)
    common = ["--batch-size", "8", *FAST]
    run(capsys, ["train", "--dataset", path, "--epochs", "2", "--lr-schedule", "cosine",
                 "--save", str(tmp_path / "m.npz"), *common])
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "m.npz"), "--epochs", "1",
                                   *common])
    assert "the checkpoint's learning-rate schedule has no rate for the 6 new steps (13 to 18)" in line
    assert "give --lr or --lr-schedule" in line
    # a new cosine spans the whole run, 3 epochs of 6 iterations, continuing at step 13
    run(capsys, ["train", "--resume", str(tmp_path / "m.npz"), "--epochs", "1", "--lr-schedule",
                 "cosine", "--save", str(tmp_path / "m2.npz"), *common])
    model = nn.load(tmp_path / "m2.npz")
    assert model.optimizer.lr.T_max == 18 and model.optimizer.t == 18
    run(capsys, ["train", "--resume", str(tmp_path / "m.npz"), "--epochs", "1", "--lr", "0.0005",
                 "--save", str(tmp_path / "m3.npz"), *common])
    assert nn.load(tmp_path / "m3.npz").optimizer.lr == 0.0005


def test_resume_refuses_what_the_checkpoint_fixes(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path)
    run(capsys, ["train", "--dataset", path, "--epochs", "1", "--save", str(tmp_path / "m.npz"),
                 *FAST])
    for extra in (["--model", "dense:4"], ["--optimizer", "sgd"], ["--dtype", "float64"],
                  ["--no-standardize"], ["--loss", "mse"]):
        line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "m.npz"), *extra, *FAST])
        assert f"cannot be combined with --resume {tmp_path / 'm.npz'}" in line
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "m.npz"), "--dataset",
                                   "digits", *FAST])
    assert "the model takes 5 features per sample, but --dataset digits gives 64 features" in line
    line = one_line_error(capsys, ["train", "--resume", str(tmp_path / "none.npz"), *FAST])
    assert "--resume" in line and "no such file" in line


# ---- --history and --plot ----------------------------------------------------------------------

def test_history_has_one_row_per_epoch(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path)
    run(capsys, ["train", "--dataset", path, "--epochs", "3", "--history", str(tmp_path / "h.csv"),
                 *FAST])
    rows = list(csv.reader(open(tmp_path / "h.csv")))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    assert all(np.isfinite(float(v)) for r in rows[1:] for v in r)


def test_plot_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path, _, _ = classification_csv(tmp_path)
    out = run(capsys, ["train", "--dataset", path, "--epochs", "2", "--plot",
                       str(tmp_path / "curves.png"), *FAST])
    assert f"plot: {tmp_path / 'curves.png'}" in out
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- evaluate and predict ----------------------------------------------------------------------

def _test_part(path, seed=0, test_size=0.2):
    X, y = nn.data.load_csv(path)
    return nn.data.train_val_test_split(X, y, val_size=0, test_size=test_size, seed=seed)


def test_evaluate_and_predict_round_trip_with_the_recorded_standardization(tmp_path, capsys):
    path, _, _ = classification_csv(tmp_path, n=80, offset=5.0, scale=3.0)
    model_path = str(tmp_path / "m.npz")
    out = run(capsys, ["train", "--dataset", path, "--epochs", "5", "--save", model_path, *FAST])
    record = json.load(open(model_path + ".preprocess.json"))
    assert record["standardize"] is True and record["targets"] is None
    # the statistics of the training part: what the 80/20 and 90/10 splits leave
    X_train, y_train, _, _, X_test, y_test = _test_part(path)
    X_fit = cli.split_validation(X_train, y_train, 0.1, 0)[0]
    np.testing.assert_allclose(record["inputs"]["mean"], X_fit.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(record["inputs"]["scale"], X_fit.std(axis=0), rtol=1e-5)

    evaluated = run(capsys, ["evaluate", model_path, "--backend", "numpy"])
    assert "preprocessing: " + model_path + ".preprocess.json (standardized: inputs)" in evaluated
    assert f"data: csv:{path}, the test split (--test-size 0.2, --seed 0): 16 samples" in evaluated
    for key in ("test loss", "test accuracy"):
        assert printed(evaluated, key) == printed(out, key)

    write_csv(tmp_path / "features.csv", X_test, header=[f"x{i}" for i in range(5)])
    run(capsys, ["predict", model_path, "--data", str(tmp_path / "features.csv"), "--output",
                 str(tmp_path / "p.csv"), "--backend", "numpy"])
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows[0] == ["label", "p0", "p1", "p2"] and len(rows) == 17
    table = np.array(rows[1:], dtype=float)
    model = nn.load(model_path)
    scaler = cli.preprocessing._standardizer(record["inputs"]["mean"], record["inputs"]["scale"])
    expected = model.predict(scaler.transform(X_test))
    np.testing.assert_allclose(table[:, 1:], expected, rtol=1e-6, atol=1e-7)
    assert np.array_equal(table[:, 0], np.argmax(expected, axis=1))
    assert np.mean(table[:, 0] == y_test) == pytest.approx(printed(evaluated, "test accuracy"),
                                                            abs=1e-4)
    # printed to stdout, and from a .npz of inputs into a .npz of predictions: the same
    printed_csv = run(capsys, ["predict", model_path, "--data", str(tmp_path / "features.csv"),
                               "--backend", "numpy"])
    assert printed_csv == (tmp_path / "p.csv").read_text()
    np.savez(tmp_path / "inputs.npz", X=X_test)
    run(capsys, ["predict", model_path, "--data", str(tmp_path / "inputs.npz"), "--output",
                 str(tmp_path / "p.npz"), "--backend", "numpy"])
    with np.load(tmp_path / "p.npz") as f:
        np.testing.assert_allclose(f["probabilities"], expected, rtol=1e-6)
        assert np.array_equal(f["labels"], np.argmax(expected, axis=1))
    # without the record the raw inputs go in, and the predictions differ
    (tmp_path / "m.npz.preprocess.json").unlink()
    status = main(["predict", model_path, "--data", str(tmp_path / "features.csv"), "--backend",
                   "numpy"])
    out, err = capsys.readouterr()
    assert status == 0 and err.startswith("nnumba: warning: ") and "does not exist" in err
    assert not np.allclose(np.array([r.split(",") for r in out.splitlines()[1:]], dtype=float)[:, 1:],
                           expected, atol=1e-3)


def test_predict_a_regressor_in_the_targets_units(tmp_path, capsys):
    path, _, _ = regression_csv(tmp_path)
    model_path = str(tmp_path / "r.npz")
    out = run(capsys, ["train", "--dataset", path, "--epochs", "40", "--batch-size", "8", "--lr",
                       "0.01", "--save", model_path, *FAST])
    assert "loss mse" in out and "(standardized: inputs and targets)" in out
    record = json.load(open(model_path + ".preprocess.json"))
    _, _, _, _, X_test, y_test = _test_part(path)
    write_csv(tmp_path / "features.csv", X_test)  # no header row
    run(capsys, ["predict", model_path, "--data", str(tmp_path / "features.csv"), "--output",
                 str(tmp_path / "p.csv"), "--backend", "numpy"])
    rows = list(csv.reader(open(tmp_path / "p.csv")))
    assert rows[0] == ["y"]
    values = np.array(rows[1:], dtype=float)[:, 0]
    model = nn.load(model_path)
    x = cli.preprocessing._standardizer(record["inputs"]["mean"], record["inputs"]["scale"]).transform(X_test)
    y_scaler = cli.preprocessing._standardizer(record["targets"]["mean"], record["targets"]["scale"])
    np.testing.assert_allclose(values, y_scaler.inverse_transform(model.predict(x))[:, 0], rtol=1e-6)
    # in the targets' units (about 100 +- 36), and close to them after 40 epochs
    assert np.mean(np.abs(values - y_test[:, 0])) < 0.5 * np.std(y_test)
    evaluated = run(capsys, ["evaluate", model_path, "--backend", "numpy", "--metrics", "mae"])
    for key in ("test loss", "test mae (in the targets' units)", "test rmse (in the targets' units)"):
        assert printed(evaluated, key) == printed(out, key)
    assert "test mae:" in evaluated


def test_evaluate_and_predict_refuse_mismatched_inputs(tmp_path, capsys):
    path, X, y = classification_csv(tmp_path)
    model_path = str(tmp_path / "m.npz")
    run(capsys, ["train", "--dataset", path, "--epochs", "1", "--save", model_path, *FAST])
    write_csv(tmp_path / "with_target.csv", X, y)
    line = one_line_error(capsys, ["predict", model_path, "--data", str(tmp_path / "with_target.csv"),
                                   "--backend", "numpy"])
    assert "6 values in the last axis" in line or "does it still hold the target column?" in line
    line = one_line_error(capsys, ["evaluate", model_path, "--dataset", "digits", "--backend", "numpy"])
    assert "--dataset digits" in line and "64" in line
    line = one_line_error(capsys, ["predict", model_path, "--data", "digits", "--backend", "numpy"])
    assert "predict reads a .csv or .npz file of inputs" in line
    line = one_line_error(capsys, ["predict", model_path, "--data", str(tmp_path / "with_target.csv"),
                                   "--output", str(tmp_path / "p.txt"), "--backend", "numpy"])
    assert "--output" in line and ".csv or .npz" in line
    (tmp_path / "m.npz.preprocess.json").write_text('{"format": "nnumba.preprocess", "version": 1, '
                                                    '"inputs": {"mean": [0], "scale": [0]}}')
    line = one_line_error(capsys, ["evaluate", model_path, "--backend", "numpy"])
    assert "m.npz.preprocess.json" in line and "is damaged" in line and "not > 0" in line
    line = one_line_error(capsys, ["evaluate", str(tmp_path / "nothing.npz"), "--backend", "numpy"])
    assert "nothing.npz: no such file" in line


# ---- the cpu backend ---------------------------------------------------------------------------

def test_the_workflow_on_the_cpu_backend(tmp_path, capsys):
    # (the compiled MLP loop of test_cli_and_data's digits run, float32: little to compile)
    path, _, _ = classification_csv(tmp_path, n=80)
    model_path = str(tmp_path / "m.npz")
    out = run(capsys, ["train", "--dataset", path, "--epochs", "3", "--quiet", "--save",
                       model_path, "--checkpoint", str(tmp_path / "ck.npz")])
    assert "backend 'cpu'" in out
    evaluated = run(capsys, ["evaluate", model_path])
    assert printed(evaluated, "test loss") == printed(out, "test loss")
    numpy_model = nn.load(model_path, backend="numpy")
    cpu_model = nn.load(model_path)
    X = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_allclose(cpu_model.predict(X), numpy_model.predict(X), rtol=1e-5, atol=1e-6)
