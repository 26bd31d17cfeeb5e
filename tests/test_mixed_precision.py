"""The GPU user's path, emulated on CPU (issue 18): loss-scale invariance of PN's backward,
float32 statistics under autocast, buffers that survive ``.half()``, no host syncs on the
eager path, and the step ledger (a step fairseq does not apply changes no norm state)."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pn_fairseq.norms import build_norm
from pn_fairseq.tasks.step_state import StepLedger

from conftest import padded_batch

PN_CASES = [
    dict(variant="reference", warmup_updates=2, groups=2),
    dict(variant="reference", warmup_updates=2, groups=0),
    dict(variant="paper"),
]


def _steps(n, C=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(n):
        x, mask = padded_batch(C=C, dtype=torch.float32, scale=1 + s)
        x = x + 0.1 * torch.randn(x.shape, generator=g)
        dy = torch.randn(x.shape, generator=g)
        out.append((x, mask, dy))
    return out


def _run(norm, steps, scales, log):
    """Train ``norm`` over ``steps`` with upstream gradients multiplied by ``scales[i]`` (and the
    norm told so, as the task does); return (outputs, dx / S, nu after each step)."""
    sink = []
    norm.stats_sink = (lambda n, stat, v: sink.append((stat, float(v)))) if log else None
    outs, dxs, nus = [], [], []
    for i, (x, mask, dy) in enumerate(steps):
        s = scales[i]
        norm.set_num_updates(i)
        norm.loss_scale = s
        xg = x.clone().requires_grad_()
        y = norm(xg, mask)
        y.backward(dy * s)
        norm.loss_scale = 1.0
        outs.append(y.detach())
        dxs.append(xg.grad / s)
        nus.append(norm.running_nu.clone())
    return outs, dxs, nus, sink


@pytest.mark.parametrize("impl", ["eager", "fused"])
@pytest.mark.parametrize("opts", PN_CASES)
def test_pn_backward_is_loss_scale_invariant(opts, impl):
    """Gradients x S with S in {1, 128, 65536} changing between steps: the same nu, the same
    returned gradient / S and the same logged statistics as S = 1 throughout."""
    steps = _steps(6)
    ref = _run(build_norm("power", 8, impl=impl, **opts), steps, [1.0] * 6, log=True)
    scaled = _run(build_norm("power", 8, impl=impl, **opts), steps, [1.0, 128.0, 65536.0, 128.0, 65536.0, 1.0], log=True)
    for a, b in zip(ref[2], scaled[2]):  # nu
        torch.testing.assert_close(b, a, rtol=2e-5, atol=1e-7)
    assert ref[2][-1].abs().max() > 1e-4  # nu did move
    for a, b in zip(ref[1], scaled[1]):  # dx / S
        torch.testing.assert_close(b, a, rtol=2e-5, atol=1e-6)
    for a, b in zip(ref[0], scaled[0]):
        torch.testing.assert_close(b, a, rtol=2e-5, atol=1e-6)
    assert [k for k, _ in ref[3]] == [k for k, _ in scaled[3]] and ref[3]
    for (k, a), (_, b) in zip(ref[3], scaled[3]):
        assert b == pytest.approx(a, rel=2e-5, abs=1e-9), k


@pytest.mark.parametrize("impl", ["eager", "fused"])
@pytest.mark.parametrize("name, opts", [("batch", dict(variant="paper")), ("batch", dict(variant="reference")),
                                        ("power_v", {})])
def test_gradient_statistics_are_logged_in_true_units(name, opts, impl):
    """BN / PN-V: the logged g_mu, g_sigma2, g_psi2 do not depend on the loss scale."""
    steps = _steps(3)

    def logged(scales):
        norm = build_norm(name, 8, impl=impl, **opts)
        sink = []
        norm.stats_sink = lambda n, stat, v: sink.append((stat, float(v)))
        for (x, mask, dy), s in zip(steps, scales):
            norm.loss_scale = s
            norm(x.clone().requires_grad_(), mask).backward(dy * s)
        return [kv for kv in sink if kv[0].startswith("g_")]

    ref, scaled = logged([1.0, 1.0, 1.0]), logged([1.0, 256.0, 65536.0])
    assert ref and [k for k, _ in ref] == [k for k, _ in scaled]
    for (k, a), (_, b) in zip(ref, scaled):
        assert b == pytest.approx(a, rel=1e-5), k


AUTOCAST_CASES = [("batch", dict(variant="paper")), ("batch", dict(variant="reference")), ("power_v", {}),
                  ("power", dict(variant="reference", warmup_updates=1, groups=0)), ("power", dict(variant="paper"))]


def _float64_stats(x, mask):
    """psi2_B, mu_B, sigma2_B over the real tokens, computed here in float64."""
    keep = ~mask.t().reshape(-1)
    rows = x.reshape(-1, x.shape[-1]).double()[keep]
    mu = rows.mean(0)
    return (rows * rows).mean(0), mu, ((rows - mu) ** 2).mean(0), keep.sum().item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name, opts", AUTOCAST_CASES)
def test_statistics_stay_float32_under_autocast(name, opts, dtype):
    """Channel RMS 5 over 4,096 tokens (sum of squares ~1e5 > fp16's 65504) under CPU autocast:
    the running statistics equal the float32 ones (no autocast) to 1e-6 relative and the
    float64 ones computed here to float32 accuracy, with no inf (eager path)."""
    T, B, C = 128, 32, 16
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, C, generator=g) * 5 + 0.5
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None, :] >= lengths[:, None]
    norm = build_norm(name, C, impl="eager", **opts)
    with torch.autocast("cpu", dtype=dtype):
        y = norm(x, mask)
    assert torch.isfinite(y).all()
    ref = build_norm(name, C, impl="eager", **opts)
    ref(x, mask)  # the same layer in float32 without autocast
    for k, b in ref.named_buffers():
        if b.is_floating_point():
            assert torch.isfinite(getattr(norm, k)).all(), k
            torch.testing.assert_close(getattr(norm, k), b, rtol=1e-6, atol=1e-7)
    psi2, mu, var, n = _float64_stats(x, mask)
    if name in ("power", "power_v"):
        # one step from psi2 = 1 with the EMA weight on the batch statistic (W = 1: no cumulative average)
        w = 1 - norm.alpha_fwd if name == "power" else norm.momentum
        torch.testing.assert_close(norm.running_psi2.double(), (1 - w) + w * psi2, rtol=1e-5, atol=0)
    elif opts["variant"] == "paper":
        m = norm.momentum
        torch.testing.assert_close(norm.running_mean.double(), m * mu, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(norm.running_var.double(), (1 - m) + m * var * n / (n - 1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("name, opts", [("batch", {}), ("power_v", {}), ("power", {})])
def test_half_keeps_running_buffers_exact(name, opts):
    """load_state_dict + .half() (what fairseq-generate --fp16 does): psi2/var of 1e5 and 1e-8
    survive exactly (fp16 would give inf and 0)."""
    norm = build_norm(name, 4, **opts)
    state = norm.state_dict()
    values = torch.tensor([1e5, 1e-8, 3.0, 7e4])
    for k in state:
        if k.startswith("running_"):
            state[k] = values.clone()
    norm.load_state_dict(state)
    norm.half()
    assert norm.weight.dtype == torch.float16
    for k, b in norm.named_buffers():
        if k.startswith("running_"):
            assert b.dtype == torch.float32 and torch.equal(b, values), k
    norm.to(torch.bfloat16).float()
    for k, b in norm.named_buffers():
        if k.startswith("running_"):
            assert torch.equal(b, values), k


class SyncCounter(TorchDispatchMode):
    """Counts the operators that make the host wait for the device."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "index_put_")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__ if hasattr(func, "__name__") else str(func)
        if any(name.startswith(s) for s in self.SYNCING):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name, opts", [("batch", dict(variant="paper")), ("batch", dict(variant="reference")),
                                        ("power_v", {}), ("power", dict(variant="reference", warmup_updates=1)),
                                        ("power", dict(variant="paper"))])
