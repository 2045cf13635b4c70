"""One training run (`train`, `TrainConfig`), its LR schedules, checkpoints and the noise-scale meter.

``from scalinglab.train import train, TrainConfig, load_model`` (torch is imported on first use).
"""

__all__ = ["TrainConfig", "load_model", "train"]


def __getattr__(name: str):
    if name == "train":
        from scalinglab.train.trainer import train

        return train
    if name == "TrainConfig":
        from scalinglab.train.config import TrainConfig

        return TrainConfig
    if name == "load_model":
        from scalinglab.train.checkpoint import load_model

        return load_model
    raise AttributeError(name)
