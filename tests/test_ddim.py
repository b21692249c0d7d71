"""DDIM step / sample / invert against diffusers, against closed forms for Gaussian data, and the ISM schedule."""

import itertools

import pytest
import torch

from latent3d.diffusion import (
    alphas_cumprod,
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    ism_inversion_schedule,
)

diffusers = pytest.importorskip("diffusers")

pytestmark = pytest.mark.numerics  # every test here compares float results (or, for the ISM schedule, float-free ones)

KINDS = ["linear", "scaled_linear", "squaredcos_cap_v2"]
B0, B1 = 0.00085, 0.012  # SD betas


def assert_close64(ours, ref):
    """Parity with diffusers in float64 (issue 12: no float32 kernel in the comparison, so it holds on any CPU).
    Both sides evaluate the same DDIM formulas on the same float64 table (`_float64`), associated differently: each
    step rounds ~10 times (<= eps64 each) and its condition number is at most ~sqrt(abar_next / abar_t) <= 1e3 (the
    cosine schedule's last steps), over <= 25 steps: <= 25 * 10 * 1e3 * eps64 ~ 6e-11 relative to max|ref| (measured
    <= 2e-14). Bound 1e-10 * max|ref|; a mistake in eta, the variance, v-conversion, clipping or a timestep is
    >= 1e-4 off."""
    assert ours.dtype == ref.dtype == torch.float64
    torch.testing.assert_close(ours, ref, atol=1e-10 * float(ref.abs().max()), rtol=0)
# The algorithm tests below use diffusers' own (float32) alphas_cumprod table so that they compare the algorithm
# only: our float64 table differs from it by < 1e-6 absolutely (test_diffusion_schedules) but by up to ~1e-5
# *relatively* where alpha_bar ~ 1e-9 (cosine schedule at t = 999), which 1/sqrt(alpha_bar) amplifies. The SD config
# is also checked end-to-end with our own table (test_ddim_sample_sd_config_with_our_table).


def _sched(cls, kind, set_alpha_to_one, spacing, pred, steps_offset=0):
    return cls(
        num_train_timesteps=1000,
        beta_start=B0,
        beta_end=B1,
        beta_schedule=kind,
        clip_sample=False,
        set_alpha_to_one=set_alpha_to_one,
        steps_offset=steps_offset,
        prediction_type=pred,
        timestep_spacing=spacing,
    )


def _float64(sched):
    """Let diffusers do its scalar arithmetic in float64 too (its table itself stays the float32 one): this isolates
    the algorithm from float32 rounding of the coefficients, which on the cosine schedule at t = 999
    (alpha_bar ~ 2e-9) drifts by ~2e-5 over 25 steps."""
    sched.alphas_cumprod = sched.alphas_cumprod.double()
    for name in ("final_alpha_cumprod", "initial_alpha_cumprod"):
        if hasattr(sched, name):
            setattr(sched, name, getattr(sched, name).double())
    return sched


def _toy_model(x, t):  # x: [B, C, H, W], t: [B] or [] -> deterministic, t-dependent "model output"
    tt = torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1, 1, 1) / 1000
    return torch.tanh(x) * (1 - tt) + 0.3 * torch.sin(3 * x + tt)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("n,offset", [(50, 0), (50, 1), (30, 1), (7, 0), (1000, 0)])
def test_ddim_timesteps_match_diffusers(spacing, n, offset):
    s = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
    s.set_timesteps(n)
    assert torch.equal(ddim_timesteps(n, 1000, spacing, offset), s.timesteps)
    if spacing != "linspace":
        inv = diffusers.DDIMInverseScheduler(timestep_spacing=spacing, steps_offset=offset)
        inv.set_timesteps(n)
        assert torch.equal(ddim_timesteps(n, 1000, spacing, offset).flip(0), inv.timesteps)


CONFIGS = list(itertools.product(KINDS, [True, False], ["leading", "trailing"], ["epsilon", "v_prediction"]))


