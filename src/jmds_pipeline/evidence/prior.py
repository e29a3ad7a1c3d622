"""Prior precision α by maximising the Laplace log evidence over t = log α.

Per prior group g (one for ``scalar``, one per layer for ``layerwise``) the α-dependent part is

    f(α) = −½ α_g ‖θ_g‖² − ½ [log det P_g(α_g) − d_g log α_g],

concave in t = log α for an eigenbasis log det Σ log(λ + α) (f'' = −½ α‖θ‖² −
½ Σ λα/(λ+α)² < 0), so safeguarded Newton steps on t converge in a handful of iterations.
For K-FAC and diag the objective is separable across groups, so the Hessian in t is diagonal
and one double-backward gives it; the exact (``full``) log det couples groups, so the small
dense Hessian is used there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

LOG_ALPHA_BOUNDS = (-20.0, 20.0)  # α ∈ [2e-9, 5e8]: keeps a group with θ = 0 finite
MAX_STEP = 2.0


def optimise_prior(
    objective: Callable[[Tensor], Tensor],
    init: Tensor,
    steps: int = 50,
    separable: bool = True,
    tol: float = 1e-8,
) -> Tensor:
    """Maximise ``objective(α)`` over log α with Newton steps; returns α (float64)."""
    t = init.double().log().clamp(*LOG_ALPHA_BOUNDS)
    for _ in range(steps):
        t_req = t.clone().requires_grad_(True)
        f = objective(t_req.exp())
        (grad,) = torch.autograd.grad(f, t_req, create_graph=True)
        if separable:
            (hdiag,) = torch.autograd.grad(grad.sum(), t_req)
            step = torch.where(hdiag < 0, -grad.detach() / hdiag, grad.detach().sign())
        else:
            hess = torch.stack(
                [torch.autograd.grad(grad[k], t_req, retain_graph=True)[0] for k in range(len(t))]
            )
            try:
                step = -torch.linalg.solve(hess, grad.detach())
                if float(step @ grad.detach()) <= 0:  # not an ascent direction
                    step = grad.detach().sign()
            except RuntimeError:
                step = grad.detach().sign()
        step = step.clamp(-MAX_STEP, MAX_STEP)
        t_new = (t + step).clamp(*LOG_ALPHA_BOUNDS)
        # backtrack if the Newton step overshot (should not happen for concave f)
        f_old = float(f.detach())
        for _ in range(20):
            with torch.no_grad():
                if float(objective(t_new.exp())) >= f_old - 1e-12 * abs(f_old):
                    break
            t_new = 0.5 * (t + t_new)
        if float((t_new - t).abs().max()) < tol:
            t = t_new
            break
        t = t_new
    return t.exp().detach()
