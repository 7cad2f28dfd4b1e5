"""Learning-rate schedules: torch.optim.lr_scheduler's rates step by step, vectorised
evaluation, configs, and refusal of bad arguments and bad rates.

The counter mapping under test: torch's rate at optimizer step k (1-based) is the
one in the optimizer after k - 1 calls of scheduler.step(), and nnumba's
schedule(k) must equal it.
"""
import json
import math
import warnings

import numpy as np
import pytest

from nnumba import schedules as S

N_STEPS = 200
LR = 0.1


# ---- against torch -----------------------------------------------------------------------------
def torch_rates(make, lr=LR, n=N_STEPS):
    """The learning rate torch's optimizer uses at each of its first n steps, the
    scheduler stepped after every optimizer step as torch prescribes; and, where the
    scheduler has one, torch's closed form at the same counter (None otherwise)."""
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(torch.optim.lr_scheduler, opt)
    rates, closed = [], []
    closed_form = getattr(sched, "_get_closed_form_lr", None)
    for k in range(1, n + 1):
        assert sched.last_epoch == k - 1  # the mapping: step k runs at last_epoch k - 1
        rates.append(opt.param_groups[0]["lr"])
        if closed_form is not None:
            closed.append(closed_form()[0])
        p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
    return np.array(rates), (np.array(closed) if closed else None)


def max_rel(a, b):
    return float(np.max(np.abs(a - b) / np.abs(b)))


# (nnumba schedule, torch scheduler factory, torch's lr); the torch step() of these
# is the closed form itself, so the rates must agree to the last bit
EXACT = {
    "LambdaLR": (S.LambdaLR(LR, lambda e: 1.0 / (1.0 + 0.05 * e)),
                 lambda T, o: T.LambdaLR(o, lambda e: 1.0 / (1.0 + 0.05 * e)), LR),
    "CosineAnnealingWarmRestarts T_mult=1": (
        S.CosineAnnealingWarmRestarts(LR, T_0=13, eta_min=1e-3),
        lambda T, o: T.CosineAnnealingWarmRestarts(o, T_0=13, eta_min=1e-3), LR),
    "CosineAnnealingWarmRestarts T_mult=2": (
        S.CosineAnnealingWarmRestarts(LR, T_0=7, T_mult=2),
        lambda T, o: T.CosineAnnealingWarmRestarts(o, T_0=7, T_mult=2), LR),
    "CosineAnnealingWarmRestarts T_mult=3": (
        S.CosineAnnealingWarmRestarts(LR, T_0=2, T_mult=3, eta_min=1e-4),
        lambda T, o: T.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=3, eta_min=1e-4), LR),
    "OneCycleLR cos": (S.OneCycleLR(0.3, total_steps=N_STEPS),
                       lambda T, o: T.OneCycleLR(o, max_lr=0.3, total_steps=N_STEPS,
                                                 cycle_momentum=False), LR),
    "OneCycleLR linear": (
        S.OneCycleLR(0.3, total_steps=N_STEPS, pct_start=0.25, anneal_strategy="linear",
                     div_factor=10.0, final_div_factor=100.0),
        lambda T, o: T.OneCycleLR(o, max_lr=0.3, total_steps=N_STEPS, pct_start=0.25,
                                  anneal_strategy="linear", div_factor=10.0,
                                  final_div_factor=100.0, cycle_momentum=False), LR),
    "OneCycleLR short cycle": (  # pct_start * total_steps < 1: no rising phase
        S.OneCycleLR(0.3, total_steps=N_STEPS, pct_start=0.004),
        lambda T, o: T.OneCycleLR(o, max_lr=0.3, total_steps=N_STEPS, pct_start=0.004,
                                  cycle_momentum=False), LR),
}

