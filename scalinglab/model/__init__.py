"""GPT models: shapes (`GPTConfig`, named GPT-2/GPT-3 sizes), exact parameter/FLOP counts, the torch module.

``GPTConfig``, ``count_params``, ``flops_per_token`` import without torch; ``GPT`` loads torch on first use.
"""

from scalinglab.model.config import NAMED_CONFIGS, GPTConfig, config_for_target, named_config
from scalinglab.model.counting import count_params, flops_per_token, kaplan_lr

__all__ = [
    "GPT",
    "GPTConfig",
    "NAMED_CONFIGS",
    "config_for_target",
    "count_params",
    "flops_per_token",
    "kaplan_lr",
    "named_config",
]


def __getattr__(name: str):
    if name == "GPT":
        from scalinglab.model.gpt import GPT

        return GPT
    raise AttributeError(name)
