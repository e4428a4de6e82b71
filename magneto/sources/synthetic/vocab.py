"""The concept table of a synthetic benchmark: names, themes, roles, priors, popularity, codes.

Built from the profile and its ``vocab_seed`` alone (never the data seed), so two datasets of
one profile share their vocabulary and a model pre-trained on one fine-tunes on the other.

``nuswide81``: the 81 NUS-WIDE concepts in the 9 scenes of
:mod:`magneto.sources.synthetic.scenes`; the broad words in :data:`NUSWIDE_GENERIC` are generic
(never drawn) and double as near-synonyms of the concepts they cover; a few background-like concepts
("reflection", "sign", ...) get a low prior and a few ("person", "clouds", ...) a mid one. Concept
``m`` of scene ``g`` is drawn as shape ``g`` in hue ``m``/9. ``pseudo-words``: ``concepts``
generated words in ``themes`` themes, a variant spelling for ``synonym_fraction`` of them, and the
first ``generic_words`` of :data:`GENERIC_WORDS`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from magneto.sources.synthetic.profiles import ProfileConfig
from magneto.sources.synthetic.scenes import CONCEPTS81, SCENES

VISUAL, GENERIC, SYNONYM = "visual", "generic", "synonym"
SHAPES, HUES, PATTERNS = 9, 12, 6  # the visual alphabet of magneto.sources.synthetic.render
HUE_STEPS = 36  # a code's hue is a step of this wheel: 12 hues are every 3rd, 9 every 4th

NUSWIDE_GENERIC: dict[str, tuple[str, ...]] = {  # broad word -> the concepts it covers
    "animal": ("bear", "birds", "cat", "cow", "dog", "elk", "fish", "fox", "horses", "tiger",
               "whales", "zebra"),
    "plants": ("flowers", "garden", "grass", "leaf", "tree"),
    "vehicle": ("boats", "cars", "plane", "train"),
    "water": ("harbor", "lake", "ocean", "surf", "swimming", "waterfall"),
    "sports": ("running", "soccer", "surf", "swimming"),
}  # fmt: skip
NUSWIDE_NEAR: tuple[tuple[str, str], ...] = (
    ("buildings", "cityscape"), ("town", "cityscape"), ("street", "road"), ("sun", "sunset"),
    ("snow", "frost"), ("glacier", "snow"), ("harbor", "boats"), ("beach", "sand"),
    ("ocean", "surf"), ("house", "window"), ("tower", "buildings"), ("mountain", "valley"),
    ("rocks", "mountain"), ("lake", "reflection"),
)  # fmt: skip
NUSWIDE_LOW = ("clouds", "reflection", "sign", "window", "road", "grass", "leaf", "rocks", "sand")
NUSWIDE_MID = ("person", "tree", "street", "house")
NUSWIDE_HEAD = (  # roughly the most frequent NUS-WIDE concepts, most frequent first
    "sky", "clouds", "person", "water", "animal", "grass", "buildings", "window", "plants",
    "lake", "ocean", "road", "flowers", "sunset", "reflection", "tree", "rocks", "street",
    "snow", "beach",
)  # fmt: skip
GENERIC_WORDS: tuple[str, ...] = (
    "photo", "nobody", "background", "color", "image", "day", "outdoors", "horizontal",
    "closeup", "no people", "beautiful", "view", "picture", "object", "design", "concept",
    "vertical", "copy space", "detail", "texture", "bright", "natural", "light", "modern",
    "style", "scene", "indoors", "daytime", "photography", "front view", "nature", "old",
    "new", "nice", "single", "isolated", "pattern", "abstract", "colorful", "simple",
    "vintage", "large", "small", "white", "black", "group", "side view", "full frame",
    "high angle", "stock",
)  # fmt: skip


@dataclass
class ConceptTable:
    """Every vocabulary word with what the generator needs to know about it."""

    names: list[str]
    role: list[str]  # visual / generic / synonym
    theme: np.ndarray  # int, -1 for generic words; a synonym word has its base's theme
    theme_names: list[str]
    salience: np.ndarray  # P(important | drawn), or generic_importance for generic words
    popularity: np.ndarray  # Zipf weights (visual: among visual; generic: among generic)
    code: np.ndarray  # (n, 3) shape, hue, pattern; -1 where never drawn
    synonyms: list[list[int]] = field(default_factory=list)  # words added beside a drawn one

    def __len__(self) -> int:
        return len(self.names)

    def indices(self, role: str) -> np.ndarray:
        return np.flatnonzero(np.asarray(self.role) == role)

    def members(self, theme: int) -> np.ndarray:
        """The visual concepts of a theme."""
        return np.flatnonzero((self.theme == theme) & (np.asarray(self.role) == VISUAL))

    def write_csv(self, path: Path) -> None:
        """``concepts.csv``: one row per word, for analysis (which theme, prior, code)."""
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "word", "role", "theme", "salience", "popularity",
                             "shape", "hue", "pattern", "synonyms"])  # fmt: skip
            for i, name in enumerate(self.names):
                theme = self.theme_names[self.theme[i]] if self.theme[i] >= 0 else ""
                writer.writerow([
                    i, name, self.role[i], theme, f"{self.salience[i]:.4f}",
                    f"{self.popularity[i]:.6g}", *self.code[i].tolist(),
                    " ".join(self.names[s] for s in self.synonyms[i]),
                ])  # fmt: skip


def _zipf(n: int, exponent: float, rng: np.random.Generator, head: list[int] | None = None):
    """Zipf weights over ``n`` items: the ``head`` first, the others in random rank order."""
    head = head or []
    first = set(head)
    rest = [i for i in rng.permutation(n).tolist() if i not in first]
    ranks = np.empty(n)
    ranks[head + rest] = np.arange(1, n + 1)
    weights = ranks**-exponent
    return weights / weights.sum()


def _salience(kinds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Priors for kinds 0 (high), 1 (mid), 2 (low)."""
    a = np.choose(kinds, [18.0, 3.0, 1.0])
    b = np.choose(kinds, [1.0, 3.0, 18.0])
    return rng.beta(a, b)


