"""Published scaling laws as ready objects, with their units (SPEC.md (a), (b), (d), (e)).

Units follow each paper. Kaplan 2020: loss in nats/token (WebText2), N non-embedding parameters, D tokens,
C in PF-days (1 PF-day = 8.64e19 FLOP), B in tokens, S optimizer steps. Henighan 2020: the same, per domain.
Hoffmann 2022 / Besiroglu 2024: N all parameters, D tokens, C = 6ND FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalinglab.errors import InputError
from scalinglab.laws.forms import (
    ChinchillaND,
    CriticalBatch,
    Form,
    KaplanND,
    KaplanNS,
    PowerLaw,
    PowerLawPlusConstant,
)

PF_DAY = 8.64e19  # FLOPs in one PF-day (1e15 FLOP/s for 24 h)


@dataclass(frozen=True)
class Preset:
    """A published law: a form with fixed parameters, its source and the units of every variable."""

    name: str
    form: Form
    params: dict[str, float]
    source: str
    units: dict[str, str]
    note: str = ""
    se: dict[str, float] | None = None

    def predict(self, **variables) -> np.ndarray:
        """The law at the given variables, in the units of ``self.units``."""
        return self.form.predict(self.params, **variables)

    @property
    def law(self) -> str:
        return self.form.name


@dataclass(frozen=True)
class Frontier:
    """Kaplan 2020 Table 6: the compute-efficient frontier as power laws in C_min (PF-days)."""

    name: str = "kaplan2020-frontier"
    source: str = "Kaplan et al. 2020, Table 6 (C_min in PF-days; B << B_crit assumed)"
    N_e: float = 1.3e9
    p_N: float = 0.73
    B_e: float = 2.0e6  # tokens
    p_B: float = 0.24
    S_e: float = 5.4e3  # steps (lower bound S_min)
    p_S: float = 0.03
    D_e: float = 2e10  # tokens (one epoch)
    p_D: float = 0.27
    loss_law: str = "kaplan2020-Cmin"
    units: dict[str, str] = field(
        default_factory=lambda: {
            "C": "PF-days",
            "N": "non-embedding params",
            "B": "tokens",
            "S": "steps",
            "D": "tokens",
        }
    )

    def at(self, C_pfdays: float) -> dict[str, float]:
        c = float(C_pfdays)
        return {
            "N_opt": self.N_e * c**self.p_N,
            "B": self.B_e * c**self.p_B,
            "S": self.S_e * c**self.p_S,
            "D_opt": self.D_e * c**self.p_D,
        }


_KAPLAN = "Kaplan et al. 2020"
_UNITS_K = {
    "loss": "nats/token",
    "N": "non-embedding params",
    "D": "tokens",
    "C": "PF-days",
    "S": "steps",
    "B": "tokens",
    "L": "nats/token",
}
_UNITS_H = {"loss": "nats/token", "N": "params (all)", "D": "tokens", "C": "FLOPs"}


def _p(name, form, params, source, units=None, note="", se=None) -> Preset:
    return Preset(
        name=name, form=form, params=params, source=source, units=units or _UNITS_K, note=note, se=se
    )


PRESETS: dict[str, Preset] = {}
for _pr in [
    _p("kaplan2020-N", PowerLaw("N"), {"N_c": 8.8e13, "alpha": 0.076}, f"{_KAPLAN}, eq. 1.1 / Table 5"),
    _p("kaplan2020-D", PowerLaw("D"), {"D_c": 5.4e13, "alpha": 0.095}, f"{_KAPLAN}, eq. 1.2 / Table 5"),
    _p(
        "kaplan2020-Cmin",
        PowerLaw("C"),
        {"C_c": 3.1e8, "alpha": 0.050},
        f"{_KAPLAN}, eq. 1.3 / Table 5",
        note="C is C_min in PF-days",
    ),
    _p(
        "kaplan2020-C",
        PowerLaw("C"),
        {"C_c": 1.6e7, "alpha": 0.057},
        f"{_KAPLAN}, Table 5 (naive, fixed batch)",
        note="C in PF-days",
    ),
    _p(
        "kaplan2020-ND",
        KaplanND(),
        {"N_c": 6.4e13, "D_c": 1.8e13, "alpha_N": 0.076, "alpha_D": 0.103},
        f"{_KAPLAN}, eq. 1.5, Table 2",
    ),
    _p(
        "kaplan2020-NS",
        KaplanNS(),
        {"N_c": 6.5e13, "S_c": 2.1e3, "alpha_N": 0.077, "alpha_S": 0.76},
        f"{_KAPLAN}, eq. 1.6, Table 3",
        note="S is S_min, steps at B >> B_crit",
    ),
    _p(
        "kaplan2020-Bcrit",
        CriticalBatch(),
        {"B_star": 2.1e8, "alpha_B": 0.21},
        f"{_KAPLAN}, eq. 1.4 / Table 5",
        note="B_crit in tokens from L in nats/token (eq. 1.4 says ~2e8; Table 5 2.1e8)",
    ),
    _p(
        "hoffmann2022",
        ChinchillaND(),
        {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
        "Hoffmann et al. 2022, Approach 3, eq. 10 (rounded)",
        units=_UNITS_H,
    ),
    _p(
        "hoffmann2022-unrounded",
        ChinchillaND(),
        {
            "E": float(np.exp(0.5267228)),
            "A": float(np.exp(6.0073404)),
            "B": float(np.exp(6.0179186)),
            "alpha": 0.33917084,
            "beta": 0.2849083,
        },
        "Hoffmann et al. 2022 TeX source, as used by Epoch",
        units=_UNITS_H,
    ),
    _p(
        "besiroglu2024",
        ChinchillaND(),
        {"E": 1.8169, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3659},
        "Besiroglu et al. 2024 (Epoch AI), Huber-likelihood fit on 240 digitised Chinchilla runs",
        units=_UNITS_H,
        se={"E": 0.0257, "A": 124.52, "B": 1293.28, "alpha": 0.0154, "beta": 0.0206},
    ),
    _p(
        "muennighoff2023",
        ChinchillaND(),
        {
            "E": float(np.exp(0.6254804)),
            "A": float(np.exp(6.255414)),
            "B": float(np.exp(7.3049974)),
            "alpha": 0.3526596,
            "beta": 0.3526596,
        },
        "Muennighoff et al. 2023, data-constrained fit on C4 (huggingface/datablations)",
        units=_UNITS_H,
        note="unique data; repeated data: R_D* = 15.387756, R_N* = 5.309743 (scalinglab.laws.repeat)",
    ),
]:
    PRESETS[_pr.name] = _pr

# Henighan et al. 2020 Table 1: L(N) and L(C) per domain, L = L_inf + (x/x_0)^-alpha, C in PF-days.
# N_opt(C) = (C/c_0)^beta. Transcribed (SPEC.md (b)); the language row's compute law is from GPT-3.
HENIGHAN_TABLE1 = {
    # domain: (L_N (L_inf, N_0, alpha), L_C (L_inf, C_0, alpha) or None, N_opt (c_0, beta) or None)
    "language": ((0.0, 1.47e14, 0.070), (0.0, 3.47e8, 0.048), (3.3e-13, 0.73)),
    "image-8x8": ((3.12, 8.0e1, 0.24), (3.13, 1.8e-8, 0.19), (5.3e-14, 0.64)),
    "image-16x16": ((2.64, 2.8e2, 0.22), (2.64, 1.6e-8, 0.16), (4.8e-12, 0.75)),
    "image-32x32": ((2.20, 6.3e1, 0.13), (2.21, 3.6e-9, 0.1), (1.6e-13, 0.65)),
    "image-vq-16x16": ((3.99, 2.7e4, 0.13), (4.09, 6.1e-7, 0.11), (6.2e-14, 0.64)),
    "image-vq-32x32": ((3.07, 1.9e4, 0.14), (3.17, 2.6e-6, 0.12), (9.4e-13, 0.7)),
    "text-to-image-text": ((0.0, 5.6e8, 0.037), None, None),
    "text-to-image-image": ((2.0, 5.1e3, 0.16), (1.93, 1.5e-6, 0.15), (9.4e-13, 0.7)),
    "image-to-text-text": ((0.0, 7.0e8, 0.039), None, None),
    "image-to-text-image": ((2.0, 5.5e3, 0.15), (1.97, 1.5e-6, 0.16), (3.3e-12, 0.72)),
    "video-vq-16x16x16": ((1.01, 3.7e4, 0.24), (0.95, 2.2e-5, 0.14), (1.13e-12, 0.71)),
    "math-extrapolate": ((0.28, 1.1e4, 0.16), (0.14, 1.4e-5, 0.17), (2.3e-12, 0.69)),
}
_HEN = "Henighan et al. 2020, Table 1"
for _dom, (_ln, _lc, _nopt) in HENIGHAN_TABLE1.items():
    for _var, _row in (("N", _ln), ("C", _lc)):
        if _row is None:
            continue
        _linf, _x0, _al = _row
        _units = {"loss": "nats/token", "N": "non-embedding params", "C": "PF-days"}
        if _linf == 0.0:
            _pr = _p(
                f"henighan2020-{_dom}-{_var}", PowerLaw(_var), {f"{_var}_c": _x0, "alpha": _al}, _HEN, _units
            )
        else:
            _pr = _p(
                f"henighan2020-{_dom}-{_var}",
                PowerLawPlusConstant(_var),
                {"L_inf": _linf, f"{_var}_0": _x0, "alpha": _al},
                _HEN,
                _units,
            )
        PRESETS[_pr.name] = _pr

KAPLAN_FRONTIER = Frontier()


@dataclass(frozen=True)
class HenighanNopt:
    """Henighan 2020 Table 1: N_opt(C) = (C/c_0)^beta for one domain (C in PF-days, N non-embedding)."""

    domain: str
    c0: float
    beta: float

    @property
    def name(self) -> str:
        return f"henighan2020-{self.domain}-Nopt"

    @property
    def loss_law(self) -> str | None:
        key = f"henighan2020-{self.domain}-C"
        return key if key in PRESETS else None

    def at(self, C_pfdays: float) -> float:
        return float((C_pfdays / self.c0) ** self.beta)


HENIGHAN_NOPT = {
    f"henighan2020-{d}-Nopt": HenighanNopt(d, row[2][0], row[2][1])
    for d, row in HENIGHAN_TABLE1.items()
    if row[2] is not None
}


def henighan_n_opt(domain: str, C_pfdays: float) -> float:
    """Henighan Table 1: compute-optimal non-embedding N at C (PF-days), N_opt = (C/c_0)^beta."""
    row = HENIGHAN_TABLE1.get(domain)
    if row is None or row[2] is None:
        raise InputError(f"no N_opt(C) for Henighan domain {domain!r}")
    c0, beta = row[2]
    return float((C_pfdays / c0) ** beta)


# GPT-3 (Brown et al. 2020) Table 2.1, verbatim: all trained on 300B tokens, n_ctx 2048, d_ff = 4 d_model,
# batch in tokens. Two printed cells are inconsistent and kept as printed, flagged in "flags".
GPT3_MODELS: list[dict] = [
    {
        "name": "gpt3-small",
        "n_params": 125e6,
        "n_layer": 12,
        "d_model": 768,
        "n_head": 12,
        "d_head": 64,
        "batch_tokens": 0.5e6,
        "lr": 6.0e-4,
    },
    {
        "name": "gpt3-medium",
        "n_params": 350e6,
        "n_layer": 24,
        "d_model": 1024,
        "n_head": 16,
        "d_head": 64,
        "batch_tokens": 0.5e6,
        "lr": 3.0e-4,
    },
    {
        "name": "gpt3-large",
        "n_params": 760e6,
        "n_layer": 24,
        "d_model": 1536,
        "n_head": 16,
        "d_head": 96,
        "batch_tokens": 0.5e6,
        "lr": 2.5e-4,
    },
    {
        "name": "gpt3-xl",
        "n_params": 1.3e9,
        "n_layer": 24,
        "d_model": 2048,
        "n_head": 24,
        "d_head": 128,
        "batch_tokens": 1e6,
        "lr": 2.0e-4,
        "flags": ["n_head * d_head = 3072 != d_model 2048 as printed; 2048 reproduces the parameter count"],
    },
    {
        "name": "gpt3-2.7b",
        "n_params": 2.7e9,
        "n_layer": 32,
        "d_model": 2560,
        "n_head": 32,
        "d_head": 80,
        "batch_tokens": 1e6,
        "lr": 1.6e-4,
    },
    {
        "name": "gpt3-6.7b",
        "n_params": 6.7e9,
        "n_layer": 32,
        "d_model": 4096,
        "n_head": 32,
        "d_head": 128,
        "batch_tokens": 2e6,
        "lr": 1.2e-4,
    },
    {
        "name": "gpt3-13b",
        "n_params": 13.0e9,
        "n_layer": 40,
        "d_model": 5140,
        "n_head": 40,
        "d_head": 128,
        "batch_tokens": 2e6,
        "lr": 1.0e-4,
        "flags": [
            "d_model 5140 as printed is not divisible by n_head 40; 5120 (= 40 * 128) reproduces the "
            "parameter count exactly and is the likely true width"
        ],
        "d_model_likely": 5120,
    },
    {
        "name": "gpt3-175b",
        "n_params": 175.0e9,
        "n_layer": 96,
        "d_model": 12288,
        "n_head": 96,
        "d_head": 128,
        "batch_tokens": 3.2e6,
        "lr": 0.6e-4,
    },
]
GPT3_TOKENS = 300e9
GPT3_N_CTX = 2048


def get_preset(name: str) -> Preset:
    """A preset by name (see ``PRESETS``); ``kaplan2020`` alone means ``kaplan2020-N``."""
    key = {"kaplan2020": "kaplan2020-N", "chinchilla": "hoffmann2022", "epoch": "besiroglu2024"}.get(
        name, name
    )
    if key not in PRESETS:
        raise InputError(f"unknown preset {name!r}; `scalinglab presets` lists them")
    return PRESETS[key]


def list_presets() -> list[dict]:
    """One row per preset: name, law, parameters, units, source (for ``scalinglab presets``)."""
    rows = [
        {
            "name": p.name,
            "law": p.form.description,
            "params": dict(p.params),
            "units": {k: p.units[k] for k in (*p.form.variables, p.form.target) if k in p.units},
            "source": p.source,
            "note": p.note,
        }
        for p in PRESETS.values()
    ]
    f = KAPLAN_FRONTIER
    rows.append(
        {
            "name": f.name,
            "law": "N_opt = 1.3e9 C^0.73, B = 2.0e6 C^0.24, S = 5.4e3 C^0.03, D = 2e10 C^0.27",
            "params": {
                "N_e": f.N_e,
                "p_N": f.p_N,
                "B_e": f.B_e,
                "p_B": f.p_B,
                "S_e": f.S_e,
                "p_S": f.p_S,
                "D_e": f.D_e,
                "p_D": f.p_D,
            },
            "units": dict(f.units),
            "source": f.source,
            "note": "allocation only (scalinglab allocate FLOPS --law kaplan2020-frontier)",
        }
    )
    for h in HENIGHAN_NOPT.values():
        rows.append(
            {
                "name": h.name,
                "law": "N_opt = (C/c_0)^beta",
                "params": {"c_0": h.c0, "beta": h.beta},
                "units": {"C": "PF-days", "N": "non-embedding params"},
                "source": _HEN,
                "note": "allocation only (scalinglab allocate FLOPS --law " + h.name + ")",
            }
        )
    return rows
