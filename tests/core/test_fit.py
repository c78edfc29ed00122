"""PerSAM-F's fast fit: same optimiser as torch, the soft loss, and the proof against the exact fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persam_studio.core.personalize import fit
from persam_studio.core.personalize.persam import fit_target, segment
from tests.conftest import shared_data

OBJECTS = ("cat", "colorful_sneaker", "duck_toy")


def scaled_sam(factor: float = 100.0):
    """A tiny random SAM whose mask logits are ``factor`` x larger.

    Random decoder weights give logits of about +-0.05, on which every
    weighting of the candidates looks alike; scaling the output
    hypernetworks' last layers gives logits of a few units, like a trained
    decoder's, so the fitted weights and the masks differ visibly.
    """
    from persam_studio.core.models.sam_build import random_sam

    sam = random_sam("tiny", seed=0)
    with torch.no_grad():
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(factor)
            mlp.layers[-1].bias.mul_(factor)
    return sam


def test_optimiser_follows_torch_adamw_with_cosine_annealing():
    a = np.array([[3.0, 1.0], [1.0, 2.0]])

    def grad(ab):
        return a @ ab - np.array([0.1, -0.2]) + 0.3 * np.sin(5 * ab)

    ours, steps = fit._optimise(grad, 300, None, None)
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.float64) / 3)
    opt = torch.optim.AdamW([p], lr=fit.LR, eps=fit.EPS)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 300)
    for _ in range(300):
        opt.zero_grad()
        p.grad = torch.from_numpy(grad(p.detach().numpy()))
        opt.step()
        sched.step()
    ab = p.detach().numpy()
    assert steps == 300
    np.testing.assert_allclose(ours, [1 - ab.sum(), ab[0], ab[1]], atol=1e-6)
    assert abs(ours[1] - 1 / 3) > 0.05  # it moved


def _autograd_loss(maps: torch.Tensor, gt: np.ndarray):
    """The reference's Dice + focal loss of w, float64, for torch.autograd."""
    t = torch.from_numpy(gt.astype(np.float64))[None]

    def loss(w):
        fused = (maps.double() * w[:, None]).sum(0)[None]
        return fit.dice_loss(fused, t) + fit.focal_loss(fused, t)

    return loss