def test_eager_training_step_makes_no_host_sync(name, opts):
    """One training forward + backward on the eager path (the CUDA path) with padding: no
    .item(), no nonzero, no boolean-mask indexing."""
    norm = build_norm(name, 8, impl="eager", **opts)
    steps = _steps(2)
    x, mask, dy = steps[0]
    norm(x.requires_grad_(), mask).backward(dy)  # first call: PN reads its step counter once
    x, mask, dy = steps[1]
    x = x.clone().requires_grad_()
    with SyncCounter() as counter:
        norm(x, mask).backward(dy)
    assert counter.seen == []


def _model_with_norms():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), build_norm("power", 8, impl="eager", warmup_updates=1),
                                torch.nn.Linear(8, 8), build_norm("batch", 8, impl="eager", variant="paper"))
    norms = {str(i): m for i, m in enumerate(model) if hasattr(m, "capture_state")}
    return model, StepLedger(model, norms), list(norms.values())


def _state(norms):
    return [{k: b.clone() for k, b in n.named_buffers()} for n in norms]


def _same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_ledger_undoes_attempts_fairseq_throws_away():
    """An attempt whose gradients fairseq zeroed without an applied optimizer_step (fp16
    overflow, OOM) is undone at the next micro-batch or before the state is read; an AMP
    overflow (optimizer_step not applied) at once; an applied one is kept; micro-batches of one
    attempt (gradients still there) accumulate."""
    model, ledger, norms = _model_with_norms()
    x = torch.randn(5, 8) * 3

    def micro_batch(scale=1.0):
        ledger.begin_micro_batch(model)
        model(x * scale).sum().backward()

    start = _state(norms)
    micro_batch()
    micro_batch(2.0)  # second micro-batch of the same attempt
    assert int(norms[0].num_batches_tracked) == 2
    ledger.end_attempt(applied=True)
    applied = _state(norms)
    assert not _same(applied, start)

    model.zero_grad(set_to_none=True)  # fairseq's zero_grad: a new attempt
    micro_batch(float("inf"))  # an overflowing step: the norms skip its non-finite statistics and count them
    assert int(norms[0].nonfinite_skips) == 2 and int(norms[1].nonfinite_skips) == 1  # PN: forward and backward
    model.zero_grad(set_to_none=True)  # fairseq skips it (OverflowError) and zeroes the gradients
    ledger.settle()  # a checkpoint is written now
    assert _same(_state(norms), applied)
    assert norms[0].k == 2  # the host-side counter was put back too

    micro_batch(3.0)  # AMP: optimizer_step is called, GradScaler skipped the step
    ledger.end_attempt(applied=False)
    assert _same(_state(norms), applied)

    model.zero_grad(set_to_none=True)
    micro_batch(3.0)
    model.zero_grad(set_to_none=True)  # OOM in the update's last micro-batch, or an fp16 overflow
    micro_batch(1.0)  # the next attempt starts: the thrown-away one is undone first
    assert int(norms[0].num_batches_tracked) == 3 and norms[0].k == 3


