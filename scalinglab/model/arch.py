"""Modern decoder shapes for counting: Llama-style (SwiGLU, RMSNorm, RoPE, grouped-query attention, untied
head), top-k mixture-of-experts, and Chinchilla's (Gopher-style) shapes. Pure Python (no torch).

`DecoderConfig` describes a model for `scalinglab.model.counting` (parameters and FLOPs per token); the
trainer builds `GPTConfig` models only. Every GPT shape is also a `DecoderConfig` (`from_gpt`), so both are
counted by one implementation.

Named configs reproduce the published totals exactly (counted from the released configs; see the tests):
Llama-2 7B 6,738,415,616, 13B 13,015,864,320, 70B 68,976,648,192; Llama-3 8B 8,030,261,248, 70B
70,553,706,496; Mistral-7B 7,241,732,096; Mixtral-8x7B 46,702,792,704 total (12,879,925,248 active with two
of eight experts per token; "12.9B active" as announced).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from scalinglab.errors import ConfigError
from scalinglab.model.config import GPTConfig, HeadsMixin, resolve_patterns

MLPS = ("swiglu", "gelu")
NORMS = ("rmsnorm", "layernorm")
POSITIONS = ("rope", "learned", "relative")


def llama_d_ff(d_model: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """Meta's SwiGLU width rule (llama ``model.py``): int(2/3 * 4 d), times ``ffn_dim_multiplier`` if
    given, rounded up to a multiple of ``multiple_of``. d 4096 -> 11008 (Llama-2-7B); with 1.3 and 4096,
    d 8192 -> 28672 (Llama-2-70B); with 1.3 and 1024, d 4096 -> 14336 (Llama-3-8B)."""
    hidden = int(2 * 4 * d_model / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * -(-hidden // multiple_of)


@dataclass(frozen=True)
class DecoderConfig(HeadsMixin):
    """A decoder-only transformer for counting. Units: widths in features, n_ctx in tokens.

    - ``mlp``: ``"swiglu"`` (three d x d_ff matrices; d_ff default ``llama_d_ff(d_model)``) or ``"gelu"``
      (two; default 4 d_model).
    - ``norm``: ``"rmsnorm"`` (a scale per feature) or ``"layernorm"`` (scale, plus an offset when ``bias``).
    - ``positions``: ``"rope"`` (no parameters), ``"learned"`` (n_ctx x d_model table) or ``"relative"``
      (Transformer-XL's, as in Gopher/Chinchilla: per layer a d_model x d_attn projection of the relative
      encodings and two d_attn biases u, v).
    - ``n_kv_head``: key/value heads (grouped-query attention; 1 = multi-query; default ``n_head``).
    - ``n_experts`` > 1: every layer's MLP is a top-``top_k`` mixture of ``n_experts`` experts with a
      d_model x n_experts router (no bias); ``n_shared_experts`` always-on experts of the same width.
    - ``attention``: one pattern per layer (``"dense"`` or ``"banded:W"``), or ``sliding_window`` W for every
      layer; only the attention FLOPs depend on it.
    """

    n_layer: int
    d_model: int
    n_head: int
    vocab_size: int = 32000
    n_ctx: int = 4096
    n_kv_head: int | None = None
    d_head: int | None = None
    d_ff: int | None = None
    mlp: str = "swiglu"
    norm: str = "rmsnorm"
    positions: str = "rope"
    tied: bool = False
    bias: bool = False
    n_experts: int = 1
    top_k: int = 1
    n_shared_experts: int = 0
    sliding_window: int | None = None
    attention: tuple[str, ...] | None = None
    patterns: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "vocab_size", "n_ctx", "n_experts", "top_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"DecoderConfig.{name} = {v!r}: must be a positive integer")
        for name, allowed in (("mlp", MLPS), ("norm", NORMS), ("positions", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"DecoderConfig.{name} = {getattr(self, name)!r}: one of {', '.join(allowed)}"
                )
        if self.d_head is None and self.d_model % self.n_head:
            raise ConfigError(
                f"DecoderConfig: d_model {self.d_model} is not divisible by n_head {self.n_head} (set d_head)"
            )
        kv = self.kv_heads
        if not (1 <= kv <= self.n_head and self.n_head % kv == 0):
            raise ConfigError(f"DecoderConfig.n_kv_head = {self.n_kv_head}: must divide n_head {self.n_head}")
        if self.top_k > self.n_experts:
            raise ConfigError(f"DecoderConfig.top_k = {self.top_k} > n_experts = {self.n_experts}")
        if self.n_shared_experts < 0 or (self.d_ff is not None and self.d_ff < 1):
            raise ConfigError("DecoderConfig: n_shared_experts must be >= 0 and d_ff >= 1")
        pats = resolve_patterns(
            "DecoderConfig", self.attention, self.n_layer, self.sliding_window, alternate=False
        )
        object.__setattr__(self, "patterns", pats)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def ff(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        return llama_d_ff(self.d_model) if self.mlp == "swiglu" else 4 * self.d_model

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("patterns", None)
        if d["attention"] is not None:
            d["attention"] = list(d["attention"])
        d["d_ff"] = self.ff
        return d

    def with_(self, **kw) -> DecoderConfig:
        return replace(self, **kw)

    @classmethod
    def from_gpt(cls, cfg: GPTConfig) -> DecoderConfig:
        """The project's GPT (GELU MLP, LayerNorm, learned positions) as a DecoderConfig."""
        return cls(
            n_layer=cfg.n_layer,
            d_model=cfg.d_model,
            n_head=cfg.n_head,
            vocab_size=cfg.vocab_size,
            n_ctx=cfg.n_ctx,
            d_head=cfg.d_head,
            d_ff=cfg.ff,
            mlp="gelu",
            norm="layernorm",
            positions="learned",
            tied=cfg.tied,
            bias=cfg.bias,
            attention=tuple(cfg.patterns),
        )