def test_closed_form_gradient_and_hessian_equal_autograds():
    rng = np.random.default_rng(5)
    maps = torch.from_numpy(rng.normal(0, 3, (3, 64 * 64)).astype(np.float32))
    gt = rng.random(64 * 64) < 0.4
    w = torch.tensor([0.5, 0.2, 0.3])
    loss = _autograd_loss(maps, gt)
    g, h = fit._FusedLoss([maps], [gt]).grad_hess(w)
    np.testing.assert_allclose(g, torch.autograd.functional.jacobian(loss, w.double()).numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(h, torch.autograd.functional.hessian(loss, w.double()).numpy(), rtol=1e-4, atol=1e-7)
    assert np.abs(h).max() > 0.1  # a curved loss, not a trivially zero Hessian
    # Weighted (soft) pixels give the gradient of the plain pass.
    cov = rng.random(64 * 64).astype(np.float32)
    soft = fit._FusedLoss.soft([maps], [cov], [2.0])
    np.testing.assert_allclose(soft.grad_hess(w)[0], soft.grad(w).numpy(), rtol=1e-5, atol=1e-9)


def test_loss_model_follows_the_per_step_trajectory_with_few_evaluations():
    """The fast fit's loss model: the same 1000-step AdamW trajectory as a gradient every step."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:96, 0:128]
    blob = ((xx - 60) / 30.0) ** 2 + ((yy - 50) / 25.0) ** 2
    gt = blob < 1
    maps = np.stack([3 - 3 * blob, 2 - 4 * blob + rng.normal(0, 1, blob.shape), 1 - 1.5 * blob])
    loss = fit._FusedLoss([torch.from_numpy(maps.reshape(3, -1).astype(np.float32))], [gt])
    every_step, _ = fit._optimise(fit._ab_grad(loss), 1000, None, None)
    model = fit._TaylorGrad(loss, fit.TAYLOR_RADIUS)
    modelled, steps = fit._optimise(model, 1000, None, None)
    assert steps == 1000 and model.centres < 100
    assert np.abs(every_step - 1 / 3).max() > 0.1  # the weights travelled
    np.testing.assert_allclose(modelled, every_step, atol=5e-5)  # 1.6e-5 measured; no Hessian: 2.6e-3


def test_soft_loss_equals_the_binary_loss_at_full_size_and_averages_coarser():
    rng = np.random.default_rng(5)
    maps = torch.from_numpy(rng.normal(0, 3, (3, 64 * 64)).astype(np.float32))
    gt = rng.random(64 * 64) < 0.4
    w = torch.tensor([0.5, 0.2, 0.3])
    binary = fit._FusedLoss([maps], [gt]).grad(w)
    soft = fit._FusedLoss.soft([maps], [gt.astype(np.float32)], [1.0]).grad(w)
    np.testing.assert_allclose(soft.numpy(), binary.numpy(), rtol=1e-5, atol=1e-9)
    # A frame pixel covering 4 full pixels of equal logits, half of them object,
    # is exactly those 4 pixels.
    coarse = torch.from_numpy(rng.normal(0, 3, (3, 100)).astype(np.float32))
    fine = coarse.repeat_interleave(4, dim=1)
    cov = rng.integers(0, 5, 100) / 4
    fine_gt = np.concatenate([[True] * int(c * 4) + [False] * (4 - int(c * 4)) for c in cov])
    np.testing.assert_allclose(fit._FusedLoss.soft([coarse], [cov.astype(np.float32)], [4.0]).grad(w).numpy(),
                               fit._FusedLoss([fine], [fine_gt]).grad(w).numpy(), rtol=1e-5, atol=1e-9)


def test_fast_frame():
    assert fit.fast_frame((3000, 4000)) == (672, 896)
    assert fit.fast_frame((300, 400)) == (300, 400)  # never upsampled


@pytest.mark.slow
@pytest.mark.parametrize("obj", OBJECTS)
def test_fast_fit_gives_the_exact_fits_weights_and_masks_on_perseg(obj):
    """The issue's proof: weights within 0.02, masks on the object's other photos IoU >= 0.99.

    One reference per object (its 00 photo, 1.6-4.2 MP) against the exact
    full-size 1000-step fit: one to two minutes per object on 2 busy cores,
    so a subset (3 of the 9 photos as references) and marked slow.

    Measured (random SAM, decoder x100, 896 px frame): max |w_fast - w_exact|
    0.0012 (cat), 0.0002 (colorful_sneaker), 0.0013 (duck_toy); mask IoU on
    the other photos >= 0.998. With each of the 9 photos as the reference
    (``python -m tests.core.perseg_fit_sweep``, ~7 minutes): worst 0.0014 and
    0.998.
    """
    from persam_studio.core.io.imageio import load_image, load_mask
    from persam_studio.core.segment.engine import Engine

    folder = shared_data("perseg-examples")
    engine = Engine(scaled_sam(), "tiny-test")
    image = load_image(folder / f"{obj}_00.jpg").pixels
    ref = [(engine.encode(image), load_mask(folder / f"{obj}_00.png", size=image.shape[:2]))]
    fast = fit_target(engine, ref, finetune=True)
    exact = fit_target(engine, ref, finetune=True, exact=True)
    assert np.abs(fast.weights - exact.weights).max() <= 0.02
    assert np.abs(exact.weights - 1 / 3).max() > 0.05  # the fit mattered
    for other in ("01", "02"):
        emb = engine.encode(load_image(folder / f"{obj}_{other}.jpg").pixels)
        a, b = segment(engine, emb, fast).mask(), segment(engine, emb, exact).mask()
        assert b.any()
        assert (a & b).sum() / (a | b).sum() >= 0.99