# torch's step() of these updates the rate recursively (its "chainable" form); nnumba uses
# the closed form torch defines next to it (_get_closed_form_lr)
CHAINED = {
    "StepLR": (S.StepLR(LR, step_size=7, gamma=0.5), lambda T, o: T.StepLR(o, 7, 0.5)),
    "StepLR gamma=0.1": (S.StepLR(LR, step_size=30), lambda T, o: T.StepLR(o, 30)),
    "MultiStepLR": (S.MultiStepLR(LR, [10, 50, 51, 120], gamma=0.3),
                    lambda T, o: T.MultiStepLR(o, [10, 50, 51, 120], gamma=0.3)),
    "ExponentialLR": (S.ExponentialLR(LR, gamma=0.97), lambda T, o: T.ExponentialLR(o, 0.97)),
    "CosineAnnealingLR": (S.CosineAnnealingLR(LR, T_max=N_STEPS),
                          lambda T, o: T.CosineAnnealingLR(o, T_max=N_STEPS)),
    "CosineAnnealingLR eta_min": (S.CosineAnnealingLR(LR, T_max=50, eta_min=1e-3),
                                  lambda T, o: T.CosineAnnealingLR(o, T_max=50, eta_min=1e-3)),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_closed_form_schedules_equal_torch_step_by_step(name):
    ours, make, lr = EXACT[name]
    torch_lr, _ = torch_rates(make, lr)
    mine = ours.values(1, N_STEPS)
    np.testing.assert_array_equal(mine, torch_lr)
    assert [ours(k) for k in (1, 2, N_STEPS)] == [torch_lr[0], torch_lr[1], torch_lr[-1]]


@pytest.mark.parametrize("name", list(CHAINED))
def test_chained_schedules_equal_torch_step_by_step(name):
    """Within 1e-15 of torch's closed form at every step (the same formula; NumPy's pow
    may round the last bit differently from libm's), and within 1e-14 of the rates
    torch's step() accumulates, whose recursion rounds once or twice a step."""
    ours, make = CHAINED[name]
    torch_lr, torch_closed = torch_rates(make)
    mine = ours.values(1, N_STEPS)
    if torch_closed is not None:  # torch's closed form is a private method: may go one day
        assert max_rel(mine, torch_closed) <= 1e-15
    assert max_rel(mine, torch_lr) <= 1e-14
    assert mine[0] == LR == torch_lr[0]


def test_step_decays_land_on_the_same_steps_as_torch():
    """Off-by-one check: the step at which the rate first changes is the same."""
    for ours, make in CHAINED.values():
        torch_lr, _ = torch_rates(make)
        mine = ours.values(1, N_STEPS)
        changed_mine = np.flatnonzero(~np.isclose(mine[1:], mine[:-1], rtol=1e-12, atol=0))
        changed_torch = np.flatnonzero(~np.isclose(torch_lr[1:], torch_lr[:-1], rtol=1e-12, atol=0))
        np.testing.assert_array_equal(changed_mine, changed_torch)


@pytest.mark.parametrize("start_factor", [0.0, 0.1])
@pytest.mark.parametrize("after", ["constant", "cosine", "step"])
def test_linear_warmup_equals_torch_linearlr_then_sequentiallr(start_factor, after):
    W, s = 10, start_factor
    inner = {"constant": (LR, lambda T, o: T.ConstantLR(o, factor=1.0, total_iters=1)),
             "cosine": (S.CosineAnnealingLR(LR, T_max=190, eta_min=1e-3),
                        lambda T, o: T.CosineAnnealingLR(o, T_max=190, eta_min=1e-3)),
             "step": (S.StepLR(LR, step_size=20, gamma=0.5), lambda T, o: T.StepLR(o, 20, 0.5))}
    ours_after, make_after = inner[after]
    ours = S.LinearWarmup(ours_after, warmup_steps=W, start_factor=s)

    def make(T, o):
        warm = T.LinearLR(o, start_factor=s + (1 - s) / W, end_factor=1.0, total_iters=W - 1)
        return T.SequentialLR(o, [warm, make_after(T, o)], milestones=[W])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SequentialLR's internal closed-form call
        torch_lr, _ = torch_rates(make)
    mine = ours.values(1, N_STEPS)
    assert max_rel(mine, torch_lr) <= 1e-14
    # the ramp itself, computed here: step k <= W gets LR (s + (1 - s) k / W), step W exactly LR
    k = np.arange(1, W + 1)
    np.testing.assert_allclose(mine[:W], LR * (s + (1 - s) * k / W), rtol=1e-15, atol=0)
    assert mine[W - 1] == LR
    # after the ramp: the wrapped schedule from its own step 1
    after_values = (np.full(N_STEPS - W, LR) if after == "constant"
                    else ours_after.values(1, N_STEPS - W))
    np.testing.assert_array_equal(mine[W:], after_values)


def test_linear_warmup_default_first_step_is_not_zero():
    w = S.LinearWarmup(0.4, warmup_steps=4)
    np.testing.assert_allclose(w.values(1, 6), [0.1, 0.2, 0.3, 0.4, 0.4, 0.4], rtol=1e-15)
    assert S.LinearWarmup(0.4, warmup_steps=1).values(1, 3).tolist() == [0.4, 0.4, 0.4]


# ---- formulas without torch --------------------------------------------------------------------
def test_formulas_by_hand():
    np.testing.assert_allclose(S.StepLR(1.0, 3, 0.5).values(1, 8), [1, 1, 1, .5, .5, .5, .25, .25],
                               rtol=0)
    np.testing.assert_allclose(S.MultiStepLR(1.0, [2, 5], 0.5).values(1, 7),
                               [1, 1, .5, .5, .5, .25, .25], rtol=0)
    np.testing.assert_allclose(S.ExponentialLR(2.0, 0.5).values(1, 4), [2, 1, .5, .25], rtol=0)
    c = S.CosineAnnealingLR(1.0, T_max=4, eta_min=0.2).values(1, 5)
    np.testing.assert_allclose(c, 0.2 + 0.8 * (1 + np.cos(np.pi * np.arange(5) / 4)) / 2, rtol=1e-15)
    assert c[4] == 0.2  # eta_min at step T_max + 1
    # T_0=2, T_mult=2: cycles of 2, 4, 8 steps starting at steps 1, 3, 7, 15
    r = S.CosineAnnealingWarmRestarts(1.0, T_0=2, T_mult=2).values(1, 15)
    t_cur = np.array([0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 0])
    t_i = np.array([2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 16])
    np.testing.assert_allclose(r, (1 + np.cos(np.pi * t_cur / t_i)) / 2, rtol=1e-15)
    o = S.OneCycleLR(1.0, total_steps=11, pct_start=0.5, anneal_strategy="linear", div_factor=10.0,
                     final_div_factor=10.0)
    v = o.values(1, 11)  # up from 0.1 to 1 at e = 4.5 (so 0.1 + 0.9 e / 4.5), down to 0.01 at e = 10
    e = np.arange(11.0)
    expect = np.where(e <= 4.5, 0.1 + 0.9 * e / 4.5, 1.0 + (0.01 - 1.0) * (e - 4.5) / 5.5)
    np.testing.assert_allclose(v, expect, rtol=0, atol=1e-15)  # (absolute: 1 - 0.99 cancels)
    assert v[0] == 0.1 and v[-1] == pytest.approx(0.01, rel=1e-13)
    assert S.LambdaLR(0.5, lambda e: e + 1).values(1, 3).tolist() == [0.5, 1.0, 1.5]


def test_one_cycle_peak_at_step_one():
    """pct_start * total_steps = 1 puts the peak at the first step (torch divides 0 by 0)."""
    o = S.OneCycleLR(0.3, total_steps=10, pct_start=0.1)
    v = o.values(1, 10)
    assert v[0] == 0.3 and np.all(np.diff(v) < 0) and v[-1] == pytest.approx(0.3 / 25 / 1e4)


def test_warm_restarts_far_out_against_the_recursion():
    """torch's step() recursion (T_cur += 1; at T_i: T_cur -= T_i, T_i *= T_mult), written out,
    against values() over a range far from the start."""
    for t0, mult in ((3, 1), (5, 2), (1, 3)):
        sched = S.CosineAnnealingWarmRestarts(1.0, T_0=t0, T_mult=mult, eta_min=0.01)
        t_cur, t_i, expect = 0, t0, []
        for _ in range(6000):
            expect.append(0.01 + (1.0 - 0.01) * (1 + math.cos(math.pi * t_cur / t_i)) / 2)
            t_cur += 1
            if t_cur >= t_i:
                t_cur, t_i = t_cur - t_i, t_i * mult
        np.testing.assert_array_equal(sched.values(4001, 2000), expect[4000:])


# ---- vectorised evaluation ---------------------------------------------------------------------
ALL = [s for s, *_ in EXACT.values()] + [s for s, _ in CHAINED.values()] + [
    S.LinearWarmup(S.ExponentialLR(0.2, 0.99), warmup_steps=17, start_factor=0.05),
    S.LinearWarmup(0.05, warmup_steps=3),
]


@pytest.mark.parametrize("sched", ALL, ids=repr)
def test_values_equal_repeated_calls_and_any_split(sched):
    n = N_STEPS
    whole = sched.values(1, n)
    assert whole.dtype == np.float64 and whole.shape == (n,)
    np.testing.assert_array_equal(whole, [sched(t) for t in range(1, n + 1)])
    # a compiled loop asks for values(t0 + 1, chunk): the same bits however it is chunked
    pieces, t = [], 1
    for chunk in (1, 2, 5, 13, 64, 3, 112):
        pieces.append(sched.values(t, chunk))
        t += chunk
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert sched.values(57, 0).shape == (0,)
    assert all(isinstance(sched(t), float) for t in (1, 100))


# ---- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sched", [s for s in ALL if not isinstance(s, S.LambdaLR)], ids=repr)
def test_config_round_trip_through_json(sched):
    config = json.loads(json.dumps(sched.config()))
    assert config["schedule"] == type(sched).__name__
    back = S.schedule_from_config(config)
    assert type(back) is type(sched) and back.config() == sched.config()
    np.testing.assert_array_equal(back.values(1, N_STEPS), sched.values(1, N_STEPS))
    assert repr(back) == repr(sched)
    assert isinstance(sched.describe(), str) and type(sched).__name__ in sched.describe()


def test_lambda_config_cannot_be_restored_without_its_function():
    def halve_every_ten(e):
        return 0.5 ** (e // 10)

    sched = S.LinearWarmup(S.LambdaLR(0.1, halve_every_ten), warmup_steps=5)
    config = json.loads(json.dumps(sched.config()))
    assert config["schedule_or_lr"]["fn"] is None
    with pytest.raises(ValueError, match="LambdaLR cannot be restored.*halve_every_ten"):
        S.schedule_from_config(config)
    back = S.schedule_from_config(config, fn=halve_every_ten)
    np.testing.assert_array_equal(back.values(1, 50), sched.values(1, 50))


@pytest.mark.parametrize("config, match", [
    ({"schedule": "Nope", "lr": 0.1}, "unknown schedule 'Nope'"),
    ({"schedule": "StepLR", "lr": 0.1}, r"lacks \['step_size'\]"),
    ({"schedule": "StepLR", "lr": 0.1, "step_size": 3, "speed": 2}, r"unknown keys \['speed'\]"),
    ({"schedule": "StepLR", "lr": -1.0, "step_size": 3}, "lr must be in"),
])
def test_bad_configs_refused(config, match):
    with pytest.raises(ValueError, match=match):
        S.schedule_from_config(config)
    with pytest.raises(TypeError):
        S.schedule_from_config([("schedule", "StepLR")])


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: S.StepLR(0.0, 3), ValueError, "lr must be in"),
    (lambda: S.StepLR(float("nan"), 3), ValueError, "lr must be finite"),
    (lambda: S.StepLR(float("inf"), 3), ValueError, "lr must be finite"),
    (lambda: S.StepLR("0.1", 3), TypeError, "lr must be a real number"),
    (lambda: S.StepLR(0.1, 0), ValueError, "step_size must be >= 1"),
    (lambda: S.StepLR(0.1, 2.0), TypeError, "step_size must be an integer"),
    (lambda: S.StepLR(0.1, 3, gamma=0.0), ValueError, "gamma must be in"),
    (lambda: S.MultiStepLR(0.1, [5, 3]), ValueError, "strictly increasing.*milestones\\[0\\]=5"),
    (lambda: S.MultiStepLR(0.1, [0, 3]), ValueError, "milestones\\[0\\] must be >= 1"),
    (lambda: S.MultiStepLR(0.1, 5), TypeError, "milestones must be a list"),
    (lambda: S.ExponentialLR(0.1, -0.5), ValueError, "gamma must be in"),
    (lambda: S.CosineAnnealingLR(0.1, 0), ValueError, "T_max must be >= 1"),
    (lambda: S.CosineAnnealingLR(0.1, 10, eta_min=-1e-3), ValueError, "eta_min must be in"),
    (lambda: S.CosineAnnealingLR(0.1, 10, eta_min=0.2), ValueError, "eta_min must be <= lr"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=0), ValueError, "T_0 must be >= 1"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=5, T_mult=0), ValueError, "T_mult must be >= 1"),
    (lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=5, T_mult=1.5), TypeError,
     "T_mult must be an integer"),
    (lambda: S.OneCycleLR(0.1, 0), ValueError, "total_steps must be >= 1"),
    (lambda: S.OneCycleLR(0.1, 100, pct_start=1.5), ValueError, "pct_start must be in"),
    (lambda: S.OneCycleLR(0.1, 100, anneal_strategy="cosine"), ValueError, "anneal_strategy"),
    (lambda: S.OneCycleLR(0.1, 100, div_factor=0.0), ValueError, "div_factor must be in"),
    (lambda: S.OneCycleLR(0.1, 100, final_div_factor=-1.0), ValueError, "final_div_factor must be in"),
    (lambda: S.LambdaLR(0.1, 3), TypeError, "fn must be a callable"),
    (lambda: S.LambdaLR(0.1, lambda a, b: 1.0), TypeError, "fn must accept one argument"),
    (lambda: S.LinearWarmup("x", 5), TypeError, "schedule_or_lr must be a schedule"),
    (lambda: S.LinearWarmup(0.0, 5), ValueError, "schedule_or_lr must be in"),
    (lambda: S.LinearWarmup(0.1, 0), ValueError, "warmup_steps must be >= 1"),
    (lambda: S.LinearWarmup(0.1, 5, start_factor=1.5), ValueError, "start_factor must be in"),
])
def test_bad_arguments_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_steps_refused():
    sched = S.StepLR(0.1, 3)
    for call, error, match in [
        (lambda: sched(0), ValueError, "step must be >= 1"),
        (lambda: sched(1.0), TypeError, "step must be an integer"),
        (lambda: sched.values(0, 3), ValueError, "first_step must be >= 1"),
        (lambda: sched.values(1, -1), ValueError, "n must be >= 0"),
        (lambda: sched.values(S.MAX_STEP, 2), ValueError, "2\\*\\*53"),
    ]:
        with pytest.raises(error, match=match):
            call()
    assert S.StepLR(0.1, 3, gamma=1.0).values(S.MAX_STEP, 1).tolist() == [0.1]


