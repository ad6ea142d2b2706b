"""The focal loss (Lin et al., 2017), the training loss of PSE-TAE.

``FL = -(1 - p_t)^gamma * log p_t``, with ``p_t`` the softmax probability of the true
class. The factor ``(1 - p_t)^gamma`` shrinks the loss of parcels the model already
classifies well, so that training focuses on the hard ones; gamma = 0 is cross-entropy.

Which gradient
--------------
The reference implementation computes ``p_t`` from a detached copy of the logits, so its
backward pass treats ``(1 - p_t)^gamma`` as a constant: its gradient is that of a
cross-entropy whose samples are re-weighted by ``(1 - p_t)^gamma``. The exact gradient of
the formula has one more term, from the factor itself, which pushes well-classified samples
even less. By default we use the exact gradient, so that the optimiser descends the very
quantity the loss reports (as the focal loss of Lin et al. is defined);
``reference_gradient=True`` gives the reference's gradient, to reproduce its training
exactly. The loss *value* is the same either way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 1.0,
    alpha: float | torch.Tensor | None = None,
    reduction: str = "mean",
    reference_gradient: bool = False,
) -> torch.Tensor:
    """Focal loss of a batch of logits.

    Parameters
    ----------
    logits
        (B, K) unnormalised class scores.
    target
        (B,) true classes in 0..K-1 (int64).
    gamma
        Focusing parameter, >= 0; 0 gives cross-entropy.
    alpha
        Sample weights by class: ``None`` (all 1), a float (every class weighted by it)
        or a tensor (K,) of per-class weights, applied as ``alpha[target]``.
    reduction
        ``"mean"`` (plain mean over the batch, as the reference: not divided by the sum of
        the weights, unlike ``cross_entropy(weight=...)``), ``"sum"`` or ``"none"`` (B,).
    reference_gradient
        Treat ``(1 - p_t)^gamma`` as a constant in the backward pass, as the reference
        does (see the module's docstring). The value is unchanged.

    Returns
    -------
    torch.Tensor
        A scalar, or (B,) with ``reduction="none"``.

    Raises
    ------
    ValueError
        If the shapes, gamma, alpha or reduction are invalid.
    """
    if logits.dim() != 2 or target.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be (B, K) and target (B,), got {tuple(logits.shape)} and "
            f"{tuple(target.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")

    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # (B,)
    loss = -log_p  # (B,) cross-entropy
    if gamma != 0:
        # 1 - p_t, accurately for p_t near 1; clamped so that gamma < 1 keeps a finite gradient.
        one_minus_p = (-torch.expm1(log_p)).clamp(min=torch.finfo(log_p.dtype).tiny)  # (B,)
        if reference_gradient:
            one_minus_p = one_minus_p.detach()
        loss = one_minus_p.pow(gamma) * loss  # (B,)
    if alpha is not None:
        if isinstance(alpha, (int, float)):
            loss = alpha * loss
        else:
            alpha = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
            if alpha.shape != logits.shape[1:]:
                raise ValueError(
                    f"alpha must be a float or a (K,) = ({logits.shape[1]},) tensor, "
                    f"got shape {tuple(alpha.shape)}"
                )
            loss = alpha[target] * loss  # (B,)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


class FocalLoss(nn.Module):
    """Module form of :func:`focal_loss`; same parameters.

    Examples
    --------
    >>> criterion = FocalLoss(gamma=1.0)
    >>> loss = criterion(model(pixels, mask, extra), labels)  # doctest: +SKIP
    """

    def __init__(
        self,
        gamma: float = 1.0,
        alpha: float | torch.Tensor | None = None,
        reduction: str = "mean",
        reference_gradient: bool = False,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.gamma, self.reduction, self.reference_gradient = gamma, reduction, reference_gradient
        if alpha is None or isinstance(alpha, (int, float)):
            self.alpha = alpha
        else:
            # A buffer follows the module to its device and into its state dict.
            self.register_buffer("alpha", torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, K) against ``target`` (B,)."""
        return focal_loss(
            logits, target, self.gamma, self.alpha, self.reduction, self.reference_gradient
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"