class _AmpScaler:
    """torch's GradScaler as fairseq's AMPOptimizer uses it: step() skips on inf and halves."""

    def __init__(self, overflow):
        self.scale, self.overflow = 1024.0, overflow

    def get_scale(self):
        return self.scale


class _AmpOptimizer:
    def __init__(self, overflow):
        self.scaler = _AmpScaler(overflow)

    def step(self):
        if self.scaler.overflow:
            self.scaler.scale /= 2


@pytest.mark.parametrize("overflow", [False, True])
def test_amp_overflow_in_optimizer_step_is_undone(overflow):
    """Under --amp fairseq calls the task's optimizer_step for an overflowed step too (torch's
    GradScaler skips it and lowers its scale): the task undoes that attempt, keeps an applied one."""
    from pn_fairseq.tasks import TranslationPNTask

    model, ledger, norms = _model_with_norms()
    model._step_ledger = ledger
    before = _state(norms)
    ledger.begin_micro_batch(model)
    model(torch.randn(5, 8)).sum().backward()
    moved = _state(norms)
    task = object.__new__(TranslationPNTask)  # optimizer_step needs nothing of the task's state
    task.optimizer_step(_AmpOptimizer(overflow), model, update_num=0)
    assert _same(_state(norms), before if overflow else moved)
    assert not _same(moved, before)


def test_divergence_on_one_worker_stops_every_worker():
    """reduce_metrics sees every worker's logging outputs (fairseq all-reduces them): a
    non-finite count from any worker raises the same one-line error on each."""
    from fairseq.tasks.translation import TranslationConfig

    from pn_fairseq.hooks.errors import NormDivergence
    from pn_fairseq.tasks import TranslationPNTask

    class Criterion:
        @staticmethod
        def reduce_metrics(logging_outputs):
            pass

    task = object.__new__(TranslationPNTask)
    task.cfg = TranslationConfig()  # what fairseq's reduce_metrics reads (eval_bleu off)
    logs = [{"ntokens": 5, "nsentences": 1, "pn_nonfinite": torch.tensor(0)},
            {"ntokens": 5, "nsentences": 1, "pn_nonfinite": torch.tensor(0)}]
    task.reduce_metrics(logs, Criterion())  # all finite: nothing happens
    logs[1]["pn_nonfinite"] = torch.tensor(1)
    with pytest.raises(NormDivergence, match="training diverged at update .*another worker"):
        task.reduce_metrics(logs, Criterion())


def test_fully_sharded_backend_is_refused_in_one_line(data_bin):
    from fairseq import options, tasks

    from conftest import REPO
    from pn_fairseq.hooks.errors import PNUserError

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data_bin), "--user-dir", str(REPO / "pn_fairseq"), "--task",
                                                "translation_pn", "--arch", "transformer_pn", "--cpu"])
    args.ddp_backend = "fully_sharded"
    task = tasks.setup_task(args)
    with pytest.raises(PNUserError, match="fully_sharded .* use --ddp-backend c10d"):
        task.build_model(args)


def test_nonfinite_count_is_reported_even_when_nothing_moved():
    """Every worker's logging output carries the key (fairseq's fast stat sync all-reduces the
    keys of each worker's outputs): 0 after a micro-batch that moved nothing (a dummy batch),
    the number of non-finite buffers otherwise."""
    model, ledger, norms = _model_with_norms()
    assert int(ledger.pop_nonfinite()) == 0  # no flags at all
    ledger.begin_micro_batch(model)
    model(torch.randn(5, 8)).sum().backward()
    assert int(ledger.pop_nonfinite()) == 0
    with torch.no_grad():
        norms[0].running_psi2[0] = float("inf")  # a statistic that has overflowed stays inf
        norms[1].running_var[1] = float("nan")
    model(torch.randn(5, 8)).sum().backward()
    assert int(ledger.pop_nonfinite()) == 2
