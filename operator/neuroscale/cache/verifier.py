"""The second check behind a semantic match: do two questions ask the same thing? (pure, rule-based)

Embedding similarity cannot tell "enable 2FA" from "disable 2FA": one meaning-bearing word changed barely moves the
vector. So a semantic hit also needs the two questions to agree on every token that carries meaning:
  1. the same numbers (digits and number words, "2" == "two", "1,000" == "1000");
  2. the same count of negations ("not", "no", "never", "without", "n't", ...);
  3. the same content words, after lower-casing, contraction expansion, light stemming and a small table of safe
     synonyms and phrase spellings ("log in" == "sign in", "delete" == "remove"). Only question framing is free to
     differ ("how do I" / "what is the way to" / "could you tell me"). This covers antonyms, other names, units,
     dates and added qualifiers in one rule: any unexplained word on either side rejects;
  4. the same object after each direction word both questions use (from/to/than/before/after/vs), so "flights from
     Paris to Rome" does not answer "flights from Rome to Paris", nor "is 5G faster than 4G" "is 4G faster than 5G".
Words are compared by Snowball stem (snowballstemmer), after mapping irregular verb forms to their base.
It is deliberately strict: a rejected paraphrase costs one upstream call, a false hit serves a wrong answer.

One exception to rule 3 is left to the embedding model (the matcher runs it, see semantic.py): when the only
difference is up to `MAX_EXTRA_WORDS` words that one question has and the other lacks (no word swapped for another,
no direction word), the verdict carries the longer question's normalised text with and without those words. Removing
a word that carries little meaning ("What are *some* examples", "Which *city* is the capital") leaves the embedding
almost where it was; removing a qualifier ("reset my router *password*", "account on *GitHub*") moves it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import snowballstemmer


# Words one question may add before the verdict is refused outright rather than left to the embedding check.
MAX_EXTRA_WORDS = 2
# Words the embedding check may never excuse: question words that change what is asked ("why" vs "how"), and the
# opposites of framing words ("best", "good", "easy" are framing, so "worst", "bad", "hard" would otherwise be the
# only difference left), and "avoid"/"prevent" that turn a how-to around.
_NEVER_EXTRA = ("why where when who whom whose reason bad worse worst poor wrong incorrect improper hard harder hardest "
                "difficult slow slower slowest complicated avoid prevent stop")


@dataclass(frozen=True)
class Verdict:
    """`ablation`, on a refusal only: (the longer question, the same without its extra words), both normalised, for
    the embedding check of the module docstring; None when the rules alone decide."""

    same: bool
    reason: str
    ablation: tuple[str, str] | None = None


_PHRASES: tuple[tuple[str, str], ...] = (
    (r"\b(?:two[- ]factor(?: authentication| auth)?|2[- ]?fa|two[- ]step verification|2[- ]step verification|multi[- ]factor(?: authentication)?|mfa)\b", " twofactor "),
    (r"\b(?:log ?in|sign ?in|log ?on)\b", " login "),
    (r"\b(?:log ?out|sign ?out|log ?off)\b", " logout "),
    (r"\b(?:sign ?up|create an account|register for an account)\b", " signup "),
    (r"\bset ?up\b", " setup "),
    (r"\b(?:turn|switch)(?:s|ed|ing)? on\b|\bactivate\b", " enable "),
    (r"\b(?:turn|switch)(?:s|ed|ing)? off\b|\bdeactivate\b", " disable "),
    (r"\be-?mail\b", " email "),
    (r"\bwi-?fi\b", " wifi "),
    (r"\bpass ?word\b", " password "),
    (r"\bin order to\b", " to "),
    (r"\ba lot of\b|\blots of\b|\bnumber of\b|\bamount of\b", " many "),
    (r"\bwhat (?:time|year|date)\b|\bat what time\b|\bin what year\b", " when "),
)

_CONTRACTIONS: tuple[tuple[str, str], ...] = (
    (r"\bcan't\b|\bcannot\b", "can not"),
    (r"\bwon't\b", "will not"),
    (r"\bshan't\b", "shall not"),
    (r"n't\b", " not"),
    (r"'(?:s|re|ve|ll|d|m)\b", ""),
)

NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "nowhere", "without", "non"})

# Question framing that paraphrases shuffle freely; none of these can flip or narrow what is asked.
FRAME_WORDS = frozenset("""
a an the this that these those it its there here
i me my mine myself you your yours yourself we us our one ones someone somebody
is are was were be been being am do does did doing done have has had having get gets got
can could would will may might shall should
what how which whats hows many much they them their
of for on in at by with about as to into onto via per and or so if then also just really actually exactly
please tell show explain know let help want wish like need
way ways steps step procedure process method methods instructions guide tutorial tip tips
possible able
best proper correct right good simplest easiest easy simple quick quickly
any each every per
""".split())

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20",
    "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000", "dozen": "12",
    "half": "0.5", "twice": "x2", "double": "x2", "triple": "x3", "once": "x1",
    "first": "#1", "second": "#2", "third": "#3", "fourth": "#4", "fifth": "#5", "last": "#last",
    # Roman numerals that are not also common words ("World War II", "Rocky IV"); "i" is the pronoun.
    "ii": "2", "iii": "3", "iv": "4", "vi": "6", "vii": "7", "viii": "8", "ix": "9", "xi": "11", "xii": "12",
}

# Safe synonyms only: each group means the same in a how-to question. Never put opposites or near-misses together.
_SYNONYM_GROUPS = (
    "delete remove erase",
    "buy purchase",
    "fix repair solve resolve troubleshoot",
    "start begin",
    "big large",
    "small little tiny",
    "fast quick speedy rapid",
    "faster quicker",
    "fastest quickest",
    "bike bicycle",
    "mac macos",
    "day daily",
    "week weekly",
    "month monthly",
    "year yearly annual annually",
    "hour hourly",
    "who whom",
    "cost price",
    "error issue problem",
    "change modify alter",
    "find locate",
    "require need",
    "use utilize employ",
    "assist help",
    "describe explain",
    "mean meaning definition define",
    "car automobile",
    "movie film",
    "create make generate",
    "install instal",
    "configure setup",
    "recover restore",
    "check verify confirm",
    "view see display",
    "obtain get acquire",
    "phone smartphone cellphone mobile",
    "pc computer",
    "doctor physician",
    "reply respond answer",
    "forgot forget lost",
    "allowed permitted",
    "stop halt",
    "choose pick select",
    "purpose goal",
    "reason why",
    "happen occur",
    "benefit advantage",
    "drawback disadvantage downside",
    "tall high",
    "often frequently",
    "shut close",
)

_IRREGULAR = {
    "built": "build", "wrote": "write", "written": "write", "won": "win", "made": "make", "took": "take",
    "taken": "take", "gave": "give", "given": "give", "went": "go", "gone": "go", "ran": "run", "bought": "buy",
    "sold": "sell", "paid": "pay", "sent": "send", "left": "leave", "kept": "keep", "thought": "think",
    "found": "find", "told": "tell", "said": "say", "lost": "lose", "began": "begin", "begun": "begin",
    "chose": "choose", "chosen": "choose", "ate": "eat", "eaten": "eat", "drank": "drink", "drunk": "drink",
    "flew": "fly", "flown": "fly", "flight": "fly", "flights": "fly", "grew": "grow", "grown": "grow",
    "knew": "know", "known": "know", "saw": "see", "seen": "see", "spoke": "speak", "spoken": "speak",
    "broke": "break", "broken": "break", "forgot": "forget", "forgotten": "forget", "froze": "freeze",
    "frozen": "freeze", "held": "hold", "meant": "mean", "met": "meet", "slept": "sleep", "spent": "spend",
    "stood": "stand", "understood": "understand", "wore": "wear", "worn": "wear", "fell": "fall", "fallen": "fall",
    "felt": "feel", "heard": "hear", "led": "lead", "brought": "bring", "caught": "catch", "taught": "teach",
    "fought": "fight", "shown": "show", "hid": "hide", "hidden": "hide", "rode": "ride", "ridden": "ride",
    "drove": "drive", "driven": "drive", "stole": "steal", "stolen": "steal",
    "children": "child", "people": "person", "men": "man", "women": "woman", "mice": "mouse", "feet": "foot",
    "teeth": "tooth", "geese": "goose",
}

_STEMMER = snowballstemmer.stemmer("english")

_SYNONYMS: dict[str, str] = {}
for _group in _SYNONYM_GROUPS:
    _stems = [_STEMMER.stemWord(w) for w in _group.split()]
    for _stem in _stems:
        _SYNONYMS[_stem] = _stems[0]

# Compared the way content words are (_canonical_word, defined below: stem, then synonym group).
NEVER_EXTRA = frozenset(_SYNONYMS.get(_STEMMER.stemWord(w), _STEMMER.stemWord(w)) for w in _NEVER_EXTRA.split())

DIRECTION_WORDS = frozenset({"from", "to", "into", "than", "before", "after", "vs", "versus", "over", "under"})

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*%?|[a-z]+(?:[-_.][a-z0-9]+)*[0-9]*|[a-z0-9]+")


def same_question(a: str, b: str) -> Verdict:
    """True only when every meaning-bearing token of the two questions agrees; `reason` says which rule decided."""
    pa, pb = _parse(a), _parse(b)
    if pa.numbers != pb.numbers:
        return Verdict(False, f"numbers differ: {sorted(pa.numbers.elements())} vs {sorted(pb.numbers.elements())}")
    if pa.negations != pb.negations:
        return Verdict(False, "negation differs")
    for word in pa.directions.keys() & pb.directions.keys():
        if pa.directions[word] != pb.directions[word]:
            return Verdict(False, f"different object after {word!r}")
    only_a, only_b = pa.content - pb.content, pb.content - pa.content
    if only_a and only_b:
        return Verdict(False, f"words differ: {sorted(only_a)} vs {sorted(only_b)}")
    extra, longer = (only_a, pa.tokens) if only_a else (only_b, pb.tokens)
    if extra:
        reason = f"words only in one question: {sorted(extra)}"
        if sum(extra.values()) > MAX_EXTRA_WORDS or any(w in DIRECTION_WORDS or w in NEVER_EXTRA for w in extra):
            return Verdict(False, reason)
        return Verdict(False, reason, ablation=(" ".join(longer), " ".join(_without(list(longer), extra))))
    return Verdict(True, "same meaning-bearing tokens")


@dataclass(frozen=True)
class _Parsed:
    tokens: tuple[str, ...]
    numbers: Counter[str]
    negations: int
    directions: dict[str, Counter[str]]
    content: Counter[str]


@lru_cache(maxsize=8192)
def _parse(text: str) -> _Parsed:
    """One question's tokens and what the rules compare; cached, since a bucket's questions are checked again and
    again (never mutate the result)."""
    tokens = _tokens(text)
    return _Parsed(tuple(tokens), _numbers(tokens), _negations(tokens), _direction_objects(tokens),
                   Counter(_content(tokens)))


def _without(tokens: list[str], extra: Counter[str]) -> list[str]:
    """`tokens` less the surplus occurrences of the extra content words (the last ones, where a word repeats)."""
    left = Counter(extra)
    kept: list[str] = []
    for token in reversed(tokens):
        word = _canonical_word(token) if token not in FRAME_WORDS else ""
        if left[word] > 0:
            left[word] -= 1
        else:
            kept.append(token)
    return kept[::-1]


def _tokens(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    for pattern, replacement in _CONTRACTIONS:
        text = re.sub(pattern, replacement, text)
    for pattern, replacement in _PHRASES:
        text = re.sub(pattern, replacement, text)
    return [t.replace(",", "") if t[0].isdigit() else t for t in _TOKEN.findall(text)]


def _numbers(tokens: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for token in tokens:
        if token[0].isdigit():
            found[token.rstrip("%").rstrip(".") + ("%" if token.endswith("%") else "")] += 1
        elif token in _NUMBER_WORDS:
            # "a" or "one" before a noun are both framing; a written digit 1 ("type 1") is not.
            if _NUMBER_WORDS[token] != "1":
                found[_NUMBER_WORDS[token]] += 1
        elif any(c.isdigit() for c in token):
            found["".join(c for c in token if c.isdigit())] += 1
    return found


def _negations(tokens: list[str]) -> int:
    return sum(token in NEGATIONS for token in tokens)


def _direction_objects(tokens: list[str]) -> dict[str, Counter[str]]:
    """What follows each direction word (skipping framing like "the", "my"): the thing it points at."""
    objects: dict[str, Counter[str]] = {}
    for i, token in enumerate(tokens):
        if token not in DIRECTION_WORDS:
            continue
        following = next((t for t in tokens[i + 1:] if t not in FRAME_WORDS), "")
        objects.setdefault(token, Counter())[_canonical_word(following) if following else ""] += 1
    return objects


def _content(tokens: list[str]) -> list[str]:
    words = []
    for token in tokens:
        if token in FRAME_WORDS or token in NEGATIONS or token in _NUMBER_WORDS or token[0].isdigit():
            continue
        words.append(_canonical_word(token))
    return [w for w in words if w and w not in FRAME_WORDS]


@lru_cache(maxsize=65536)
def _canonical_word(word: str) -> str:
    if not word.isalpha():
        return word
    stem = _STEMMER.stemWord(_IRREGULAR.get(word, word))
    return _SYNONYMS.get(stem, stem)
