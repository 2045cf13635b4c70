"""GPT-3 arithmetic (Brown et al. 2020, sec. 3.9.1): 2D+ 2D- 3D+ 3D- 4D+ 4D- 5D+ 5D- 2Dx 1DC.

Rules (paper): nD+/nD-: a, b ~ U[0, 10^n) independently, ``a plus b`` / ``a minus b`` (may be negative);
2Dx: a, b ~ U[0, 100), ``a times b``; 1DC: three digits ~ U[0, 10), operators ~ U{+, -, *}, parentheses
around the last two (``6+(4*8)``). ``rules="released"`` reproduces the released files' 1DC layout instead:
``(a op b) op c`` with spaces and digits 1-9 (also the paper's App. G example ``(2 * 4) * 6``).

Presets: ``gpt3`` is the released files verbatim (``"\\n\\nQ: What is 98 plus 45?\\n\\nA:"`` -> ``" 143"``,
demonstrations concatenated with no extra delimiter), scored by exact match of a greedy generation
(the paper: "the model must generate the correct answer exactly"); ``lmeval`` is the harness's rewrite
(``"Question: What is 98 plus 45?\\nAnswer:"`` + ``" 143"``, ``"\\n\\n"`` between examples), scored as the
harness does, by whether the answer is the greedy continuation (``acc``).

Test and train splits (2000 problems each by default) are disjoint and have no repeated question.
"""

from __future__ import annotations

import operator
import random

from scalinglab.errors import ConfigError
from scalinglab.evals.prompts import Doc, Preset, doc_seed
from scalinglab.evals.tasks import register
from scalinglab.evals.tasks.base import Task, count_option

WORDS = {"+": "plus", "-": "minus", "*": "times"}
FUNCS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
TASKS = {  # code -> (digits, operator); 1dc is special
    "2d+": (2, "+"), "2d-": (2, "-"), "3d+": (3, "+"), "3d-": (3, "-"), "4d+": (4, "+"), "4d-": (4, "-"),
    "5d+": (5, "+"), "5d-": (5, "-"), "2dx": (2, "*"), "1dc": (1, "c"),
}

GPT3 = Preset(
    name="gpt3", text=lambda d: f"\n\nQ: What is {d['question']}?\n\nA:", target=lambda d: d["answer"],
    output_type="generate_until", scorer="exact_match", target_delimiter=" ", fewshot_delimiter="",
    until=("\n",), max_tokens=10, answer_context="A:",
    notes="released gpt-3 files verbatim; exact match of greedy generation",
)
LMEVAL = Preset(
    name="lmeval", text=lambda d: f"Question: What is {d['question']}?\nAnswer:",
    target=lambda d: " " + d["answer"],
    output_type="loglikelihood", scorer="greedy", target_delimiter="", fewshot_delimiter="\n\n",
    notes="lm-evaluation-harness arithmetic_* rewrite; acc = answer is the greedy continuation",
)


def make_problem(code: str, rng: random.Random, rules: str = "paper") -> tuple[str, int]:
    """One problem as (question without ``What is``/``?``, integer answer)."""
    digits, op = TASKS[code]
    if op != "c":
        hi = 10**digits
        a, b = rng.randrange(hi), rng.randrange(hi)
        return f"{a} {WORDS[op]} {b}", FUNCS[op](a, b)
    ops = [rng.choice("+-*") for _ in range(2)]
    if rules == "released":
        a, b, c = (rng.randint(1, 9) for _ in range(3))
        return f"({a} {ops[0]} {b}) {ops[1]} {c}", FUNCS[ops[1]](FUNCS[ops[0]](a, b), c)
    a, b, c = (rng.randrange(10) for _ in range(3))
    return f"{a}{ops[0]}({b}{ops[1]}{c})", FUNCS[ops[0]](a, FUNCS[ops[1]](b, c))


class Arithmetic(Task):
    version = 1
    eval_split = "test"
    fewshot_split = "train"
    default_preset = "gpt3"
    presets = {"gpt3": GPT3, "lmeval": LMEVAL}

    def __init__(self, name: str, *, n_test: int = 2000, n_train: int = 2000, data_seed: int = 0,
                 rules: str = "paper") -> None:
        self.name = name
        self.code = name.split(".", 1)[1]
        if rules not in ("paper", "released"):
            raise ConfigError(f"{name}: rules must be 'paper' or 'released', got {rules!r}")
        self.rules, self.data_seed = rules, data_seed
        self.sizes = {"test": count_option(name, "n_test", n_test),
                      "train": count_option(name, "n_train", n_train, minimum=0)}
        self._cache: dict[str, list[Doc]] = {}

    def docs(self, split: str) -> list[Doc]:
        if split not in self.sizes:
            raise ConfigError(f"{self.name}: unknown split {split!r}; choose test or train")
        if split not in self._cache:
            taken = {d["question"] for d in self.docs("test")} if split == "train" else set()
            rng = random.Random(doc_seed(self.data_seed, self.name + "/" + self.rules, split))
            out: list[Doc] = []
            for _ in range(200 * self.sizes[split] + 1000):
                if len(out) == self.sizes[split]:
                    break
                q, ans = make_problem(self.code, rng, self.rules)
                if q in taken:
                    continue
                taken.add(q)
                out.append({"id": f"{split}-{len(out)}", "question": q, "answer": str(ans)})
            else:
                raise ConfigError(f"{self.name}: cannot draw {self.sizes[split]} distinct problems")
            self._cache[split] = out
        return self._cache[split]


for _code in TASKS:
    register(f"arithmetic.{_code}")(Arithmetic)
