"""Cross-entropy of the linear output head without the [tokens, vocab] logits tensor.

For hidden states h [N, d], head weight W [V, d] and targets t [N], the mean loss (nats/token) over the
rows with weight r_i (1/N, or mask_i / sum(mask) for a loss mask) is

    loss = sum_i r_i (logsumexp_v(h_i . W_v) - h_i . W_t_i)

and its gradient with respect to the logits of row i is r_i (softmax(h_i W^T) - onehot(t_i)), so

    dL/dh = P W,    dL/dW = P^T h,    P = [r_i (softmax_i - onehot_i)]_i.

``linear_cross_entropy`` walks the rows in chunks of about ``chunk_elems / V`` rows: each chunk's logits
are computed into one reused buffer, turned in place into its rows of P (one exp per logit) and consumed by
the two gradient GEMMs right away, in the forward pass. The plain path (``F.cross_entropy(h @ W.T)``)
allocates and walks the full logits several times: log-softmax out, its gradient, a zero-filled NLL
gradient, each a fresh [N, V] tensor. Same FLOPs (three GEMMs of N x d x V), far fewer passes over N x V
floats, and O(chunk x V) memory instead of O(N x V). Under ``torch.no_grad`` only the loss is computed.
The cost: no logits are returned, and the gradient is formed in the forward pass (``backward`` multiplies
it by the incoming gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this vocabulary the plain path is as fast (head + loss, fwd + bwd, 1 CPU thread: 0.96-0.99x at V 256,
# 1.07-1.12x at 1024, 1.16-1.18x at 16384, 1.21-1.49x at 50257), so GPT.forward keeps it there.
MIN_VOCAB = 1024
CHUNK_ELEMS = 1 << 23  # logits per chunk (32 MiB of fp32): larger chunks keep the dW update GEMM efficient


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, row_weight, chunk_rows: int, want_grad: bool):  # noqa: D102
        n = h.size(0)
        loss = torch.zeros((), dtype=torch.float32, device=h.device)
        rows = min(chunk_rows, n)
        z_buf = torch.empty(rows, weight.size(0), dtype=torch.float32, device=h.device)
        lp_buf = torch.empty_like(z_buf)
        dh = torch.empty_like(h) if want_grad else None
        dw = torch.zeros_like(weight) if want_grad else None
        for s in range(0, n, chunk_rows):
            e = min(n, s + chunk_rows)
            hc, t, r = h[s:e], targets[s:e, None], row_weight[s:e, None]
            z = torch.mm(hc, weight.t(), out=z_buf[: e - s])  # logits of this chunk
            lp = torch.log_softmax(z, dim=1, out=lp_buf[: e - s])  # fused per row (a row stays in cache)
            loss -= (lp.gather(1, t) * r).sum()
            if want_grad:  # P = r (softmax - onehot); r scales the small [c, d] operands, not [c, V]
                p = lp.exp_()
                p.scatter_add_(1, t, torch.full_like(r, -1.0))
                torch.mm(p, weight, out=dh[s:e]).mul_(r)
                dw.addmm_(p.t(), hc * r)
        ctx.save_for_backward(dh, dw)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):  # noqa: D102
        dh, dw = ctx.saved_tensors
        if dh is None:
            raise RuntimeError("linear_cross_entropy: computed under no_grad, so no gradient was formed")
        return dh * grad_loss, dw * grad_loss, None, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    *,
    chunk_elems: int = CHUNK_ELEMS,
) -> torch.Tensor:
    """Mean cross-entropy in nats/token of ``h @ weight.T`` against ``targets`` (fp32, never materialising the
    logits): over all rows, or over the rows where ``loss_mask`` is 1 (0 if none is).

    ``h``: [..., d] hidden states (flattened to rows); ``weight``: [V, d] head; ``targets``: [...] token ids.
    Equal to ``F.cross_entropy(h @ weight.T, targets)`` up to float rounding, gradients included.
    """
    d = h.size(-1)
    h2, t = h.reshape(-1, d), targets.reshape(-1)
    if loss_mask is None:
        r = torch.full((h2.size(0),), 1.0 / max(1, h2.size(0)), dtype=torch.float32, device=h.device)
    else:
        m = loss_mask.reshape(-1).to(torch.float32)
        r = m / m.sum().clamp_min(1)
    chunk_rows = max(1, chunk_elems // weight.size(0))
    want_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)  # (off inside forward)
    return _LinearCrossEntropy.apply(h2, weight, t, r, chunk_rows, want_grad)


def fused_loss_ok(h: torch.Tensor, vocab_size: int) -> bool:
    """The chunked head + loss (timed on CPU: many small chunks would be launch-bound on a GPU) runs in fp32
    eager mode from a vocabulary of ``MIN_VOCAB``; on a GPU, under autocast or torch.compile, or for a small
    vocabulary, the plain path is kept."""
    return (
        vocab_size >= MIN_VOCAB
        and h.device.type == "cpu"
        and h.dtype == torch.float32
        and not torch.is_autocast_enabled(h.device.type)
        and not torch.compiler.is_compiling()
    )


def head_loss(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor | None = None,
    loss_mask: torch.Tensor | None = None,
    *,
    return_logits: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The output head (no bias) on hidden states ``h`` [B, T, d] and, with ``targets``, the mean loss in
    nats/token over the positions where ``loss_mask`` is 1 (all when None): ``(logits [B, T, V], loss)``.

    ``return_logits=False``: the logits returned are None and, where ``fused_loss_ok``, the loss comes from
    ``linear_cross_entropy`` (never the [B, T, V] logits). Every model family ends in this one call."""
    if targets is not None and not return_logits and fused_loss_ok(h, weight.size(0)):
        return None, linear_cross_entropy(h, weight, targets, loss_mask)
    logits = F.linear(h, weight)
    loss = None
    if targets is not None:
        flat = logits.view(-1, logits.size(-1))
        if loss_mask is None:
            loss = F.cross_entropy(flat, targets.reshape(-1))
        else:
            m = loss_mask.reshape(-1).to(flat.dtype)
            per = F.cross_entropy(flat, targets.reshape(-1), reduction="none")
            loss = (per * m).sum() / m.sum().clamp_min(1)
    return (logits if return_logits else None), loss
