"""Child process of test_hardening.test_real_sigint_during_fit.

    python hardening_sigint_child.py straight|interrupt BACKEND

"straight" trains TOTAL epochs (SIZES) in one fit. "interrupt" starts the same fit,
prints "ready" after its second epoch and expects the parent to send SIGINT;
it catches the KeyboardInterrupt, checks that the optimizer's step count
matches the epochs trained, and continues to TOTAL epochs. Either way the last
line is JSON with a checksum of the weights, the optimizer state and counters.
"""
import hashlib
import json
import signal
import sys

import numpy as np

import nnumba as nn

# (samples, batch size, epochs): about 1.5 s of training on each backend
SIZES = {"cpu": (2000, 4, 2500), "numpy": (200, 4, 1000)}


def main(mode, backend):
    # Python raises KeyboardInterrupt on SIGINT only if SIGINT was not ignored when it
    # started, and a shell's background job (`pytest &`) starts with it ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    N, BATCH, TOTAL = SIZES[backend]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 3))
    y = np.stack([np.sin(X[:, 0]) + X[:, 1] * X[:, 2], np.cos(X[:, 1])], axis=1)
    model = nn.Sequential([nn.Dense(3, 4), nn.Tanh(), nn.Dense(4, 2)], backend=backend,
                          dtype="float64", seed=11)
    model.compile("mse", nn.optim.Adam(lr=1e-4))
    ipe = nn.data.iterations_per_epoch(N, BATCH)
    interrupted, at, consistent = False, None, True

    def ready(epoch, logs):
        if epoch == 1:
            print("ready", flush=True)

    if mode == "straight":
        model.fit(X, y, epochs=TOTAL, batch_size=BATCH, shuffle=True)
    else:
        try:
            model.fit(X, y, epochs=TOTAL, batch_size=BATCH, shuffle=True, callbacks=[ready])
        except KeyboardInterrupt:
            interrupted = True
        at = model.epochs_trained
        consistent = model.optimizer.t == model.epochs_trained * ipe
        if model.epochs_trained < TOTAL:
            model.fit(X, y, epochs=TOTAL - model.epochs_trained, batch_size=BATCH, shuffle=True)
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    state = model.optimizer.state_dict()
    for k in sorted(state["state"]):
        digest.update(np.ascontiguousarray(state["state"][k]).tobytes())
    digest.update(str((state["t"], model.epochs_trained)).encode())
    print(json.dumps({"interrupted": interrupted, "interrupted_at": at,
                      "t_consistent": bool(consistent), "t": int(state["t"]),
                      "epochs_total": model.epochs_trained, "checksum": digest.hexdigest()}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
