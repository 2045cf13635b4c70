"""Dataset specs: ``DOMAIN:SOURCE[,key=value...]``.

Examples: ``text:default``, ``text:/data/*.txt,tokenizer=bpe,vocab_size=4096``, ``image:digits8``,
``image:digits8-caption``, ``image:/imgs.npy,size=16``, ``math:arith,difficulty=1-6``, ``math:qa``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from scalinglab.errors import ConfigError

DOMAINS = ("text", "image", "math")

SHARD_DTYPES = ("uint8", "uint16", "uint32")  # the dtype option's values

# option -> (default, type); per domain. Options not listed are refused with the list of valid ones.
OPTIONS: dict[str, dict[str, tuple]] = {
    "text": {"tokenizer": ("bytes", str), "vocab_size": (4096, int), "val_frac": (0.015, float),
             "test_frac": (0.015, float), "doc_bytes": (4096, int), "dtype": (None, str),
             "qa": (0.0, float), "seed": (0, int)},
    "image": {"size": (8, int), "levels": (None, int), "color": ("auto", str), "val_frac": (0.05, float),
              "test_frac": (0.05, float), "blank_frac": (0.2, float), "dtype": (None, str)},
    "math": {"difficulty": ("1-6", str), "n": (100_000, int), "n_test": (1000, int), "extrapolate": (3, int),
             "val_frac": (0.02, float), "test_frac": (0.02, float), "seed": (0, int), "dtype": (None, str)},
}


@dataclass(frozen=True)
class Spec:
    domain: str
    source: str
    options: dict = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f",{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.domain}:{self.source}{extra}"

    def opt(self, key: str):
        return self.options.get(key, OPTIONS[self.domain][key][0])


def _coerce(domain: str, key: str, value):
    if key not in OPTIONS[domain]:
        raise ConfigError(f"unknown option {key!r} for {domain} data; valid: {', '.join(OPTIONS[domain])}")
    typ = OPTIONS[domain][key][1]
    try:
        v = typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {key}={value!r} for {domain} data must be a {typ.__name__}") from None
    if key == "doc_bytes" and v < 1:
        raise ConfigError(f"option doc_bytes={v}: a document needs at least 1 byte")
    if key == "dtype" and v not in SHARD_DTYPES:
        raise ConfigError(f"option dtype={v!r}: the token shards are one of {', '.join(SHARD_DTYPES)}")
    return v


def parse_spec(spec: str, **opts) -> Spec:
    """Parse ``DOMAIN:SOURCE[,key=value...]``; keyword ``opts`` override options written in the spec."""
    domain, sep, rest = spec.partition(":")
    if not sep or domain not in DOMAINS or not rest:
        raise ConfigError(f"data spec {spec!r}: expected DOMAIN:SOURCE with DOMAIN in {DOMAINS}, "
                          "e.g. text:default, image:digits8, math:arith")
    parts = rest.split(",")
    source_parts, options = [parts[0]], {}
    for p in parts[1:]:
        m = re.fullmatch(r"([a-z_]+)=(.*)", p)
        if m:
            options[m.group(1)] = _coerce(domain, m.group(1), m.group(2))
        else:  # a comma inside a path
            source_parts.append(p)
    for k, v in opts.items():
        if v is not None:
            options[k] = _coerce(domain, k, v)
    return Spec(domain, ",".join(source_parts), options)
