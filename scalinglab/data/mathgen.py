"""Generated math problems with a known answer and a controllable difficulty d (1, 2, ...), character level
(one byte per character), loss on answer tokens only (Henighan et al. 2020).

One problem is one record: ``QUESTION=ANSWER\\n``; the mask counts the answer characters and the newline.
Families (``math:NAME``):
  arith      a+b, a-b with operands of up to d digits; a*b with up to ceil(d/2) digits; chains of
             2 + d//3 operands mixing + - * (Python precedence)
  fractions  p/q+r/s and p/q-r/s with up to ceil(d/2)-digit terms; answer reduced ("7/12", "-1/6", "2")
  linear     "3*x+7=22;x=" -> "5": x of up to d digits, coefficient up to ceil(d/2) digits
  mixed      all of the above
  qa         GPT-3 style text, "Q: What is 48 plus 76?\\nA: 124\\n" (d = digits, plus/minus/times)
Splits: a train pool with difficulty drawn uniformly from ``difficulty=LO-HI`` is cut train/val/test by
problem hash (so a problem never appears in two splits; ``test`` is the interpolation set), and one extra
split ``test_d{k}`` per level k = LO .. HI + extrapolate of up to ``n_test`` distinct problems that are not
in the train split (levels above HI are the extrapolation sets; easy levels hold fewer problems: few exist).
"""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np

from scalinglab.errors import ConfigError

FAMILIES = ("arith", "fractions", "linear", "mixed", "qa")


def _num(rng: random.Random, digits: int, signed: bool = False) -> int:
    n = rng.randint(1, max(1, digits))
    v = rng.randint(0 if n == 1 else 10 ** (n - 1), 10**n - 1)
    return -v if signed and rng.random() < 0.25 else v


def _signed(v: int) -> str:
    return f"({v})" if v < 0 else str(v)


