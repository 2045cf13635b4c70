"""The GPT model: decoder-only, pre-LayerNorm, learned positions, GELU MLP, dense or locally banded attention.

``GPT(cfg)(idx, targets, loss_mask) -> (logits [B, T, V], loss nats/token or None)``. Attention goes through
``torch.nn.functional.scaled_dot_product_attention``: ``is_causal`` for dense layers; for banded layers a
FlexAttention block mask on CUDA (skips blocks outside the band) and a boolean band mask elsewhere.
``generate`` does greedy decoding with a KV cache.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.model.config import GPTConfig
from scalinglab.model.loss import head_loss

KVCache = list[tuple[torch.Tensor, torch.Tensor] | None]


def band_mask(t_q: int, t_k: int, window: int | None, device=None) -> torch.Tensor:
    """Boolean [t_q, t_k] mask, True = may attend; queries are the last t_q of t_k positions."""
    q = torch.arange(t_k - t_q, t_k, device=device)[:, None]
    k = torch.arange(t_k, device=device)[None, :]
    keep = k <= q
    if window is not None:
        keep = keep & (k > q - window)
    return keep


class _FlexBand:
    """FlexAttention for a causal band on CUDA (block-sparse: masked blocks are skipped). Cached per shape."""

    def __init__(self) -> None:
        self._masks: dict = {}
        self._fn = None

    def __call__(self, q, k, v, window: int):
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        if self._fn is None:
            self._fn = torch.compile(flex_attention, dynamic=False)
        T = q.size(-2)
        key = (T, window, q.device)
        if key not in self._masks:

            def band(b, h, qi, ki):
                return (ki <= qi) & (ki > qi - window)

            self._masks[key] = create_block_mask(band, None, None, T, T, device=q.device)
        return self._fn(q, k, v, block_mask=self._masks[key])


_flex_band = _FlexBand()


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, window: int | None) -> None:
        super().__init__()
        self.n_head, self.head_dim, self.window = cfg.n_head, cfg.head_dim, window
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_attn, bias=cfg.bias)  # fused Q, K, V
        self.proj = nn.Linear(cfg.d_attn, cfg.d_model, bias=cfg.bias)
        self.use_flex = True

    def forward(self, x: torch.Tensor, cache: tuple | None = None, use_cache: bool = False):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        new_cache = (k, v) if use_cache else None
        Tk = k.size(2)
        if self.window is None and Tk == T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        elif self.window is not None and Tk == T and x.is_cuda and self.use_flex and T % 128 == 0:
            y = _flex_band(q, k, v, self.window)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=band_mask(T, Tk, self.window, x.device))
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)
        return self.proj(y), new_cache


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.ff, bias=cfg.bias)
        self.proj = nn.Linear(cfg.ff, cfg.d_model, bias=cfg.bias)
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x), approximate=self.approximate))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, window: int | None) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg, window)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache=None, use_cache: bool = False):
        a, new_cache = self.attn(self.ln_1(x), cache, use_cache)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, new_cache


class GPT(nn.Module):
    """GPT-2 style decoder. Init as GPT-2: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 L))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, w) for w in cfg.windows())
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Distinct parameters (a tied head counted once) = count_params(cfg)['total']."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | None = None,
        use_cache: bool = False,
        return_logits: bool = True,
    ):
        """Logits [B, T, V] for every position and, with ``targets``, the mean loss in nats/token over
        positions where ``loss_mask`` is 1 (all when None). ``use_cache``: (logits, loss, new_cache).

        ``return_logits=False`` (the trainer's call): the logits returned are None and, with ``targets`` on
        CPU in fp32 eager mode and a vocabulary of at least ``model.loss.MIN_VOCAB``, the loss comes from
        ``model.loss.linear_cross_entropy``, which never forms the [B, T, V] logits (same value and gradients
        up to float rounding; faster on CPU, O(chunk x V) memory)."""
        B, T = idx.shape
        past = 0 if not kv_cache or kv_cache[0] is None else kv_cache[0][0].size(2)
        if past + T > self.cfg.n_ctx:
            raise ValueError(f"sequence of {past + T} tokens exceeds n_ctx {self.cfg.n_ctx}")
        pos = torch.arange(past, past + T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        new_cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, c = block(x, kv_cache[i] if kv_cache else None, use_cache)
            new_cache.append(c)
        h = self.ln_f(x)
        logits, loss = head_loss(h, self.lm_head.weight, targets, loss_mask,
                                 return_logits=return_logits or use_cache)
        if not return_logits:
            logits = None
        if use_cache:
            return logits, loss, new_cache
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, eos: int | None = None) -> torch.Tensor:
        """Greedy decoding with a KV cache; returns idx with up to ``max_new_tokens`` tokens appended.

        When the sequence reaches n_ctx the cache is rebuilt over the last n_ctx tokens (sliding window).
        """
        n_ctx = self.cfg.n_ctx
        out = idx
        cond = idx[:, -n_ctx:]
        logits, _, cache = self(cond, use_cache=True)
        for _ in range(max_new_tokens):
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if eos is not None and bool((nxt == eos).all()):
                break
            if cache[0][0].size(2) + 1 > n_ctx:
                logits, _, cache = self(out[:, -n_ctx:], use_cache=True)
            else:
                logits, _, cache = self(nxt, kv_cache=cache, use_cache=True)
        return out