@pytest.mark.parametrize("kind,one,spacing,pred", CONFIGS)
@pytest.mark.parametrize("eta", [0.0, 0.7])
def test_ddim_step_matches_diffusers(kind, one, spacing, pred, eta):
    n = 20
    sched = _float64(_sched(diffusers.DDIMScheduler, kind, one, spacing, pred))
    sched.set_timesteps(n)
    ac = sched.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    for t in sched.timesteps.tolist():
        x = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
        out = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
        noise = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64)
        ref = sched.step(out, t, x, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        ours = ddim_step(x, out, ac, t, t - 1000 // n, eta, noise, pred, one)
        assert_close64(ours, ref)
    # eta must matter (guards against ignoring it)
    assert not torch.allclose(ddim_step(x, out, ac, 500, 450, 0.7, noise), ddim_step(x, out, ac, 500, 450, 0.0))


@pytest.mark.parametrize("kind,one,spacing,pred", CONFIGS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_matches_diffusers_loop(kind, one, spacing, pred, eta):
    n = 25
    sched = _float64(_sched(diffusers.DDIMScheduler, kind, one, spacing, pred))
    sched.set_timesteps(n)
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g_ref, g = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    ref = x.clone()
    for t in sched.timesteps:
        ref = sched.step(_toy_model(ref, t), t, ref, eta=eta, generator=g_ref).prev_sample
    seen = []
    ours = ddim_sample(
        _toy_model, x, ddim_timesteps(n, 1000, spacing), sched.alphas_cumprod, eta, g,
        callback=seen.append, disable=True, prediction_type=pred, set_alpha_to_one=one,
    )
    assert_close64(ours, ref)
    assert len(seen) == n and seen[-1]["t_next"] == -1 and set(seen[0]) == {"x", "i", "t", "t_next", "denoised"}


@pytest.mark.parametrize("kind,one,spacing,pred", CONFIGS)
def test_ddim_invert_matches_diffusers_inverse(kind, one, spacing, pred):
    """diffusers' DDIMInverseScheduler.step(out, t, x) moves x from t - T//n (or the clean end) *to* t, with the
    model evaluated at the current latent but labelled with the target t. That is ddim_invert(model_t="next") on
    timesteps [-1] + inv.timesteps; our default model_t="current" (LucidDreamer) labels it with the current t."""
    n = 25
    inv = _float64(_sched(diffusers.DDIMInverseScheduler, kind, one, spacing, pred))
    inv.set_timesteps(n)
    x0 = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ref = x0.clone()
    for t in inv.timesteps:
        ref = inv.step(_toy_model(ref, t), t, ref).prev_sample
    ac = inv.alphas_cumprod
    ts = [-1] + ddim_timesteps(n, 1000, spacing).flip(0).tolist()
    res = ddim_invert(_toy_model, x0, ts, ac, prediction_type=pred, set_alpha_to_one=one, model_t="next",
                      return_trajectory=True, disable=True)
    assert_close64(res.x, ref)
    assert len(res.trajectory) == n + 1 and len(res.model_outputs) == n and res.trajectory[0] is x0
    # "current" differs from "next" (it labels the model with t_i, not t_{i+1})
    cur = ddim_invert(_toy_model, res.trajectory[1], ts[1:], ac, prediction_type=pred, set_alpha_to_one=one,
                      disable=True)
    assert (cur - res.x).abs().max() > 1e-3


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_sample_sd_config_with_our_table(eta):
    """Stable Diffusion's scheduler config (scaled_linear, set_alpha_to_one=False, steps_offset=1, leading), 50 steps,
    our float64 alphas_cumprod vs diffusers' own float32 one (and its float32 square roots of it), samples in float64.

    What differs is then only diffusers' float32 table, which it computes with elementwise float32 operations and a
    sequential cumprod (no CPU-dependent reduction): relative error <= (t + 1) eps32 in the worst case, ~sqrt(t) eps32
    ~ 4e-6 in practice (test_diffusion_schedules), entering the steps through square roots (halved) of ratios that
    largely telescope. Bound 1e-5 * max|ref| (measured 4.2e-7 * max|ref| = 2.1e-5 on |ref| <= 49); a wrong steps_offset
    or set_alpha_to_one changes the samples by >= 1e-3 relatively."""
    sched = _sched(diffusers.DDIMScheduler, "scaled_linear", False, "leading", "epsilon", steps_offset=1)
    sched.set_timesteps(50)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, g_ref = x.clone(), torch.Generator().manual_seed(2)
    for t in sched.timesteps:
        ref = sched.step(_toy_model(ref, t), t, ref, eta=eta, generator=g_ref).prev_sample
    ours = ddim_sample(_toy_model, x, ddim_timesteps(50, 1000, "leading", 1), alphas_cumprod("scaled_linear"), eta,
                       torch.Generator().manual_seed(2), set_alpha_to_one=False, disable=True)
    assert ours.dtype == ref.dtype == torch.float64
    torch.testing.assert_close(ours, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


def test_ddim_step_special_cases():
    ac = alphas_cumprod("scaled_linear")
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    a = ac[400]
    x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
    # t_next = -1 with set_alpha_to_one: the predicted x0 itself (1e-12)
    torch.testing.assert_close(ddim_step(x, eps, ac, 400, -1), x0, atol=1e-12, rtol=0)
    # ... and without: re-noised to alphas_cumprod[0]
    torch.testing.assert_close(
        ddim_step(x, eps, ac, 400, -1, set_alpha_to_one=False), ac[0].sqrt() * x0 + (1 - ac[0]).sqrt() * eps
    )
    # a step to the same timestep is the identity for eta = 0
    torch.testing.assert_close(ddim_step(x, eps, ac, 400, 400), x, atol=1e-12, rtol=0)
    # eta = 1 from the clean end is the forward marginal q(x_t | x0) = sqrt(a) x0 + sqrt(1 - a) z
    z = torch.randn(3, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(ddim_step(x0, eps, ac, -1, 700, eta=1.0, noise=z), ac[700].sqrt() * x0 + (1 - ac[700]).sqrt() * z)
    # per-sample timesteps [B] equal per-sample scalar calls
    t, tn = torch.tensor([900, 500, 30]), torch.tensor([880, -1, 50])
    batched = ddim_step(x, eps, ac, t, tn, eta=0.5, noise=z)
    for i in range(3):
        one = ddim_step(x[i : i + 1], eps[i : i + 1], ac, int(t[i]), int(tn[i]), eta=0.5, noise=z[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], one, atol=1e-12, rtol=0)
    # generator-drawn noise is reproducible
    r1 = ddim_step(x, eps, ac, 400, 300, eta=1.0, generator=torch.Generator().manual_seed(5))
    r2 = ddim_step(x, eps, ac, 400, 300, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(r1, r2)


# ---------------------------------------------------------------- Gaussian data: closed forms
# Everything below runs in float64 with seeded generators: the measured values quoted in the docstrings are the same
# on every CPU to ~1e-13 (checked under ATEN_CPU_CAPABILITY=default/avx2/avx512), so the bounds are margins on the
# theory (Monte-Carlo error, O(1/n) discretisation), not on a CPU's rounding.
MU, S = 0.5, 0.5  # data x0 ~ N(MU, S^2), scalar per sample


def gaussian_eps(ac):
    """Exact eps-predictor E[eps | x_t] for x0 ~ N(MU, S^2): x_t = sqrt(a) x0 + sqrt(1-a) eps is jointly Gaussian with
    eps, Cov(eps, x_t) = sqrt(1-a), Var(x_t) = a S^2 + 1 - a, E x_t = sqrt(a) MU, hence
    eps*(x_t) = sqrt(1-a) (x_t - sqrt(a) MU) / (a S^2 + 1 - a)."""

    def model(x, t):  # x: [B, 1], t: [B]
        a = ac[t].reshape(-1, 1).to(x)
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * S**2 + 1 - a)

    return model


def test_gaussian_eps_predictor_is_the_conditional_mean():
    # Monte-Carlo check of the derivation: the residual eps - eps*(x_t) is orthogonal to 1 and to x_t.
    ac = alphas_cumprod("scaled_linear")
    model = gaussian_eps(ac)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for t in (10, 300, 900):
        x0 = MU + S * torch.randn(n, 1, generator=g, dtype=torch.float64)
        eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
        x_t = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * eps
        r = eps - model(x_t, torch.full((n,), t))
        # both moments are ~N(0, 1/n)-sized (< 5 / sqrt(n) = 0.011)
        assert abs(r.mean().item()) < 0.011 and abs((r * (x_t - x_t.mean())).mean().item()) < 0.011


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("eta,steps,tol", [(0.0, 50, 0.04), (1.0, 200, 0.03)])
def test_ddim_sampling_recovers_gaussian(kind, eta, steps, tol):
    """20000 scalars from N(0, 1), DDIM with the exact eps: mean and std of the samples within `tol` of (MU, S).
    Measured, eta=0, 50 steps: mean -0.018/-0.024/-0.009, std -0.030/-0.025/-0.011 (linear/scaled_linear/cosine;
    start N(0, 1) vs the true marginal + O(1/n) discretization; Monte-Carlo std of the mean is 0.0035);
    eta=1, 200 steps: mean +0.004..+0.006, std -0.009..-0.019."""
    ac = alphas_cumprod(kind)
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = ddim_sample(gaussian_eps(ac), x, ddim_timesteps(steps, spacing="trailing"), ac, eta=eta,
                      generator=torch.Generator().manual_seed(1), disable=True)
    print(f"{kind} eta={eta} steps={steps}: mean {out.mean().item():.4f} std {out.std().item():.4f}")
    assert abs(out.mean().item() - MU) < tol and abs(out.std().item() - S) < tol


def test_ddim_discretization_converges_first_order():
    """Started from the exact marginal at t_0, DDIM (eta = 0) keeps the mean exactly and its std error shrinks ~1/n
    (measured 0.115 / 0.031 / 0.0093 for 10 / 50 / 200 steps, trailing, scaled_linear). DDIM maps x affinely here, so
    two probe points give the whole map."""
    ac = alphas_cumprod("scaled_linear")
    errs = []
    for n in (10, 50, 200):
        ts = ddim_timesteps(n, spacing="trailing")
        a0 = ac[ts[0]]
        probe = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
        out = ddim_sample(gaussian_eps(ac), probe, ts, ac, disable=True)
        slope, offset = (out[1] - out[0]).item(), out[0].item()
        mean, std = slope * a0.sqrt() * MU + offset, abs(slope) * (a0 * S**2 + 1 - a0).sqrt()
        assert abs(mean - MU) < 1e-10
        errs.append(abs(std.item() - S))
    print("std errors 10/50/200 steps:", errs)
    assert errs[0] > 3 * errs[1] > 9 * errs[2] and errs[1] < 0.04


@pytest.mark.parametrize("model_t,bound", [("next", 0.12), ("current", 0.15)])
def test_inversion_then_sampling_round_trip(model_t, bound):
    """Invert data to t = 999 and sample back with the same timesteps (eta = 0). DDIM inversion evaluates eps at the
    other end of each step than sampling, so the round trip has an O(1/n) error: measured max |err| over 2000 samples
    of N(0.5, 0.5^2), trailing spacing: 50 steps 0.085 ("next") / 0.100 ("current"); 250 steps 0.017 / 0.030.
    The error depends on the data: ("next", 50 steps) N(0.5, 1) 0.026, N(0, 1) 0.003, N(0, 0.2^2) 0.14."""
    ac = alphas_cumprod("scaled_linear")
    model = gaussian_eps(ac)
    x0 = MU + S * torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    errs = []
    for n in (50, 250):
        ts = ddim_timesteps(n, spacing="trailing").flip(0).tolist()  # [19, 39, ..., 999] for n = 50
        if model_t == "next":  # diffusers-style: from the clean end, back to the clean end
            x_T = ddim_invert(model, x0, [-1] + ts, ac, model_t="next", disable=True)
            back = ddim_sample(model, x_T, ts[::-1], ac, disable=True)
        else:  # LucidDreamer-style: x0 taken as the latent at ts[0], back to ts[0]
            x_T = ddim_invert(model, x0, ts, ac, disable=True)
            back = ddim_sample(model, x_T, ts[::-1][:-1], ac, t_end=ts[0], disable=True)
        errs.append((back - x0).abs().max().item())
    print(f"round trip max abs error ({model_t}): 50 steps {errs[0]:.4f}, 250 steps {errs[1]:.4f}")
    assert errs[0] < bound and errs[1] < errs[0] / 2.5  # ratios measured: 5.1 ("next"), 3.3 ("current")


# ---------------------------------------------------------------- LucidDreamer ISM schedule
def _official_ism_indices(ind_t, delta_t, xs_delta_t, xs_inv_steps):
    """Transcription of the control flow of LucidDreamer's train_step + add_noise_with_cfg (guidance/sd_utils.py):
    every DDIM step (cur -> next) taken, in index space."""
    ind_prev_t = max(ind_t - delta_t, 0)
    xs_dt = xs_delta_t if xs_delta_t is not None else delta_t
    n_inv = xs_inv_steps if xs_inv_steps is not None else -(-ind_prev_t // xs_dt)
    start = max(ind_prev_t - xs_dt * n_inv, 0)
    steps = []
    for target, cur, dt, k in ((ind_prev_t, start, xs_dt, n_inv), (ind_t, ind_prev_t, delta_t, 1)):
        for _ in range(k):
            nxt = min(cur + dt, target)
            steps.append((cur, nxt))
            cur = nxt
            if cur == target:
                break
    return steps


@pytest.mark.parametrize("xs_delta_t,xs_inv_steps", [(200, 5), (None, None), (100, 3), (200, None)])
def test_ism_schedule_matches_official_control_flow(xs_delta_t, xs_inv_steps):
    for ind_t, delta_t in itertools.product(range(20, 981, 7), (80, 100, 50)):
        ours = ism_inversion_schedule(ind_t, delta_t, xs_delta_t, xs_inv_steps)
        official = [(a, b) for a, b in _official_ism_indices(ind_t, delta_t, xs_delta_t, xs_inv_steps) if a != b]
        assert list(zip(ours, ours[1:])) == official, (ind_t, delta_t)
        assert ours[-1] == ind_t and ours[-2] == max(ind_t - delta_t, 0)


def test_ism_schedule_examples_and_offset():
    assert ism_inversion_schedule(500, 100) == [0, 200, 400, 500]
    assert ism_inversion_schedule(980, 80) == [0, 200, 400, 600, 800, 900, 980]
    assert ism_inversion_schedule(60, 100) == [0, 60]
    assert ism_inversion_schedule(501, 100, steps_offset=1) == [1, 201, 401, 501]
    with pytest.raises(ValueError):
        ism_inversion_schedule(10, -1)


def test_ism_inversion_target_is_eps_at_s():
    """ISM (Liang et al. 2023, eq. 12): x_s by inversion, one more step to x_t; the target is eps(x_s, s)."""
    ac = alphas_cumprod("scaled_linear")
    ts = ism_inversion_schedule(500, 100)
    calls = []

    def model(x, t):
        calls.append(int(t[0]))
        return _toy_model(x, t)

    x0 = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = ddim_invert(model, x0, ts, ac, return_trajectory=True, disable=True)
    assert calls == [0, 200, 400]
    x_s = res.trajectory[-2]
    # the same float64 computation repeated: assert_close's float64 default (rtol 1e-7) is ~1e8 times its rounding
    torch.testing.assert_close(res.model_outputs[-1], _toy_model(x_s, torch.tensor([400])))
    torch.testing.assert_close(res.x, ddim_step(x_s, res.model_outputs[-1], ac, 400, 500))


# ---------------------------------------------------------------- guidance (used by the samplers above)
def test_cfg_and_batched_negative_guidance():
    from latent3d.diffusion import CFGModel, cfg, cfg_batched

    # float64 throughout: the guided combinations are a few roundings off, far inside assert_close's float64 default
    u, c = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([3.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(cfg(u, c, 7.5), u + 7.5 * (c - u))
    torch.testing.assert_close(cfg(u, c, 1.0), c)
    calls = []

    def model(x, t, encoder_hidden_states, bias=0.0):  # x: [B, C], emb: [B, E]
        calls.append((x.shape[0], t.tolist()))
        return x * encoder_hidden_states.sum(-1, keepdim=True) + t.reshape(-1, 1) + bias

    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.tensor([10, 20, 30])
    pos, neg = torch.randn(3, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)  # neg: batch 1, broadcast
    out = cfg_batched(model, x, t, pos, neg, 5.0, bias=0.5)
    assert calls == [(6, [10, 20, 30, 10, 20, 30])]  # one batched call: [uncond; cond]
    ref = cfg(model(x, t, neg.expand(3, 4), 0.5), model(x, t, pos, 0.5), 5.0)
    torch.testing.assert_close(out, ref)
    calls.clear()
    torch.testing.assert_close(cfg_batched(model, x, 7, pos, neg, 1.0), model(x, torch.full((3,), 7), pos))
    assert calls[0][0] == 3  # scale 1: a single un-doubled call
    # dict conditioning is concatenated key by key
    dict_model = lambda x, t, encoder_hidden_states: model(x, t, encoder_hidden_states)  # noqa: E731
    torch.testing.assert_close(
        cfg_batched(dict_model, x, t, {"encoder_hidden_states": pos}, {"encoder_hidden_states": neg}, 5.0),
        cfg_batched(model, x, t, pos, neg, 5.0),
    )
    # CFGModel plugs into ddim_sample like any model(x, t)
    ac = alphas_cumprod("scaled_linear")
    guided = CFGModel(lambda x, t, encoder_hidden_states: 0.1 * x * encoder_hidden_states.mean(), pos[:1], neg, 3.0)
    y = ddim_sample(guided, x, ddim_timesteps(5), ac, disable=True)
    assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_ddim_step_clip_sample_matches_diffusers(pred, eta):
    sched = _float64(diffusers.DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=True, clip_sample_range=1.0,
                                             prediction_type=pred))  # fmt: skip
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    clipped = 0
    for t in sched.timesteps.tolist():
        x = 2 * torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)  # large: x0 predictions leave [-1, 1]
        out = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
        noise = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
        ref = sched.step(out, t, x, eta=eta, variance_noise=noise if eta > 0 else None).prev_sample
        ours = ddim_step(x, out, sched.alphas_cumprod, t, t - 100, eta, noise, pred, True, clip_sample=1.0)
        assert_close64(ours, ref)
        clipped += int(not torch.allclose(ours, ddim_step(x, out, sched.alphas_cumprod, t, t - 100, eta, noise, pred)))
    assert clipped > 0  # the clamp was active on some steps
