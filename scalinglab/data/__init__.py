"""Corpora -> token streams (numpy only; Hugging Face ``tokenizers`` for BPE).

Specs: ``text:default`` (bundled KJV + Shakespeare), ``text:PATH|FOLDER|GLOB``, ``image:digits8``,
``image:digits8-caption`` / ``-blank``, ``image:FOLDER|X.npy``, ``math:arith|fractions|linear|mixed|qa``;
options follow as ``,key=value`` (``text:default,tokenizer=bpe,vocab_size=4096``). See docs/interfaces.md.
"""

from scalinglab.data.dataset import Dataset, open_dataset
from scalinglab.data.prepare import DatasetInfo, ensure_dataset, prepare
from scalinglab.data.sampler import Batch, Sampler, eval_batches, token_batches

__all__ = ["Batch", "Dataset", "DatasetInfo", "Sampler", "ensure_dataset", "eval_batches", "open_dataset",
           "prepare", "token_batches"]
