"""ES-WMV / ES-EMV: exact statistics on synthetic sequences, and the callback on a real fit."""
import json

import numpy as np
import pytest
import torch

from dip_lightning.callbacks.stopping import VarianceTracker
from dip_lightning.run import run
from conftest import QUIET, TINY_NET


def sequence(n=400, t0=150, seed=0):
    """Images whose step-to-step jitter shrinks towards t0 and grows after it."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 8, 9, generator=g)
    amps = 0.02 + 0.5 * np.abs(np.arange(1, n + 1) - t0) / n
    return [base + a * torch.randn(base.shape, generator=g) for a in amps]


def brute_wmv(xs, window):
    out = []
    for t in range(len(xs)):
        if t + 1 < window:
            out.append(np.inf)
            continue
        w = torch.stack(xs[t + 1 - window:t + 1]).double()
        out.append(((w - w.mean(0)) ** 2).sum().item() / (window * xs[0].numel()))
    return np.array(out)


def brute_emv(xs, alpha, warmup):
    mu, var, out = xs[0].double().clone(), 0.0, []
    for t, x in enumerate(xs):
        d = x.double() - mu
        mu = mu + alpha * d
        var = (1 - alpha) * (var + alpha * (d * d).sum().item() / x.numel())
        out.append(var if t + 1 >= warmup else np.inf)
    return np.array(out)


@pytest.mark.parametrize("method", ["wmv", "emv"])
def test_running_statistics_equal_brute_force_and_find_the_minimum(method):
    xs = sequence()
    tr = VarianceTracker(method, window=20, alpha=0.1)
    got = np.array([np.inf if (v := tr.update(x)) is None else v.item() for x in xs])
    want = brute_wmv(xs, 20) if method == "wmv" else brute_emv(xs, 0.1, 20)
    finite = np.isfinite(want)
    assert np.array_equal(np.isfinite(got), finite)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6)
    t_min = int(np.argmin(got)) + 1
    assert 150 <= t_min <= 150 + 20, t_min  # the jitter minimum at 150, seen through the window


class FakeModule:
    def __init__(self):
        self.img = None
        self.device = torch.device("cpu")

    def final_image(self, estimate=True):
        return self.img


class FakeTrainer:
    should_stop = False
    global_step = 0


@pytest.mark.parametrize("mode", ["stop", "mark"])
def test_callback_detects_after_patience_and_keeps_the_minimum_image(mode):
    from dip_lightning.callbacks import EarlyStopping

    xs = sequence()
    cb = EarlyStopping("wmv", window=20, patience=60, mode=mode, check_every=10)
    tr, mod = FakeTrainer(), FakeModule()
    want = brute_wmv(xs, 20)
    stopped_at = None
    for step, x in enumerate(xs, 1):
        tr.global_step, mod.img = step, x
        cb.on_train_batch_end(tr, mod, None, step - 1, step - 1)
        if tr.should_stop and stopped_at is None:
            stopped_at = step
    expected = int(np.argmin(want)) + 1
    assert cb.result()["es_step"] == expected and cb.result()["es_detected"]
    assert torch.equal(cb.image, xs[expected - 1])
    if mode == "stop":
        assert stopped_at is not None and expected + 60 <= stopped_at < expected + 60 + 10
    else:
        assert stopped_at is None
    assert cb.tracker.state == {} and cb.state_dict()["tracker_state"] == {}  # the window is freed once detected


def test_early_stopping_on_a_real_fit(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(24, 24, 3)}", "iters=300", "input.depth=4", "es=wmv", "es.window=5",
                      "es.patience=5", "es.mode=stop", "es.check_every=5", "optim.lr=0.05", *QUIET, *TINY_NET)
    res = run(cfg)
    m = json.loads((res["output_dir"] / "metrics.json").read_text())
    assert m["status"] == "early_stopped" and m["iters_done"] < 300
    assert m["es_detected"] and 5 <= m["es_step"] < m["iters_done"]
    assert m["es_psnr"] is not None and m["es_gap"] == pytest.approx(m["psnr_best"] - m["es_psnr"], abs=1e-3)
    assert (res["output_dir"] / "restored_es.png").is_file()


def test_mark_mode_runs_to_the_end_and_reports(compose_cfg, image_file):
    cfg = compose_cfg(f"image={image_file(24, 24, 1)}", "iters=40", "input.depth=4", "es=emv", "es.window=5",
                      "es.patience=10", "es.check_every=5", *QUIET, *TINY_NET)
    m = run(cfg)["metrics"]
    assert m["status"] == "completed" and m["iters_done"] == 40
    assert m["es_method"] == "emv" and m["es_step"] is not None and m["es_gap"] is not None
