"""Drawing the items of a benchmark profile: what is drawn, what is important, what is tagged.

Steps 1-4 of the story in :mod:`magneto.sources.synthetic.profiles`. Labelled items are drawn until
they pass the paper's filters (something important; important tags among the tags, which the
uploader guarantees; at most ``max_tags`` tags). Items that must *fail* them (for the raw
NUS-WIDE layout, where ``prepare nuswide`` routes them to ``unlabeled.csv`` or drops them) are
ordinary draws with one thing changed: an important tag left out, no ground truth at all, or
no tags.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from magneto.sources.synthetic.profiles import ProfileConfig
from magneto.sources.synthetic.vocab import GENERIC, VISUAL, ConceptTable

KINDS = ("visual", "generic", "noise")
SOURCES = ("foreground", "background", "plausible", "random", "synonym", "generic")


@dataclass
class PlannedItem:
    """One item: its scene, the concepts drawn, the uploader's tags and the ground truth."""

    item_id: str
    theme: int
    present: list[int]  # concepts drawn in the picture
    tags: list[int]  # in the uploader's order
    sources: list[str]  # aligned with tags: which step of the story added the tag
    important: list[int]  # subset of present + generic words (ground truth)
    status: str = "labelled"  # or untagged-important / no-truth / no-tags / unlabeled
    test: bool = False
    kinds: list[str] = field(default_factory=list)  # aligned with tags

    def ground_truth(self) -> list[int]:
        """What the annotator marked (``no-truth`` items: nothing)."""
        return [] if self.status == "no-truth" else self.important


