"""The one shape search: a (n_layer, d_model, n_head) for a target N with its exact count."""

from __future__ import annotations

import pytest

from scalinglab.errors import ConfigError
from scalinglab.model.config import config_for_target
from scalinglab.model.counting import count_params
from scalinglab.model.shapes import suggest_shape


@pytest.mark.parametrize("n", [3e6, 1.2e8, 7e9])
def test_suggestion_is_near_the_target_with_its_exact_count(n):
    s = suggest_shape(n, params="total", vocab_size=256, n_ctx=128)
    assert s.n_params == count_params(s.config)["total"]
    assert s.n_head == max(1, s.d_model // 64) and s.d_model % s.n_head == 0
    if s.d_model >= 4 * 64:  # below 4 head sizes d_model may be any multiple of 4 the heads divide
        assert s.d_model % 64 == 0
    assert abs(s.rel_error) < 0.25
    assert 16 <= s.aspect <= 256
    d = s.to_dict()
    assert d["n_params"] == s.n_params and d["config"]["n_layer"] == s.n_layer


def test_llama_suggestion_counts_the_modern_model():
    s = suggest_shape(
        6.738e9, params="total", arch="llama", aspect=128, head_dim=128, vocab_size=32000, n_ctx=4096
    )
    assert (s.n_layer, s.d_model, s.n_head) == (32, 4096, 32)  # Llama-2-7B's shape, found from its size
    assert s.n_params == 6_738_415_616
    gqa = suggest_shape(
        6.738e9,
        params="total",
        arch="llama",
        aspect=128,
        head_dim=128,
        vocab_size=32000,
        n_ctx=4096,
        n_kv_head=8,
    )
    assert gqa.config.kv_heads == 8 and gqa.n_params == count_params(gqa.config)["total"]


def test_config_for_target_uses_it_and_errors():
    cfg = config_for_target(1e6, aspect=32, head_dim=32, vocab_size=256, n_ctx=64)
    assert cfg == suggest_shape(1e6, aspect=32, head_dim=32, vocab_size=256, n_ctx=64).config
    with pytest.raises(ConfigError, match="need N > 0"):
        suggest_shape(-1)
    with pytest.raises(ConfigError, match="arch"):
        suggest_shape(1e6, arch="mamba")
    with pytest.raises(ConfigError, match="convention"):
        suggest_shape(1e6, params="weird")


def test_shape_cli(cli):
    import json

    code, out, err = cli("shape", "6.738e9", "--arch", "llama", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert (d["n_layer"], d["d_model"], d["n_head"], d["n_params"]) == (32, 4096, 32, 6_738_415_616)


def test_tiny_targets_keep_distinct_sizes_near_the_aspect_ratio():
    import numpy as np

    shapes = [suggest_shape(n, aspect=32, head_dim=16, params="non_embedding", vocab_size=256, n_ctx=64)
              for n in np.geomspace(2e3, 4e4, 5)]
    assert len({(s.n_layer, s.d_model) for s in shapes}) == 5
    assert all(s.d_model % 4 == 0 and s.aspect <= 4 * 32 and s.aspect >= 32 / 4 for s in shapes)
