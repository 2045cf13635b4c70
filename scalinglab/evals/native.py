"""scalinglab checkpoints as an eval backend (``ScalingLabLM``), with batched KV-cache decoding.

``forward_with_cache`` runs the GPT's own modules with a padding mask and per-row positions, so prompts of
different lengths decode together (left padding). It equals ``GPT.forward`` on unpadded input
(tested), for dense and banded layers. The model's tokenizers have no end-of-text token: the token of
``"\\n"`` stands in for it (an empty context is conditioned on a newline).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError
from scalinglab.evals.hf import weights_hash
from scalinglab.evals.lm import TokenLM


def forward_with_cache(gpt: Any, ids: Any, mask: Any, pos: Any, cache: list | None) -> tuple[Any, list]:
    """Logits ``[B, T, V]`` for new tokens ``ids [B, T]`` at positions ``pos [B, T]``; ``mask [B, S]``
    marks real tokens among all S = cached + T tokens (0 = left padding). ``cache`` holds one (k, v) per
    layer, ``[B, heads, S - T, head_dim]``; returns the extended cache."""
    import torch
    import torch.nn.functional as F

    B, T = ids.shape
    S = mask.shape[1]
    all_pos = (mask.cumsum(1) - 1).clamp(min=0)  # [B, S] position of every token
    k_idx = torch.arange(S, device=ids.device)
    q_idx = k_idx[S - T :]
    base = (k_idx[None, None, :] <= q_idx[None, :, None]) & mask[:, None, :].bool()  # [B, T, S]
    diag = k_idx[None, None, :] == q_idx[None, :, None]  # a padded query sees itself: no empty rows
    x = gpt.wte(ids) + gpt.wpe(pos)
    new_cache = []
    for i, block in enumerate(gpt.blocks):
        attn = block.attn
        keep = base
        if attn.window is not None:
            qp, kp = all_pos[:, S - T :, None], all_pos[:, None, :]
            keep = keep & (kp > qp - attn.window)
        keep = (keep | diag)[:, None]  # [B, 1, T, S]
        h = block.ln_1(x)
        q, k, v = attn.qkv(h).view(B, T, 3, attn.n_head, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if cache is not None:
            k = torch.cat([cache[i][0], k], dim=2)
            v = torch.cat([cache[i][1], v], dim=2)
        new_cache.append((k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = x + attn.proj(y.transpose(1, 2).reshape(B, T, attn.n_head * attn.head_dim))
        x = x + block.mlp(block.ln_2(x))
    return gpt.lm_head(gpt.ln_f(x)), new_cache


class ScalingLabLM(TokenLM):
    """A scalinglab ``GPT`` and its dataset's tokenizer (``encode``/``decode``) as an ``LM``."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16, device: str = "cpu",
                 name: str = "<memory>") -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.meta: dict[str, Any] = {}  # the checkpoint's meta (data spec, ...) when loaded from a run
        self.device = device
        self.batch_size = int(batch_size)
        self.max_length = int(model.cfg.n_ctx)
        nl = tokenizer.encode("\n")
        self.eot_token_id = int(nl[0]) if nl else 0
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        self.identity = {"backend": "scalinglab", "path": name, "weights": weights_hash(model),
                         "dtype": dtype, "max_length": self.max_length}

    @classmethod
    def from_run(cls, run_dir: str | Path, **kw: Any) -> ScalingLabLM:
        """Load a trained run folder (or a ``ckpt.pt``) and the tokenizer of the dataset it trained on."""
        from scalinglab.data import ensure_dataset, open_dataset
        from scalinglab.train.checkpoint import load_model

        model, meta = load_model(run_dir)
        if meta["model"].get("arch", "gpt") != "gpt":
            raise InputError(f"{run_dir}: few-shot evaluation runs transformers; this run is an "
                             f"{meta['model']['arch']} (its losses are in the study store)")
        path = meta.get("dataset_path")
        if not path or not Path(path).is_dir():
            path = ensure_dataset(meta["data"])
        tok = open_dataset(path).tokenizer
        if getattr(tok, "kind", "") not in ("bytes", "bpe"):
            raise InputError(f"{run_dir}: the model was trained on {meta.get('domain')} data, not text")
        lm = cls(model, tok, name=str(Path(run_dir).resolve()), **kw)
        lm.meta = meta
        return lm

    def tok_encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def tok_encode_batch(self, texts):
        batch = getattr(self.tokenizer, "encode_batch", None)  # BPE: one call into `tokenizers`
        return [list(t) for t in batch(list(texts))] if batch and texts else super().tok_encode_batch(texts)

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def _logits(self, batch):
        return self.model(batch.to(self.device))[0]

    def _logits_at(self, batch, rows, cols):
        m, d = self.model, self.device
        idx = batch.to(d)
        x = m.wte(idx) + m.wpe(torch_arange(idx.size(1), d))
        for block in m.blocks:
            x, _ = block(x)
        return m.lm_head(m.ln_f(x[rows.to(d), cols.to(d)]))

    def _forward_cached(self, ids, mask, pos, cache):
        d = self.device
        return forward_with_cache(self.model, ids.to(d), mask.to(d), pos.to(d), cache)


def torch_arange(n: int, device: str):
    import torch

    return torch.arange(n, device=device)
