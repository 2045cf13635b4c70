"""Models: GPT shapes (`GPTConfig`, named GPT-2/GPT-3 sizes) and LSTM LMs (`LSTMConfig`, Kaplan Fig. 7),
exact parameter/FLOP counts, the torch modules.

``GPTConfig``, ``LSTMConfig``, ``count_params``, ``flops_per_token`` import without torch; ``GPT``,
``LSTMLM`` and ``build_model`` (a config -> its torch module) load torch on first use.
"""

from scalinglab.model.config import (
    NAMED_CONFIGS,
    GPTConfig,
    LSTMConfig,
    config_for_target,
    model_config_from_dict,
    named_config,
)
from scalinglab.model.counting import count_params, flops_per_token, kaplan_lr

__all__ = [
    "GPT",
    "GPTConfig",
    "LSTMConfig",
    "LSTMLM",
    "build_model",
    "NAMED_CONFIGS",
    "config_for_target",
    "count_params",
    "flops_per_token",
    "kaplan_lr",
    "model_config_from_dict",
    "named_config",
]


def __getattr__(name: str):
    if name == "GPT":
        from scalinglab.model.gpt import GPT

        return GPT
    if name in ("LSTMLM", "build_model"):
        from scalinglab.model import lstm

        return getattr(lstm, name)
    raise AttributeError(name)
