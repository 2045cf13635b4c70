"""Fixtures for the evals tests: a tiny random GPT-2 with a byte-level tokenizer, built locally."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

# one thread: the test machine is shared, and oversubscribed BLAS threads are 10-40x slower there
torch.set_num_threads(1)


def tiny_gpt2(n_positions: int = 128, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=257, n_positions=n_positions, n_embd=32, n_layer=2, n_head=4,
                     bos_token_id=256, eos_token_id=256, initializer_range=0.2)
    return GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A local Hugging Face model directory (config, safetensors weights, tokenizer files)."""
    from scalinglab.evals.hf import byte_tokenizer

    d = tmp_path_factory.mktemp("tiny_gpt2")
    tiny_gpt2().save_pretrained(d)
    byte_tokenizer().save_pretrained(d)
    return d


@pytest.fixture()
def hf_lm(hf_dir):
    from scalinglab.evals.hf import HFLM

    return HFLM.from_pretrained(hf_dir, batch_size=4)


@pytest.fixture()
def make_tiny_gpt2():
    """The builder of tiny random GPT-2 models (different ``seed`` = different weights)."""
    return tiny_gpt2
