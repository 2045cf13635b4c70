"""Tokenizers for text: raw bytes (vocab 256) and byte-level BPE trained locally with Hugging Face
``tokenizers``. Both round-trip any Unicode string exactly: ``decode(encode(s)) == s``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from scalinglab.errors import ConfigError, InputError


class ByteTokenizer:
    """One token per UTF-8 byte (vocab 256). Accepts any bytes, so non-UTF-8 input is never an error."""

    kind = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_bytes(self, data: bytes) -> np.ndarray:
        return np.frombuffer(data, dtype=np.uint8)

    def decode(self, ids) -> str:
        """Text of the tokens; a byte sequence that is not UTF-8 (e.g. a cut character) becomes U+FFFD."""
        return bytes(np.asarray(ids, dtype=np.uint8).tobytes()).decode("utf-8", errors="replace")

    def decode_bytes(self, ids) -> bytes:
        return np.asarray(ids, dtype=np.uint8).tobytes()

    @property
    def fingerprint(self) -> str:
        return "bytes"


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation, no normaliser) backed by a ``tokenizers.Tokenizer``."""

    kind = "bpe"

    def __init__(self, tok) -> None:
        self._tok = tok
        self.vocab_size = tok.get_vocab_size()
        self.fingerprint = hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]

    @classmethod
    def train(cls, texts: list[str], vocab_size: int, min_frequency: int = 2) -> BPETokenizer:
        """Train on ``texts`` (strings); ``vocab_size`` counts the 256 byte symbols."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ConfigError(f"BPE vocab_size={vocab_size}: must be > 256 (the byte alphabet); "
                              "use tokenizer=bytes for 256")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: Path) -> None:
        Path(path).write_text(self._tok.to_str())

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def decode_bytes(self, ids) -> bytes:
        return self.decode(ids).encode("utf-8")


def decode_utf8(data: bytes, origin: str) -> str:
    """Strict UTF-8 decoding for BPE; the error names the file and the byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{origin}: byte {data[e.start]:#04x} at offset {e.start} is not valid UTF-8; the "
                         "BPE tokenizer needs UTF-8 text (tokenizer=bytes accepts any bytes)") from None


def dtype_for_vocab(vocab_size: int, dtype: str | None = None) -> np.dtype:
    """The smallest unsigned dtype that holds every token id (uint8 / uint16 / uint32), or check ``dtype``."""
    if dtype is None:
        return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.uint32)
    dt = np.dtype(dtype)
    if dt.kind != "u" or int(np.iinfo(dt).max) + 1 < vocab_size:
        raise ConfigError(f"shard dtype={dtype} cannot hold a vocabulary of {vocab_size} tokens "
                          f"(ids up to {vocab_size - 1}); use {dtype_for_vocab(vocab_size).name} or larger")
    return dt