def _llama(
    n_layer: int,
    d_model: int,
    n_head: int,
    vocab: int,
    n_ctx: int,
    *,
    kv: int | None = None,
    mult: float | None = None,
    multiple_of: int = 256,
    **kw,
) -> DecoderConfig:
    return DecoderConfig(
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        vocab_size=vocab,
        n_ctx=n_ctx,
        n_kv_head=kv,
        d_ff=kw.pop("d_ff", None) or llama_d_ff(d_model, multiple_of, mult),
        **kw,
    )


# Released configs (params.json / config.json of each model).
NAMED_DECODERS: dict[str, DecoderConfig] = {
    "llama-2-7b": _llama(32, 4096, 32, 32000, 4096),
    "llama-2-13b": _llama(40, 5120, 40, 32000, 4096),
    "llama-2-70b": _llama(80, 8192, 64, 32000, 4096, kv=8, mult=1.3, multiple_of=4096),
    "llama-3-8b": _llama(32, 4096, 32, 128256, 8192, kv=8, mult=1.3, multiple_of=1024),
    "llama-3-70b": _llama(80, 8192, 64, 128256, 8192, kv=8, mult=1.3, multiple_of=4096),
    "mistral-7b": _llama(32, 4096, 32, 32000, 32768, kv=8, d_ff=14336, sliding_window=4096),
    "mixtral-8x7b": _llama(32, 4096, 32, 32000, 32768, kv=8, d_ff=14336, n_experts=8, top_k=2),
}

