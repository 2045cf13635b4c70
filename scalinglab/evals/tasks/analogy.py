"""A generated analogy set in the format of GPT-3's SAT analogies (sec. 3.9.3, App. G): five choices.

GPT-3 used 374 SAT problems, which are not public; this set is generated from small word-pair relations
shipped here (number successor, cardinal -> ordinal, opposites, past tense, plural, comparative,
male -> female, adult -> young animal). A problem takes a stem pair (a, b) and an answer pair (c, d) from the
same relation; the four distractors are the answer reversed (``d is to c``; for the symmetric opposites,
``c`` paired with another word's opposite) and three pairs from other relations.
Prompt: ``a is to b as`` + `` c is to d`` (GPT-3's App. G layout), scored as multiple choice by per-token
log-likelihood (GPT-3's default for multiple choice). Each relation's pairs are split in halves:
test problems use one half, few-shot demonstrations the other, so no pair is shown solved before it is asked.
Chance accuracy is 20 %.
"""

from __future__ import annotations

import random

from scalinglab.evals.prompts import Doc, Preset, doc_seed
from scalinglab.evals.tasks import register
from scalinglab.evals.tasks.base import Task, count_option

_NUM = "one two three four five six seven eight nine ten eleven twelve".split()
_ORD = "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth".split()


def _pairs(s: str) -> list[tuple[str, str]]:
    return [tuple(p.split(":")) for p in s.split()]  # type: ignore[misc]


RELATIONS: dict[str, list[tuple[str, str]]] = {
    "successor": list(zip(_NUM[:-1], _NUM[1:], strict=True)),
    "ordinal": list(zip(_NUM, _ORD, strict=True)),
    "opposite": _pairs("hot:cold big:small up:down light:dark fast:slow happy:sad early:late open:closed "
                       "old:young rich:poor strong:weak wet:dry full:empty hard:soft high:low long:short "
                       "loud:quiet thick:thin near:far true:false win:lose push:pull buy:sell love:hate "
                       "above:below before:after always:never inside:outside"),
    "past": _pairs("walk:walked jump:jumped play:played go:went see:saw eat:ate run:ran write:wrote "
                   "speak:spoke take:took give:gave come:came know:knew sing:sang drink:drank begin:began "
                   "find:found think:thought bring:brought buy:bought"),
    "plural": _pairs("cat:cats dog:dogs child:children mouse:mice man:men woman:women foot:feet tooth:teeth "
                     "box:boxes city:cities knife:knives leaf:leaves house:houses tree:trees book:books "
                     "church:churches baby:babies wolf:wolves goose:geese"),
    "comparative": _pairs("tall:taller small:smaller fast:faster good:better bad:worse big:bigger "
                          "happy:happier hot:hotter old:older strong:stronger young:younger long:longer "
                          "short:shorter cold:colder late:later"),
    "female": _pairs("king:queen man:woman boy:girl father:mother brother:sister son:daughter uncle:aunt "
                     "husband:wife prince:princess lord:lady actor:actress nephew:niece"),
    "young": _pairs("cat:kitten dog:puppy cow:calf sheep:lamb horse:foal bear:cub duck:duckling pig:piglet "
                    "goose:gosling lion:cub frog:tadpole"),
}

GPT3 = Preset(
    name="gpt3", text=lambda d: f"{d['a']} is to {d['b']} as", target=lambda d: d["choices"][d["gold"]],
    output_type="multiple_choice", scorer="acc_per_token", target_delimiter=" ", fewshot_delimiter="\n\n",
    choices=lambda d: d["choices"], gold=lambda d: d["gold"], answer_context="Answer:",
    notes="GPT-3 SAT-analogy layout (App. G.12) on a generated set",
)


@register("analogy.generated")
class GeneratedAnalogies(Task):
    version = 1
    default_preset = "gpt3"
    presets = {"gpt3": GPT3}

    def __init__(self, name: str, *, n_test: int = 400, n_train: int = 400, data_seed: int = 0) -> None:
        self.name, self.data_seed = name, data_seed
        self.sizes = {"test": count_option(name, "n_test", n_test),
                      "train": count_option(name, "n_train", n_train, minimum=0)}
        self._docs: dict[str, list[Doc]] = {}

    def docs(self, split: str) -> list[Doc]:
        if split not in self._docs:
            from scalinglab.errors import ConfigError

            if split not in self.sizes:
                raise ConfigError(f"{self.name}: unknown split {split!r}; choose test or train")
            rng = random.Random(doc_seed(self.data_seed, self.name, "halves"))
            halves: dict[str, list[tuple[str, str]]] = {}
            for rel, pairs in RELATIONS.items():
                p = pairs[:]
                rng.shuffle(p)
                cut = len(p) // 2
                halves[rel] = p[:cut] if split == "test" else p[cut:]
            rng = random.Random(doc_seed(self.data_seed, self.name, split))
            rels = sorted(RELATIONS)
            out: list[Doc] = []
            seen = set()
            for _ in range(50 * self.sizes[split]):
                if len(out) == self.sizes[split]:
                    break
                rel = rng.choice(rels)
                (a, b), (c, d) = rng.sample(halves[rel], 2)
                if (a, b, c, d) in seen or d == b or {a, b} & {c, d}:
                    continue
                seen.add((a, b, c, d))
                others = [rng.choice(RELATIONS[r]) for r in rng.sample([r for r in rels if r != rel], 3)]
                if any(o in RELATIONS[rel] for o in others):
                    continue
                # reversal is the classic distractor, except for a symmetric relation (opposites)
                other = rng.choice([y for x, y in RELATIONS[rel] if x != c])
                twist = (d, c) if rel != "opposite" else (c, other)
                options = [(c, d), twist] + others
                texts = list(dict.fromkeys(f"{x} is to {y}" for x, y in options))
                if len(texts) < 5:
                    continue
                rng.shuffle(texts)
                out.append({"id": f"{split}-{len(out)}", "relation": rel, "a": a, "b": b, "choices": texts,
                            "gold": texts.index(f"{c} is to {d}")})
            self._docs[split] = out
        return self._docs[split]
