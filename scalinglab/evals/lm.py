"""The language-model interface for evals (the lm-evaluation-harness contract) and a batched token engine.

Three request types, each taking a list of requests and returning one result per request, in order:

- ``loglikelihood([(context, continuation), ...]) -> [LogLik(logprob, is_greedy), ...]``: the summed
  log-probability (nats) of the continuation given the context, and whether the continuation is the greedy
  decode of the same length. Trailing whitespace of the context moves to the start of the continuation;
  context and continuation are tokenised together, then split (so a BPE merge across the boundary is
  counted in the continuation). An empty context is conditioned on the end-of-text token.
- ``loglikelihood_rolling([text, ...]) -> [logprob, ...]``: log-probability (nats) of the whole text
  conditioned only on end-of-text, in windows of the model's context length with one token of overlap.
- ``generate_until([(context, until, max_tokens), ...]) -> [str, ...]``: greedy decode, stopped at the
  first stop string (cut off) or after ``max_tokens`` tokens.

``TokenLM`` implements all three for any causal model that can return logits for a right-padded batch:
requests are deduplicated, sorted by descending length, batched, and restored to the original order.
A backend implements ``tok_encode``, ``tok_decode``, ``_logits`` and ``_forward_cached`` (KV cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from scalinglab.errors import InputError

GenRequest = tuple[str, Sequence[str], int]


class LogLik(tuple):
    """``(logprob, is_greedy)`` as the harness returns it, plus ``n_tokens`` (continuation tokens)."""

    def __new__(cls, logprob: float, is_greedy: bool, n_tokens: int = 0) -> LogLik:
        self = super().__new__(cls, (float(logprob), bool(is_greedy)))
        self.n_tokens = int(n_tokens)
        return self

    @property
    def logprob(self) -> float:
        return self[0]

    @property
    def is_greedy(self) -> bool:
        return self[1]

    def __reduce__(self):  # pickle/copy keep n_tokens
        return (LogLik, (self[0], self[1], self.n_tokens))


@runtime_checkable
class LM(Protocol):
    """What a scorer needs from a model. ``identity`` names the model for the cache (path, weights, dtype)."""

    identity: dict[str, Any]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LogLik]: ...

    def loglikelihood_rolling(self, requests: Sequence[str]) -> list[float]: ...

    def generate_until(self, requests: Sequence[GenRequest]) -> list[str]: ...


def split_whitespace(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the start of the continuation (the harness's rule)."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def rolling_windows(tokens: list[int], eot: int, max_length: int) -> list[tuple[list[int], list[int]]]:
    """Split ``tokens`` into ``(context, target)`` pairs that predict every token once, each fitting
    ``max_length``. The first window is conditioned on ``eot``; later ones overlap the last by one token."""
    full = [eot] + list(tokens)
    out = []
    start = 0
    while start < len(tokens):
        end = min(start + max_length, len(tokens))
        lo = max(0, end - max_length)  # model input is full[lo:end]
        out.append((full[lo : start + 1], full[start + 1 : end + 1]))
        start = end
    return out


class TokenLM:
    """Batched request engine over a token-level causal model (subclass and implement the backend hooks).

    ``batch_size`` bounds the sequences per forward pass; ``max_length`` is the context length in tokens.
    Log-probabilities are computed in float32 from the model's logits (``log_softmax``), in nats.
    """

    batch_size: int = 16
    max_length: int = 1024
    eot_token_id: int = 0
    identity: dict[str, Any] = {}
    greedy_generation = True  # generate_until is deterministic (greedy): safe to cache

    # --- backend hooks -------------------------------------------------------------------------------
    def tok_encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def tok_decode(self, tokens: Sequence[int]) -> str:
        raise NotImplementedError

    def tok_encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``tok_encode`` of each text; a backend whose tokenizer encodes a list at once overrides this (one
        call into a fast tokenizer per text costs more than the encoding)."""
        return [self.tok_encode(t) for t in texts]

    def _logits(self, batch: Any) -> Any:
        """Logits ``[B, T, V]`` for a right-padded ``LongTensor [B, T]`` (padding after the real tokens)."""
        raise NotImplementedError

    def _logits_at(self, batch: Any, rows: Any, cols: Any) -> Any:
        """Logits ``[M, V]`` at positions ``(rows[m], cols[m])`` of a right-padded batch. Backends that can
        apply the output layer to the selected positions only override this (the vocabulary projection is
        most of the compute of a small model with a large vocabulary)."""
        return self._logits(batch)[rows, cols]

    def _forward_cached(self, ids: Any, mask: Any, pos: Any, cache: Any) -> tuple[Any, Any]:
        """One step of cached decoding: ``ids [B, T]`` new tokens, ``mask [B, S]`` (1 = real token) over
        all tokens so far (cached + new), ``pos [B, T]`` their positions; return (logits ``[B, T, V]``,
        new cache).
        ``cache`` is None on the first call (the left-padded prompts)."""
        raise NotImplementedError

    # --- tokenisation of a request ------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation) by the harness's rule (whitespace move, joint encoding)."""
        return self.encode_pairs([(context, continuation)])[0]

    def encode_pairs(self, requests: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        """``encode_pair`` of every request, with every text encoded in one ``tok_encode_batch`` call: an
        empty context is the end-of-text token and the continuation is encoded alone; otherwise the
        context's trailing whitespace moves to the continuation, context and context + continuation are
        encoded, and the continuation is what the joint encoding adds."""
        texts: list[str] = []
        for context, continuation in requests:
            if context == "":
                texts.append(continuation)
            else:
                context, continuation = split_whitespace(context, continuation)
                texts += [context + continuation, context]
        enc = iter(self.tok_encode_batch(texts))
        out = []
        for context, _ in requests:
            if context == "":
                cont = next(enc)
                if not cont:
                    raise InputError("loglikelihood request with an empty continuation")
                out.append(([self.eot_token_id], cont))
                continue
            whole, ctx = next(enc), next(enc)
            cont = whole[len(ctx) :]
            if not cont:
                raise InputError(f"loglikelihood request with an empty continuation (context "
                                 f"{context.rstrip()[-40:]!r})")
            out.append((ctx or [self.eot_token_id], cont))
        return out

    # --- request types --------------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[LogLik]:
        return self.loglikelihood_tokens(self.encode_pairs(requests))

    def loglikelihood_rolling(self, requests: Sequence[str]) -> list[float]:
        windows: list[tuple[list[int], list[int]]] = []
        owner: list[int] = []
        for i, toks in enumerate(self.tok_encode_batch(requests)):
            for w in rolling_windows(toks, self.eot_token_id, self.max_length):
                windows.append(w)
                owner.append(i)
        scores = self.loglikelihood_tokens(windows)
        totals = [0.0] * len(requests)
        for i, s in zip(owner, scores, strict=True):
            totals[i] += s.logprob
        return totals

    def loglikelihood_tokens(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[LogLik]:
        """Score token-level (context, continuation) pairs: deduplicate, sort by length, batch, restore."""
        import torch

        keys = [(tuple(c), tuple(x)) for c, x in pairs]
        unique = list(dict.fromkeys(keys))
        # longest first: the first batch shows the peak memory at once, padding within a batch is small
        order = sorted(range(len(unique)), key=lambda i: (-sum(map(len, unique[i])), unique[i]))
        results: dict[tuple, LogLik] = {}
        for b in range(0, len(order), self.batch_size):
            chunk = [unique[i] for i in order[b : b + self.batch_size]]
            inputs, spans = [], []
            for ctx, cont in chunk:
                if len(cont) > self.max_length:
                    raise InputError(f"a continuation of {len(cont)} tokens does not fit the model's context "
                                     f"of {self.max_length} tokens")
                seq = (list(ctx) + list(cont))[-(self.max_length + 1) :][:-1]
                inputs.append(seq)
                spans.append((len(seq) - len(cont), len(cont)))
            width = max(len(s) for s in inputs)
            batch = torch.full((len(inputs), width), self.eot_token_id, dtype=torch.long)
            for r, seq in enumerate(inputs):
                batch[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            # only the continuation positions go through the output layer and log_softmax
            rows = torch.cat([torch.full((n,), r, dtype=torch.long) for r, (_, n) in enumerate(spans)])
            cols = torch.cat([torch.arange(start, start + n) for start, n in spans])
            targets = torch.tensor([t for _, cont in chunk for t in cont], dtype=torch.long)
            with torch.no_grad():
                lp = torch.log_softmax(self._logits_at(batch, rows, cols).float(), dim=-1).cpu()
            tok_lp = lp.gather(-1, targets[:, None])[:, 0].tolist()
            hit = (lp.argmax(-1) == targets).tolist()
            at = 0
            for (ctx, cont), (_, n) in zip(chunk, spans, strict=True):
                results[(ctx, cont)] = LogLik(sum(tok_lp[at : at + n]), all(hit[at : at + n]), n)
                at += n
        return [results[k] for k in keys]

    def generate_until(self, requests: Sequence[GenRequest]) -> list[str]:
        """Greedy decoding with a KV cache, batched (left padding); requests are processed longest first,
        identical requests once, and returned in the original order."""
        keys = []
        for ctx, until, max_tokens in requests:
            toks = self.tok_encode(ctx) or [self.eot_token_id]
            stops = (until,) if isinstance(until, str) else tuple(until)  # one stop string, or several
            keys.append((tuple(toks), stops, int(max_tokens)))
        unique = list(dict.fromkeys(keys))
        # batches of one max_tokens: each request's context is cut to max_length - its own budget, as when
        # it is generated alone (a batch-wide cut would make the output depend on the batch)
        order = sorted(range(len(unique)), key=lambda i: (unique[i][2], -len(unique[i][0]), unique[i]))
        memo: dict[tuple, str] = {}
        b = 0
        while b < len(order):
            m = unique[order[b]][2]
            chunk = [unique[i] for i in order[b : b + self.batch_size] if unique[i][2] == m]
            for key, text in zip(chunk, self._greedy_batch(chunk), strict=True):
                memo[key] = text
            b += len(chunk)
        return [memo[k] for k in keys]

    def _greedy_batch(self, chunk: list[tuple[tuple[int, ...], tuple[str, ...], int]]) -> list[str]:
        import torch

        budgets = [max(1, min(m, self.max_length - 1)) for _, _, m in chunk]
        room = self.max_length - max(budgets)
        ctxs = [list(c)[-room:] for c, _, _ in chunk]
        width = max(len(c) for c in ctxs)
        B = len(chunk)
        ids = torch.full((B, width), self.eot_token_id, dtype=torch.long)
        mask = torch.zeros((B, width), dtype=torch.long)
        for r, c in enumerate(ctxs):
            ids[r, width - len(c) :] = torch.tensor(c, dtype=torch.long)
            mask[r, width - len(c) :] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        gen: list[list[int]] = [[] for _ in range(B)]
        texts = [""] * B
        done = [False] * B
        with torch.no_grad():
            logits, cache = self._forward_cached(ids, mask, pos, None)
            for _ in range(max(budgets)):
                nxt = logits[:, -1].argmax(-1)
                for r in range(B):
                    if done[r]:
                        continue
                    gen[r].append(int(nxt[r]))
                    texts[r] = self.tok_decode(gen[r])
                    cut = _first_stop(texts[r], list(chunk[r][1]))
                    if cut is not None:
                        texts[r], done[r] = texts[r][:cut], True
                    elif len(gen[r]) >= budgets[r]:
                        done[r] = True
                if all(done):
                    break
                mask = torch.cat([mask, torch.ones((B, 1), dtype=torch.long)], 1)
                pos = pos[:, -1:] + 1
                logits, cache = self._forward_cached(nxt[:, None], mask, pos, cache)
        return texts


def _first_stop(text: str, until: list[str]) -> int | None:
    hits = [text.find(s) for s in until if s and s in text]
    return min(hits) if hits else None
