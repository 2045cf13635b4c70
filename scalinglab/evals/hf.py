"""Hugging Face ``transformers`` causal LMs as an eval backend, and a local byte-level HF tokenizer.

Nothing here downloads: ``HFLM.from_pretrained(path)`` reads a local directory only
(``local_files_only=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scalinglab.errors import InputError
from scalinglab.evals.lm import TokenLM

EOT = "<|endoftext|>"
# architectures whose logits are exactly output_embeddings(base_model(...).last_hidden_state): for these the
# output layer is applied at the scored positions only (no logit scaling or soft-capping after the head)
_HEAD_ONLY_AT_END = {"gpt2", "gpt_neox", "gptj", "llama", "mistral", "qwen2"}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(keep, chars, strict=True)}


def byte_tokenizer(eot_id: int = 256):
    """A ``PreTrainedTokenizerFast`` whose token id is the UTF-8 byte value (0-255) and ``eot_id`` is
    ``<|endoftext|>``: the same ids as a raw byte tokenizer, readable by any ``transformers`` tool."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOT])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOT, bos_token=EOT, unk_token=EOT)
    if fast.convert_tokens_to_ids(EOT) != eot_id:
        got = fast.convert_tokens_to_ids(EOT)
        raise InputError(f"byte tokenizer: end-of-text got id {got}, want {eot_id}")
    return fast


def weights_hash(module: Any) -> str:
    """sha256 (first 16 hex digits) of a module's parameters and buffers (names, dtypes, shapes, bytes)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(dtype=_byte_dtype()).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _byte_dtype():
    import torch

    return torch.uint8


def _load_causal_lm(auto: Any, path: Path, dtype: Any) -> Any:
    """``from_pretrained`` with the weights' dtype: ``dtype=`` (current releases), ``torch_dtype=`` in the
    4.x releases before it (which pass an unknown ``dtype`` on to the model's constructor)."""
    try:
        return auto.from_pretrained(path, local_files_only=True, dtype=dtype)
    except TypeError as e:
        if "dtype" not in str(e):
            raise
        return auto.from_pretrained(path, local_files_only=True, torch_dtype=dtype)


def cache_keyword(model: Any) -> str:
    """The keyword a model's ``forward`` takes its KV cache by: ``cache`` (transformers 5.x, where
    ``past_key_values`` is deprecated) or ``past_key_values`` (4.x). The output attribute has the same
    name."""
    import inspect

    try:
        names = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
        names = {}
    return "cache" if "cache" in names else "past_key_values"


class HFLM(TokenLM):
    """A ``transformers`` causal LM (``AutoModelForCausalLM``) with its tokenizer, in eval mode.

    ``batch_size`` sequences per forward pass; ``max_length`` defaults to the config's ``n_positions``
    (or ``max_position_embeddings``, else 2048).
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 16, device: str = "cpu",
                 max_length: int | None = None, name: str | None = None) -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = int(batch_size)
        cfg = model.config
        self.max_length = int(max_length or getattr(cfg, "n_positions", None)
                              or getattr(cfg, "max_position_embeddings", None) or 2048)
        eot = tokenizer.eos_token_id
        self.eot_token_id = int(eot if eot is not None else getattr(cfg, "eos_token_id", 0) or 0)
        self._cache_kw = cache_keyword(model)
        dtype = str(next(model.parameters()).dtype).replace("torch.", "")
        self.identity = {"backend": "hf", "path": name or getattr(cfg, "_name_or_path", "") or "<memory>",
                         "weights": weights_hash(model), "dtype": dtype, "max_length": self.max_length}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: str = "float32", **kw: Any) -> HFLM:
        """Load model and tokenizer from a local directory (no download)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise InputError(f"{path}: not a Hugging Face model directory (no config.json)")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            model = _load_causal_lm(AutoModelForCausalLM, path, getattr(torch, dtype))
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:  # a broken config.json, missing weights or tokenizer
            msg = (str(e).strip().splitlines() or [""])[0][:200]
            raise InputError(
                f"{path}: cannot load the Hugging Face model ({type(e).__name__}: {msg})"
            ) from None
        return cls(model, tokenizer, name=str(path.resolve()), **kw)

    def tok_encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def tok_encode_batch(self, texts):
        if not texts:
            return []
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    def _logits(self, batch):
        return self.model(batch.to(self.device)).logits

    def _logits_at(self, batch, rows, cols):
        if self.model.config.model_type not in _HEAD_ONLY_AT_END:
            return super()._logits_at(batch, rows, cols)
        hidden = self.model.base_model(batch.to(self.device)).last_hidden_state
        return self.model.get_output_embeddings()(hidden[rows.to(self.device), cols.to(self.device)])

    def _forward_cached(self, ids, mask, pos, cache):
        dev = self.device
        kw = {self._cache_kw: cache}
        out = self.model(ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True,
                         **kw)
        return out.logits, (out.cache if self._cache_kw == "cache" else out.past_key_values)