def _nuswide(profile: ProfileConfig, rng: np.random.Generator) -> ConceptTable:
    names = list(CONCEPTS81)
    n = len(names)
    theme_names = list(SCENES)
    role = [GENERIC if w in NUSWIDE_GENERIC else VISUAL for w in names]
    theme = np.full(n, -1)
    code = np.full((n, 3), -1)
    for g, members in enumerate(SCENES.values()):
        for m, word in enumerate(members):
            if word not in NUSWIDE_GENERIC:
                theme[names.index(word)] = g
                code[names.index(word)] = (g, m * HUE_STEPS // 9, 0)
    kinds = np.array([2 if w in NUSWIDE_LOW else 1 if w in NUSWIDE_MID else 0 for w in names])
    salience = _salience(kinds, rng)
    head = [names.index(w) for w in NUSWIDE_HEAD]
    popularity = _zipf(n, profile.zipf_exponent, rng, head)
    salience[[names.index(w) for w in NUSWIDE_GENERIC]] = profile.generic_importance
    synonyms: list[set[int]] = [set() for _ in names]
    for broad, covered in NUSWIDE_GENERIC.items():
        for word in covered:
            synonyms[names.index(word)].add(names.index(broad))
    for a, b in NUSWIDE_NEAR:
        synonyms[names.index(a)].add(names.index(b))
        synonyms[names.index(b)].add(names.index(a))
    return ConceptTable(
        names, role, theme, theme_names, salience, popularity, code, [sorted(s) for s in synonyms]
    )


ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "ch", "sh",
          "tr", "br", "st", "pl", "gr", "kl")  # fmt: skip
VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ea")
CODAS = ("", "", "", "n", "r", "l", "s", "k", "m")


def pseudo_words(count: int, rng: np.random.Generator, taken: set[str]) -> list[str]:
    """``count`` distinct pronounceable words of 2-3 syllables, none in ``taken``."""
    words: list[str] = []
    seen = set(taken)
    while len(words) < count:
        syllables = int(rng.integers(2, 4))
        word = "".join(
            ONSETS[rng.integers(len(ONSETS))]
            + VOWELS[rng.integers(len(VOWELS))]
            + CODAS[rng.integers(len(CODAS))]
            for _ in range(syllables)
        )
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _pseudo(profile: ProfileConfig, rng: np.random.Generator) -> ConceptTable:
    generic = list(GENERIC_WORDS[: profile.generic_words])
    if len(generic) < profile.generic_words:
        generic += pseudo_words(profile.generic_words - len(generic), rng, set(generic))
    theme_names = pseudo_words(profile.themes, rng, set(generic))
    visual = pseudo_words(profile.concepts, rng, set(generic) | set(theme_names))
    per_theme = np.array_split(rng.permutation(profile.concepts), profile.themes)
    theme_of = np.empty(profile.concepts, dtype=int)
    code_of = np.empty((profile.concepts, 3), dtype=int)
    n_codes = SHAPES * HUES * PATTERNS
    for t, members in enumerate(per_theme):
        theme_of[members] = t
        picks = rng.choice(n_codes, size=len(members), replace=len(members) > n_codes)
        code_of[members] = np.stack(np.unravel_index(picks, (SHAPES, HUES, PATTERNS)), axis=1)
        code_of[members, 1] *= HUE_STEPS // HUES
    kinds = rng.choice(3, size=profile.concepts, p=list(profile.salience_mix))
    salience = _salience(kinds, rng)
    popularity = _zipf(profile.concepts, profile.zipf_exponent, rng)
    names = visual + generic
    role = [VISUAL] * len(visual) + [GENERIC] * len(generic)
    theme = np.concatenate([theme_of, np.full(len(generic), -1)])
    code = np.concatenate([code_of, np.full((len(generic), 3), -1)])
    salience = np.concatenate([salience, np.full(len(generic), profile.generic_importance)])
    generic_pop = _zipf(len(generic), profile.zipf_exponent, rng, list(range(len(generic))))
    popularity = np.concatenate([popularity, generic_pop])
    synonyms: list[list[int]] = [[] for _ in names]
    seen = set(names)
    for base in np.flatnonzero(rng.random(len(visual)) < profile.synonym_fraction).tolist():
        variant = names[base] + ("s", "es", "ish", "y")[int(rng.integers(4))]
        if variant in seen:
            continue
        seen.add(variant)
        synonyms[base].append(len(names))
        synonyms.append([base])
        names.append(variant)
        role.append(SYNONYM)
        theme = np.append(theme, theme[base])
        code = np.vstack([code, [-1, -1, -1]])
        salience = np.append(salience, 0.0)
        popularity = np.append(popularity, 0.0)
    return ConceptTable(names, role, theme, theme_names, salience, popularity, code, synonyms)


def build_concepts(profile: ProfileConfig) -> ConceptTable:
    """The profile's concept table (deterministic in ``profile.vocab_seed``)."""
    rng = np.random.default_rng([profile.vocab_seed, 81])
    if profile.vocabulary == "nuswide81":
        return _nuswide(profile, rng)
    return _pseudo(profile, rng)