# Hoffmann et al. 2022, Table A9: (label in millions, d_model, n_heads, n_layers, kv_size), ffw_size 4 d.
# Gopher-style: RMSNorm, relative positions, a 32k vocabulary, one embedding matrix shared with the output.
CHINCHILLA_A9: tuple[tuple[int, int, int, int, int], ...] = (
    (44, 512, 8, 8, 64),
    (57, 576, 9, 9, 64),
    (74, 640, 10, 10, 64),
    (90, 640, 10, 13, 64),
    (106, 640, 10, 16, 64),
    (117, 768, 12, 12, 64),
    (140, 768, 12, 15, 64),
    (163, 768, 12, 18, 64),
    (175, 896, 14, 14, 64),
    (196, 896, 14, 16, 64),
    (217, 896, 14, 18, 64),
    (251, 1024, 16, 16, 64),
    (278, 1024, 16, 18, 64),
    (306, 1024, 16, 20, 64),
    (425, 1280, 10, 18, 128),
    (489, 1280, 10, 21, 128),
    (509, 1408, 11, 18, 128),
    (552, 1280, 10, 24, 128),
    (587, 1408, 11, 21, 128),
    (632, 1536, 12, 19, 128),
    (664, 1408, 11, 24, 128),
    (724, 1536, 12, 22, 128),
    (816, 1536, 12, 25, 128),
    (893, 1792, 14, 20, 128),
    (1018, 1792, 14, 23, 128),
    (1143, 1792, 14, 26, 128),
    (1266, 2048, 16, 22, 128),
    (1424, 2176, 17, 22, 128),
    (1429, 2048, 16, 25, 128),
    (1593, 2048, 16, 28, 128),
    (1609, 2176, 17, 25, 128),
    (1731, 2304, 18, 24, 128),
    (1794, 2176, 17, 28, 128),
    (2007, 2304, 18, 28, 128),
    (2283, 2304, 18, 32, 128),
    (2298, 2560, 20, 26, 128),
    (2639, 2560, 20, 30, 128),
    (2980, 2560, 20, 34, 128),
    (3530, 2688, 22, 36, 128),
    (3802, 2816, 22, 36, 128),
    (4084, 2944, 22, 36, 128),
    (4516, 3072, 24, 36, 128),
    (6796, 3584, 28, 40, 128),
    (9293, 4096, 32, 42, 128),
    (11452, 4352, 32, 47, 128),
    (12295, 4608, 36, 44, 128),
    (12569, 4608, 32, 47, 128),
    (13735, 4864, 32, 47, 128),
    (14940, 4992, 32, 49, 128),
    (16183, 5120, 40, 47, 128),
)


def _chinchilla(d_model: int, n_head: int, n_layer: int, kv_size: int) -> DecoderConfig:
    return DecoderConfig(
        n_layer=n_layer,
        d_model=d_model,
        n_head=n_head,
        d_head=kv_size,
        vocab_size=32000,
        n_ctx=2048,
        d_ff=4 * d_model,
        mlp="gelu",
        norm="rmsnorm",
        positions="relative",
        tied=True,
    )


NAMED_DECODERS.update({f"chinchilla-{m}m": _chinchilla(d, h, L, kv) for m, d, h, L, kv in CHINCHILLA_A9})
NAMED_DECODERS["chinchilla-70b"] = _chinchilla(8192, 64, 80, 128)  # Hoffmann et al. 2022, Table 4


def named_decoder(name: str, **overrides) -> DecoderConfig:
    """A named modern shape (``llama-2-7b`` ... ``mixtral-8x7b``, ``chinchilla-44m`` ...
    ``chinchilla-70b``)."""
    if name not in NAMED_DECODERS:
        known = [k for k in NAMED_DECODERS if not (k.startswith("chinchilla-") and k[-1] == "m")]
        raise ConfigError(
            f"unknown model {name!r}; known: {', '.join(known)}, chinchilla-44m ... "
            "chinchilla-16183m (Table A9)"
        )
    return NAMED_DECODERS[name].with_(**overrides) if overrides else NAMED_DECODERS[name]


def experts_per_token(cfg: DecoderConfig) -> int:
    """MLP experts a token passes through per layer: top_k routed + the shared ones (1 for a dense model)."""
    return (cfg.top_k if cfg.n_experts > 1 else 1) + cfg.n_shared_experts