def test_bad_rates_refused_naming_the_schedule_and_the_step():
    with pytest.raises(ValueError, match=r"ExponentialLR\(lr=0.1, gamma=0.5\) gives the learning "
                                         r"rate 0.0 at step 1073"):
        S.ExponentialLR(0.1, 0.5).values(1000, 200)  # 0.1 * 2^-1072 underflows to 0
    assert S.ExponentialLR(0.1, 0.5)(1072) > 0
    with pytest.raises(ValueError, match=r"gives the learning rate inf at step 7"):
        S.ExponentialLR(1.0, 1e300)(7)
    with pytest.raises(ValueError, match=r"CosineAnnealingLR.*0.0 at step 11.*T_max"):
        S.CosineAnnealingLR(0.1, T_max=10).values(1, 20)
    assert S.CosineAnnealingLR(0.1, T_max=10).values(1, 10)[-1] > 0
    with pytest.raises(ValueError, match=r"LambdaLR.*gives the learning rate 0.0 at step 3"):
        S.LambdaLR(0.1, lambda e: 2.0 - e).values(1, 5)
    with pytest.raises(ValueError, match=r"LambdaLR.*gives the learning rate -0.1 at step 1"):
        S.LambdaLR(0.1, lambda e: -1)(1)
    with pytest.raises(ValueError, match=r"gives the learning rate nan at step 2"):
        S.LambdaLR(0.1, lambda e: float("nan") if e == 1 else 1.0).values(1, 3)
    with pytest.raises(TypeError, match=r"fn\(0\) \(step 1\) returned str"):
        S.LambdaLR(0.1, lambda e: "1")(1)
    with pytest.raises(ValueError, match=r"no learning rate for step 101.*total_steps=100"):
        S.OneCycleLR(0.1, 100).values(90, 20)
    assert S.OneCycleLR(0.1, 100)(100) > 0
    with pytest.raises(ValueError, match=r"LinearWarmup.*its schedule's step t - 5.*at step 11"):
        S.LinearWarmup(S.CosineAnnealingLR(0.1, T_max=10), warmup_steps=5).values(1, 20)