class ItemSampler:
    """Draws items of one profile from one random stream."""

    def __init__(self, profile: ProfileConfig, table: ConceptTable, rng: np.random.Generator):
        self.profile, self.table, self.rng = profile, table, rng
        role = np.asarray(table.role)
        self.visual = np.flatnonzero(role == VISUAL)
        self.generic = np.flatnonzero(role == GENERIC)
        self.members = [table.members(t) for t in range(len(table.theme_names))]
        self.theme_p = np.array([table.popularity[m].sum() for m in self.members])
        self.theme_p /= self.theme_p.sum()
        self.used_ids: set[int] = set()

    def _weighted(self, pool: np.ndarray, k: int, exclude: set[int]) -> list[int]:
        """Up to ``k`` distinct members of ``pool`` by popularity, none in ``exclude``."""
        if k <= 0 or len(pool) == 0:
            return []
        weights = self.table.popularity[pool]
        if exclude:
            weights = weights * ~np.isin(pool, list(exclude))
        available = int(np.count_nonzero(weights))
        k = min(k, available)
        if k == 0:
            return []
        cdf = np.cumsum(weights)
        picked: list[int] = []
        seen = set(exclude)
        while len(picked) < k:
            draws = np.searchsorted(cdf, self.rng.random(2 * k) * cdf[-1], side="right")
            for c in pool[np.minimum(draws, len(pool) - 1)].tolist():
                if c not in seen:
                    seen.add(c)
                    picked.append(c)
                    if len(picked) == k:
                        break
        return picked

    def new_id(self) -> str:
        while True:
            value = int(self.rng.integers(10**8, 4 * 10**9))
            if value not in self.used_ids:
                self.used_ids.add(value)
                return str(value)

    def draw(self) -> PlannedItem:
        """One item by the story (it may have nothing important)."""
        p, t, rng = self.profile, self.table, self.rng
        cells = p.grid * p.grid
        theme = int(rng.choice(len(self.members), p=self.theme_p))
        members = self.members[theme]
        busy = rng.gamma(p.busyness_shape, 1.0 / p.busyness_shape)
        verbosity = rng.gamma(p.verbosity_shape, 1.0 / p.verbosity_shape)
        n_fg = min(1 + int(rng.poisson(busy * (p.foreground_mean - 1.0))), len(members), cells)
        fg = self._weighted(members, n_fg, set())
        n_bg = min(int(rng.poisson(busy * p.background_mean)), cells - len(fg))
        others = self.visual[t.theme[self.visual] != theme]
        bg = self._weighted(others, n_bg, set(fg))
        present = fg + bg
        chance = np.concatenate([t.salience[fg], p.background_salience * t.salience[bg]])
        salient = rng.random(len(present)) < chance
        tags = [c for c, s in zip(present, salient, strict=True) if s]
        important = list(tags)
        sources = ["foreground" if c in fg else "background" for c in tags]
        # A typical uploader (v = 1) tags a drawn, unimportant concept with
        # tag_unimportant_present; a verbose one more often, a terse one less.
        rate = -np.log1p(-min(p.tag_unimportant_present, 1 - 1e-9))
        keep_unimportant = rng.random(len(present)) < -np.expm1(-verbosity * rate)
        for c, s, keep in zip(present, salient, keep_unimportant, strict=True):
            if not s and keep:
                tags.append(c)
                sources.append("foreground" if c in fg else "background")

        def add(new: list[int], source: str) -> None:
            tags.extend(new)
            sources.extend([source] * len(new))

        add(self._weighted(members, int(rng.poisson(verbosity * p.plausible_mean)), set(present)),
            "plausible")  # fmt: skip
        for c in present:
            options = [s for s in t.synonyms[c] if s not in tags]
            if options and rng.random() < p.synonym_prob:
                add([options[int(rng.integers(len(options)))]], "synonym")
        taken = set(tags) | set(present)
        add(self._weighted(self.visual, int(rng.poisson(verbosity * p.random_mean)), taken),
            "random")  # fmt: skip
        generic = self._weighted(
            self.generic, int(rng.poisson(verbosity * p.generic_mean)), set(tags)
        )
        add(generic, "generic")
        important += [c for c in generic if rng.random() < t.salience[c]]
        if len(tags) > p.max_tags:  # drop noise at random, never an important tag
            noise = [i for i, c in enumerate(tags) if c not in important]
            drop = set(rng.choice(noise, size=len(tags) - p.max_tags, replace=False).tolist())
            tags = [c for i, c in enumerate(tags) if i not in drop]
            sources = [s for i, s in enumerate(sources) if i not in drop]
        order = rng.permutation(len(tags))
        item = PlannedItem(
            item_id=self.new_id(),
            theme=theme,
            present=present,
            tags=[tags[i] for i in order],
            sources=[sources[i] for i in order],
            important=sorted(important),
        )
        drawn = set(present)
        item.kinds = [
            "generic" if t.role[c] == GENERIC else "visual" if c in drawn else "noise"
            for c in item.tags
        ]
        return item

    def labelled(self) -> PlannedItem:
        """An item that passes the paper's filters."""
        while True:
            item = self.draw()
            if item.important:
                return item

    def failing(self, status: str) -> PlannedItem:
        """An item made to fail one filter: ``untagged-important`` (an important concept the
        uploader did not tag; at least one tag remains), ``no-truth`` or ``no-tags``."""
        while True:
            item = self.labelled()
            if status == "untagged-important" and len(item.tags) < 2:
                continue
            item.status = status
            if status == "untagged-important":
                gone = item.important[int(self.rng.integers(len(item.important)))]
                keep = [i for i, c in enumerate(item.tags) if c != gone]
                item.tags = [item.tags[i] for i in keep]
                item.sources = [item.sources[i] for i in keep]
                item.kinds = [item.kinds[i] for i in keep]
            elif status == "no-tags":
                item.tags, item.sources, item.kinds = [], [], []
            return item


def plan_items(
    profile: ProfileConfig,
    table: ConceptTable,
    labelled: int,
    unlabeled: int,
    rng: np.random.Generator,
    *,
    raw_layout: bool,
) -> list[PlannedItem]:
    """``labelled`` items that pass the filters and ``unlabeled`` extra ones, shuffled.

    For the raw layout the extras fail the filters (70 % an important tag left out, 30 % no
    ground truth) and ``labelled // 20`` items without tags are added, as in the image-only
    generator; otherwise the extras are ordinary items whose labels are not written."""
    sampler = ItemSampler(profile, table, rng)
    items = [sampler.labelled() for _ in range(labelled)]
    for k in range(unlabeled):
        if raw_layout:
            items.append(sampler.failing("untagged-important" if k % 10 < 7 else "no-truth"))
        else:
            item = sampler.labelled()
            item.status = "unlabeled"
            items.append(item)
    if raw_layout:
        items += [sampler.failing("no-tags") for _ in range(max(1, labelled // 20))]
    order = rng.permutation(len(items))
    return [items[i] for i in order]
