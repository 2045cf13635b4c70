"""The LSTM language model of Kaplan et al. 2020 Fig. 7: the second model family, trained by the same trainer.

``LSTMLM(cfg)(idx, targets, loss_mask) -> (logits [B, T, V], loss nats/token or None)``, the GPT's call: token
embedding (d_model) -> ``torch.nn.LSTM`` with ``n_layer`` layers of hidden size d_model (batch first, zero
initial state per sequence) -> a final LayerNorm (no bias, as the GPT's ``ln_f``) -> the output head, tied to
the embedding or not, through the same ``model.loss.head_loss`` as the GPT (so the trainer's loss, the chunked
CPU path included, is one code path). The two families thus share the embedding, final norm and head and
differ only in the body. Without the norm, a tied head on the LSTM's tanh-bounded outputs learns slowly
(byte-level corpus, d 64, Adam 3e-3, 300 steps: 2.94 nats/token without, 2.17 with).
Parameter and FLOP counts: ``scalinglab.model.counting`` (``count_params(LSTMConfig)`` = ``sum(p.numel())``).

Init: embedding (and a separate head) N(0, 0.02) as the GPT; LSTM weights torch's default U(-1/sqrt(d),
1/sqrt(d)); the forget-gate bias of ``bias_ih`` set to 1 (Gers et al. 2000; Jozefowicz et al. 2015), so a
fresh cell remembers rather than forgets.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from scalinglab.model.config import LSTMConfig
from scalinglab.model.loss import head_loss

State = tuple[torch.Tensor, torch.Tensor]


class LSTMLM(nn.Module):
    """A multi-layer LSTM LM; ``forward`` matches ``GPT.forward`` (plus ``state``/``return_state``)."""

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.wte = nn.Embedding(cfg.vocab_size, d)
        self.lstm = nn.LSTM(d, d, num_layers=cfg.n_layer, batch_first=True)
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        nn.init.normal_(self.wte.weight, mean=0.0, std=0.02)
        if cfg.tied:
            self.lm_head.weight = self.wte.weight
        else:
            nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.02)
        with torch.no_grad():
            for layer in range(cfg.n_layer):  # gates are [input, forget, cell, output] blocks of d rows
                getattr(self.lstm, f"bias_ih_l{layer}")[d : 2 * d].fill_(1.0)
                getattr(self.lstm, f"bias_hh_l{layer}")[d : 2 * d].zero_()

    def num_params(self) -> int:
        """Distinct parameters (a tied head counted once) = count_params(cfg)['total']."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        return_logits: bool = True,
        state: State | None = None,
        return_state: bool = False,
    ):
        """Logits [B, T, V] and, with ``targets``, the mean loss in nats/token where ``loss_mask`` is 1.
        ``state``: the (h, c) [n_layer, B, d] to continue from (None: zeros); ``return_state``: also return
        the final state, ``(logits, loss, state)``."""
        h, new_state = self.lstm(self.wte(idx), state)
        logits, loss = head_loss(self.ln_f(h), self.lm_head.weight, targets, loss_mask,
                                 return_logits=return_logits)
        if return_state:
            return logits, loss, new_state
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, eos: int | None = None) -> torch.Tensor:
        """Greedy decoding carrying the recurrent state: idx with up to ``max_new_tokens`` appended."""
        logits, _, state = self(idx, return_state=True)
        out = idx
        for _ in range(max_new_tokens):
            nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
            if eos is not None and bool((nxt == eos).all()):
                break
            logits, _, state = self(nxt, state=state, return_state=True)
        return out


def build_model(cfg) -> nn.Module:
    """The torch module of a model config: ``GPT`` for a ``GPTConfig``, ``LSTMLM`` for an ``LSTMConfig``."""
    if isinstance(cfg, LSTMConfig):
        return LSTMLM(cfg)
    from scalinglab.model.gpt import GPT

    return GPT(cfg)
