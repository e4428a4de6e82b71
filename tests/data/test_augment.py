from __future__ import annotations

import math

import numpy as np
import pytest

from magneto.data.augment import TagAugmentation, add_outliers, sample_absent
from magneto.data.vocabulary import Vocabulary

VOCAB = Vocabulary([f"w{i}" for i in range(60)])


def _random_item(rng):
    n = int(rng.integers(1, 20))
    tags = rng.choice(60, size=n, replace=False).tolist()
    labels = (rng.random(n) < 0.4).astype(int).tolist()
    return tags, labels


@pytest.mark.parametrize(("add", "drop"), [(0.5, 0.5), (0.3, 0.0), (0.0, 0.7), (1.0, 1.0)])
def test_tad_invariants_over_many_draws(add, drop):
    aug = TagAugmentation(add, drop, VOCAB, seed=7)
    rng = np.random.default_rng(0)
    seen_max_add = seen_max_drop = False
    for _ in range(3000):
        tags, labels = _random_item(rng)
        out_tags, out_labels = aug(tags, labels)
        unimportant = [t for t, y in zip(tags, labels, strict=True) if not y]
        important = [t for t, y in zip(tags, labels, strict=True) if y]
        u = len(unimportant)
        assert len(out_tags) == len(out_labels)
        # Important tags are never dropped and keep label 1.
        for t in important:
            assert t in out_tags and out_labels[out_tags.index(t)] == 1
        kept_original = [t for t in out_tags if t in tags]
        added = [t for t in out_tags if t not in tags]
        n_drop = len(tags) - len(kept_original)
        # Drop: only unimportant tags, at most floor(drop * U).
        assert set(tags) - set(kept_original) <= set(unimportant)
        assert 0 <= n_drop <= math.floor(drop * u + 1e-9)
        # Add: distinct vocabulary tags never among the originals, labelled 0, <= floor(add * U).
        assert len(set(added)) == len(added)
        assert all(0 <= t < len(VOCAB) for t in added)
        assert all(out_labels[out_tags.index(t)] == 0 for t in added)
        assert len(added) <= math.floor(add * u + 1e-9)
        # The original tags keep their relative order and labels.
        assert kept_original == [t for t in tags if t in kept_original]
        seen_max_drop |= u >= 4 and n_drop == math.floor(drop * u) and drop > 0
        seen_max_add |= u >= 4 and len(added) == math.floor(add * u) and add > 0
        if u == 0:
            assert (out_tags, out_labels) == (tags, labels)
    # Both bounds are reached (k is drawn from 0..A inclusive).
    assert seen_max_add == (add > 0)
    assert seen_max_drop == (drop > 0)


def test_draw_counts_are_uniform_over_zero_to_bound():
    aug = TagAugmentation(0.5, 0.0, VOCAB, seed=3)
    tags, labels = list(range(10)), [1] * 2 + [0] * 8  # U = 8, A = 4
    counts = np.bincount([len(aug(tags, labels)[0]) - 10 for _ in range(5000)], minlength=5)
    assert len(counts) == 5
    assert (np.abs(counts / 5000 - 0.2) < 0.03).all()


def test_seeded_and_reproducible():
    tags, labels = [1, 2, 3, 4, 5, 6], [1, 0, 0, 0, 0, 0]
    a = TagAugmentation(0.5, 0.5, VOCAB, seed=11)
    b = TagAugmentation(0.5, 0.5, VOCAB, seed=11)
    c = TagAugmentation(0.5, 0.5, VOCAB, seed=12)
    runs_a = [a(tags, labels) for _ in range(20)]
    assert runs_a == [b(tags, labels) for _ in range(20)]
    assert runs_a != [c(tags, labels) for _ in range(20)]
    rng1, rng2 = np.random.default_rng([5, 1, 9]), np.random.default_rng([5, 1, 9])
    assert a(tags, labels, rng1) == c(tags, labels, rng2)  # an explicit rng decides alone


def test_words_keep_the_users_spelling():
    aug = TagAugmentation(1.0, 0.0, VOCAB, seed=0)
    out, labels = aug(["W1", "w2 ", "w3"], [1, 0, 0])
    assert out[:3] == ["W1", "w2 ", "w3"]
    assert all(isinstance(t, str) and t in VOCAB for t in out)
    assert labels[:3] == [1, 0, 0]


def test_max_len_caps_additions_and_small_vocabularies_run_out():
    aug = TagAugmentation(1.0, 0.0, VOCAB, seed=0, max_len=12)
    tags, labels = list(range(10)), [0] * 10
    assert all(len(aug(tags, labels)[0]) <= 12 for _ in range(200))
    tiny = TagAugmentation(1.0, 0.0, Vocabulary(["a", "b", "c"]), seed=0)
    assert sorted(tiny(["a", "b"], [0, 0])[0]) in (["a", "b"], ["a", "b", "c"])


def test_invalid_ratios_are_rejected():
    with pytest.raises(ValueError):
        TagAugmentation(-0.1, 0.0, VOCAB)
    with pytest.raises(ValueError):
        TagAugmentation(0.1, 1.5, VOCAB)
    with pytest.raises(ValueError):
        TagAugmentation(0.1, 0.1, VOCAB)([1, 2], [1])
    with pytest.raises(ValueError, match="'unicorn' is not in the vocabulary"):
        TagAugmentation(0.1, 0.1, VOCAB)(["w1", "unicorn"], [1, 0])


def test_sample_absent_and_outliers():
    rng = np.random.default_rng(0)
    for k in (0, 1, 5, 40, 100):
        chosen = sample_absent({0, 1, 2}, 50, k, rng)
        assert len(chosen) == min(k, 47)
        assert len(set(chosen)) == len(chosen)
        assert not set(chosen) & {0, 1, 2}
    tags, flags = add_outliers([4, 7], 3, 50, rng)
    assert tags[:2] == [4, 7] and flags == [False, False, True, True, True]
    assert not set(tags[2:]) & {4, 7}


def test_added_tags_are_drawn_uniformly_whatever_their_frequency():
    """Why FF is trained without TAD in the learning curves' 'no TAD' arm (docs/results.md):
    every absent vocabulary tag is as likely to be added, so a rare tag gets as many added
    negatives as a common one. Checked on both sampling branches (rejection and setdiff)."""
    rng = np.random.default_rng(3)
    for k in (2, 30):  # 2 * 4 < 57: rejection sampling; 30 * 4 >= 57: choice over the rest
        counts = np.zeros(60)
        draws = 6000 if k == 2 else 600
        for _ in range(draws):
            counts[sample_absent({0, 1, 2}, 60, k, rng)] += 1
        assert counts[:3].sum() == 0
        expected = draws * k / 57
        # Binomial sd is about sqrt(expected); every tag within 5 sd of the same count.
        assert np.abs(counts[3:] - expected).max() < 5 * math.sqrt(expected)