def _arith(rng: random.Random, d: int) -> tuple[str, str]:
    kind = rng.randrange(4)
    signed = d >= 3
    if kind == 0:
        a, b = _num(rng, d, signed), _num(rng, d, signed)
        return f"{_signed(a)}+{_signed(b)}=", str(a + b)
    if kind == 1:
        a, b = _num(rng, d, signed), _num(rng, d, signed)
        return f"{_signed(a)}-{_signed(b)}=", str(a - b)
    if kind == 2:
        a, b = _num(rng, (d + 1) // 2, signed), _num(rng, (d + 1) // 2, signed)
        return f"{_signed(a)}*{_signed(b)}=", str(a * b)
    terms = [str(_num(rng, max(1, d // 2 + 1))) for _ in range(2 + d // 3)]
    expr = terms[0] + "".join(rng.choice("+-*") + t for t in terms[1:])
    return expr + "=", str(eval(expr))  # noqa: S307  (digits and + - * only, built above)


def _fractions(rng: random.Random, d: int) -> tuple[str, str]:
    m = (d + 1) // 2
    p, r = _num(rng, m) or 1, _num(rng, m) or 1
    q, s = max(2, _num(rng, m)), max(2, _num(rng, m))
    op = rng.choice("+-")
    v = Fraction(p, q) + Fraction(r, s) if op == "+" else Fraction(p, q) - Fraction(r, s)
    return f"{p}/{q}{op}{r}/{s}=", str(v)


def _linear(rng: random.Random, d: int) -> tuple[str, str]:
    x = _num(rng, d, signed=True)
    a = max(1, _num(rng, (d + 1) // 2)) * rng.choice((1, -1))
    b = _num(rng, d, signed=True)
    lhs = f"{a}*x" + (f"+{b}" if b >= 0 else f"-{-b}")
    return f"{lhs}={a * x + b};x=", str(x)


def _qa(rng: random.Random, d: int) -> tuple[str, str]:
    a, b = _num(rng, d), _num(rng, d)
    op = rng.choice(("plus", "minus", "times") if d <= 2 else ("plus", "minus"))
    v = a + b if op == "plus" else a - b if op == "minus" else a * b
    return f"Q: What is {a} {op} {b}?\nA: ", str(v)


GENERATORS = {"arith": [_arith], "fractions": [_fractions], "linear": [_linear],
              "mixed": [_arith, _fractions, _linear], "qa": [_qa]}


def problem(family: str, rng: random.Random, d: int) -> tuple[str, str]:
    """One (question, answer) of the family at difficulty ``d``; the record text is question+answer+'\\n'."""
    return rng.choice(GENERATORS[family])(rng, d)


def qa_documents(n_bytes: int, seed: int = 0, per_doc: int = 64) -> list[bytes]:
    """GPT-3-style arithmetic Q/A text (1-3 digit operands) of about ``n_bytes``, as documents of ``per_doc``
    problems, for mixing into a text corpus (``text:default,qa=0.05``)."""
    rng = random.Random(f"qa-{seed}")
    docs, size = [], 0
    while size < n_bytes:
        lines = []
        for _ in range(per_doc):
            q, a = _qa(rng, rng.randint(1, 3))
            lines.append(q + a + "\n")
        docs.append("\n".join(lines).encode())
        size += len(docs[-1])
    return docs


def _difficulty(text: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.partition("-")
        lo, hi = int(lo), int(hi or lo)
    except ValueError:
        raise ConfigError(f"difficulty={text!r}: expected LO-HI, e.g. 1-6") from None
    if not 1 <= lo <= hi <= 30:
        raise ConfigError(f"difficulty={text!r}: need 1 <= LO <= HI <= 30")
    return lo, hi


def _records(problems: list[tuple[str, str]]):
    """Byte tokens, record starts and answer mask of a list of problems."""
    texts = [(q + a + "\n").encode() for q, a in problems]
    lens = np.array([len(t) for t in texts], dtype=np.int64)
    qlen = np.array([len(q.encode()) for q, _ in problems], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    mask = np.repeat(np.tile(np.array([0, 1], dtype=np.uint8), len(texts)),
                     np.stack([qlen, lens - qlen], axis=1).reshape(-1))
    return np.frombuffer(b"".join(texts), dtype=np.uint8), starts, mask


def build_math(spec):
    from scalinglab.data.build import Built, SplitData
    from scalinglab.data.splits import SPLITS, assign_splits

    family = spec.source
    if family not in FAMILIES:
        raise ConfigError(f"math:{family}: unknown family; use one of {', '.join(FAMILIES)}")
    lo, hi = _difficulty(spec.opt("difficulty"))
    n, n_test, extra = spec.opt("n"), spec.opt("n_test"), spec.opt("extrapolate")
    val_frac, test_frac = spec.opt("val_frac"), spec.opt("test_frac")
    if n < 100:
        raise ConfigError(f"n={n}: generate at least 100 problems")
    rng = random.Random(f"{family}-{spec.opt('seed')}")
    pool = [problem(family, rng, rng.randint(lo, hi)) for _ in range(n)]
    where = assign_splits([(q + a).encode() for q, a in pool], val_frac, test_frac)
    splits = {}
    for s in SPLITS:
        tok, starts, mask = _records([p for p, w in zip(pool, where, strict=True) if w == s])
        splits[s] = SplitData(tok, starts, mask=mask, n_bytes=len(tok))
    levels = {}
    train = {p for p, w in zip(pool, where, strict=True) if w == "train"}
    for k in range(lo, hi + extra + 1):  # per-difficulty held-out sets: no problem of the train split
        rng_k, found = random.Random(f"{family}-{spec.opt('seed')}-test-{k}"), {}
        for _ in range(20 * n_test):
            p = problem(family, rng_k, k)
            if p not in train:
                found[p] = None
                if len(found) == n_test:
                    break
        if found:
            tok, starts, mask = _records(list(found))
            splits[f"test_d{k}"] = SplitData(tok, starts, mask=mask, n_bytes=len(tok))
            levels[f"test_d{k}"] = {"difficulty": k, "problems": len(found),
                                    "kind": "interpolate" if k <= hi else "extrapolate"}
    return Built(domain="math", vocab_size=256, splits=splits,
                 tokenizer={"kind": "bytes", "fingerprint": "bytes", "vocab_size": 256},
                 split_rule={"rule": "sha256(problem)[:8] / 2**64: < test_frac test, < +val_frac val",
                             "val_frac": val_frac, "test_frac": test_frac},
                 align="record",
                 extra={"family": family, "difficulty": [lo, hi], "difficulty_splits": levels,
                        "doc_separator": "", "problems": n})
