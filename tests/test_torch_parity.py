"""nnumba against PyTorch, float64, from the same weights on the same batches.

Skipped where torch is not installed. The EWMA Momentum with learning rate a is
torch.optim.SGD(lr=a (1 - beta), momentum=beta), and RMSprop with
eps_inside_sqrt=False is torch.optim.RMSprop(alpha=beta).
"""
import numpy as np
import pytest

import nnumba as nn
from conftest import LOSSES, toy_data

torch = pytest.importorskip("torch")

WORST = {}  # the largest relative difference seen per check, printed at the end


def record(name, ours, theirs):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    diff = float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-8)))
    WORST[name] = max(WORST.get(name, 0.0), diff)
    return diff


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    if WORST:
        print("\nworst relative difference to PyTorch:",
              ", ".join(f"{k} {v:.1e}" for k, v in sorted(WORST.items())))


def torch_model(model):
    """The same network in torch, with nnumba's weights (W is (in, out) here, (out, in) there)."""
    modules = []
    for layer in model.layers:
        if isinstance(layer, nn.Dense):
            modules.append(torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias,
                                           dtype=torch.float64))
        else:
            modules.append({nn.ReLU: torch.nn.ReLU, nn.Sigmoid: torch.nn.Sigmoid,
                            nn.Tanh: torch.nn.Tanh}[type(layer)]())
    net = torch.nn.Sequential(*modules)
    weights = iter(model.get_weights())
    with torch.no_grad():
        for m in net:
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.from_numpy(next(weights).T.copy()))
                if m.bias is not None:
                    m.bias.copy_(torch.from_numpy(next(weights)))
    return net


def torch_loss(name, out, y):
    if name == "mse":
        return torch.nn.functional.mse_loss(out, torch.from_numpy(y))
    if name == "binary_cross_entropy":
        return torch.nn.functional.binary_cross_entropy_with_logits(out, torch.from_numpy(y))
    return torch.nn.functional.cross_entropy(out, torch.from_numpy(y))


def build(backend, act=nn.Tanh, seed=0):
    return nn.Sequential([nn.Dense(5, 8), act(), nn.Dense(8, 6), act(), nn.Dense(6, 3)],
                         backend=backend, dtype="float64", seed=seed)


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", [nn.Tanh, nn.Sigmoid, nn.ReLU])
def test_loss_and_gradients(backend, loss, act):
    X, y = toy_data(loss, n=17)
    model = build(backend, act)
    model.compile(loss, "sgd")
    net = torch_model(model)
    out = net(torch.from_numpy(X))
    value = torch_loss(loss, out, y)
    value.backward()
    theirs = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            theirs += [m.weight.grad.numpy().T, m.bias.grad.numpy()]
    assert record("loss", model.evaluate(X, y)["loss"], value.item()) < 1e-13
    for ours, t in zip(model.gradients(X, y), theirs):
        assert record("gradient", ours, t) < 1e-10
    expected = {"mse": out, "cross_entropy": torch.softmax(out, 1),
                "binary_cross_entropy": torch.sigmoid(out)}[loss]
    assert record("predict", model.predict(X), expected.detach().numpy()) < 1e-12


def torch_optimizer(name, params, lr):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr * (1 - 0.9), momentum=0.9)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, alpha=0.9, eps=1e-8)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


def ours_optimizer(name, lr):
    return {"sgd": lambda: nn.optim.SGD(lr=lr),
            "momentum": lambda: nn.optim.Momentum(lr=lr, beta=0.9),
            "rmsprop": lambda: nn.optim.RMSprop(lr=lr, beta=0.9, eps=1e-8, eps_inside_sqrt=False),
            "adam": lambda: nn.optim.Adam(lr=lr)}[name]()


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("loss", LOSSES)
def test_training_matches(backend, optimizer, loss):
    """25 steps on mini-batches (the last one smaller), same order, same weights."""
    X, y = toy_data(loss, n=29)
    lr = 0.01
    model = build(backend, nn.Tanh, seed=1)
    model.compile(loss, ours_optimizer(optimizer, lr))
    net = torch_model(model)
    opt = torch_optimizer(optimizer, net.parameters(), lr)
    order = np.random.default_rng(5).permutation(29)
    for step in range(25):
        idx = order[(step * 8) % 29:(step * 8) % 29 + 8]
        ours = model.train_step(X[idx], y[idx])
        opt.zero_grad()
        value = torch_loss(loss, net(torch.from_numpy(X[idx])), y[idx])
        value.backward()
        opt.step()
        assert record(f"train loss {optimizer}", ours, value.item()) < 1e-10
    theirs = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            theirs += [m.weight.detach().numpy().T, m.bias.detach().numpy()]
    for w, t in zip(model.get_weights(), theirs):
        assert record(f"weights after 25 steps, {optimizer}", w, t) < 1e-9


def test_fit_matches_torch_loop():
    """fit's epochs and shuffling against a hand-written torch loop over the same order."""
    X, y = toy_data("cross_entropy", n=50)
    model = build("cpu", nn.ReLU, seed=2)
    model.compile("cross_entropy", nn.optim.Adam(lr=0.01))
    net = torch_model(model)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    # replay the model's shuffling generator to know its batches
    import copy
    rng = copy.deepcopy(model._shuffle_rng)
    model.fit(X, y, epochs=3, batch_size=16)
    for _ in range(3):
        order = rng.permutation(50)
        for start in range(0, 50, 16):
            idx = order[start:start + 16]
            opt.zero_grad()
            torch_loss("cross_entropy", net(torch.from_numpy(X[idx])), y[idx]).backward()
            opt.step()
    theirs = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            theirs += [m.weight.detach().numpy().T, m.bias.detach().numpy()]
    for w, t in zip(model.get_weights(), theirs):
        assert record("weights after fit", w, t) < 1e-9
