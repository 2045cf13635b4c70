"""Peak dense bf16 FLOP/s by accelerator name, for model FLOPs utilisation (MFU). No torch import.

Dense (not 2:4-sparse) tensor-core figures from the vendors' data sheets; a name not in the table gives None
(MFU is then not reported rather than wrong).
"""

from __future__ import annotations

# (substring of torch.cuda.get_device_name(), peak dense bf16 FLOP/s). First match wins: order matters.
PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM; 1,979e12 is the 2:4-sparse figure
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),  # before "L4", which it contains
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16 tensor cores (no bf16)
]


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of one device named ``device_name`` (CUDA name), or None if unknown/CPU."""
    if not device_name:
        return None
    for key, peak in PEAK_BF16:
        if key in device_name:
            return peak
    return None


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, n_devices: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved training FLOP/s per device over its peak (None without a peak)."""
    if not peak or tokens_per_s <= 0:
        return None
    return tokens_per_s * flops_per_token / (peak * n_devices)
