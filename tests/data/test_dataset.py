from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from magneto.data.annotation_files import read_annotations
from magneto.data.augment import TagAugmentation
from magneto.data.dataset import (
    Collator,
    DecodedImages,
    TagImageDataset,
    encode_annotations,
    with_outliers,
)
from magneto.data.vocabulary import Vocabulary
from magneto.errors import ImageError
from magneto.model.architectures import build_model
from magneto.model.config import ModelConfig
from magneto.train.loss_registry import build_loss
from magneto.train.total_loss import TotalLoss
from tests.conftest import write_jpeg, write_truncated_jpeg


@pytest.fixture
def small_set(tmp_path, words):
    images = tmp_path / "images"
    for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0)]):
        write_jpeg(images / f"{i}.jpg", (80, 60), color)
    csv = tmp_path / "a.csv"
    csv.write_text(
        "item_id,tags,label\n"
        '0,"sky,unicorn,sun","1,0,0"\n'
        '1,"dog,cat,tree,grass,road","1,1,0,0,1"\n'
        "2,water,1\n"
        '3,"Beach,SKY","0,1"\n'
        '4,"pegasus,unicorn","1,0"\n'
    )
    vocab = Vocabulary(words)
    items, report = encode_annotations(read_annotations(csv), vocab)
    return items, report, vocab, images


def test_unknown_tags_are_reported_not_fatal(small_set):
    items, report, _, _ = small_set
    assert [it.item_id for it in items] == ["0", "1", "2", "3"]
    assert items[0].tags.tolist() == [0, 2] and items[0].targets.tolist() == [1.0, 0.0]
    assert report.unknown_tags == {"unicorn": 2, "pegasus": 1}
    assert report.items_without_known_tags == ["4"]
    lines = report.lines()
    assert "3 unknown tag occurrences (2 distinct)" in lines[0]
    assert "1 items had no known tag" in lines[1] and "4" in lines[1]


def test_collate_pads_to_the_longest_item_of_the_batch(small_set):
    items, _, vocab, images = small_set
    ds = TagImageDataset(items, DecodedImages(images, input_size=32))
    batch = Collator(vocab.padding_index)([ds[0], ds[2]])
    assert batch.tags.shape == (2, 2)  # longest item in this batch has 2 tags, not max_len
    assert batch.tags.tolist() == [[0, 2], [3, vocab.padding_index]]
    assert batch.padding_mask.tolist() == [[False, False], [False, True]]
    assert batch.targets.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert batch.images.shape == (2, 3, 32, 32)
    assert batch.item_ids == ["0", "2"]
    full = Collator(vocab.padding_index)([ds[i] for i in range(4)])
    assert full.tags.shape == (4, 5)
    assert full.padding_mask.sum(1).tolist() == [3, 0, 4, 3]


def test_padding_never_changes_real_outputs_or_the_loss(small_set):
    items, _, vocab, images = small_set
    ds = TagImageDataset(items, DecodedImages(images, input_size=64))
    torch.manual_seed(0)
    criterion = TotalLoss(build_loss("bce_dice"))
    for arch in ("magneto", "ff", "tf-t", "tf-it"):
        model = build_model(ModelConfig(architecture=arch, vocab_size=len(vocab), dropout=0.1))
        model.eval()
        collate = Collator(vocab.padding_index)
        padded = collate([ds[i] for i in range(4)])
        with torch.no_grad():
            out = model(padded.images, padded.tags, padded.padding_mask)
            loss_padded, _ = criterion(out, padded.targets, padded.padding_mask)
            # Each item alone (no padding at all) gives the same real-position outputs ...
            singles = []
            for i in range(4):
                alone = collate([ds[i]])
                single = model(alone.images, alone.tags, alone.padding_mask)
                n = len(ds[i].tags)
                assert torch.allclose(out.final[i, :n], single.final[0], atol=1e-5), arch
                singles.append(single)
            # ... and garbage at padded positions changes nothing real, nor the loss.
            noisy_tags = padded.tags.clone()
            noisy_tags[padded.padding_mask] = torch.randint(
                0, len(vocab), (int(padded.padding_mask.sum()),)
            )
            noisy = model(padded.images, noisy_tags, padded.padding_mask)
            real = ~padded.padding_mask
            assert torch.allclose(noisy.final[real], out.final[real], atol=1e-5), arch
            loss_noisy, _ = criterion(noisy, padded.targets, padded.padding_mask)
            assert torch.allclose(loss_noisy, loss_padded, atol=1e-6), arch


def test_tag_transform_is_seeded_by_epoch_and_index(small_set, words):
    items, _, vocab, images = small_set
    aug = TagAugmentation(1.0, 1.0, vocab, seed=0)
    ds = TagImageDataset(items, DecodedImages(images, input_size=32), tag_transform=aug, seed=3)
    first = [ds[1].tags.tolist() for _ in range(3)]
    assert first[0] == first[1] == first[2]  # same (seed, epoch, index) -> same draw
    draws = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        draws.add(tuple(ds[1].tags.tolist()))
    assert len(draws) > 1  # epochs differ
    important = {t for t, y in zip(items[1].tags, items[1].targets, strict=True) if y}
    assert all(important <= set(d) for d in draws)


def test_missing_and_corrupt_images_skip_policy_reports_ids(tmp_path, small_set):
    items, _, vocab, images = small_set
    (images / "1.jpg").unlink()  # missing
    write_truncated_jpeg(images / "2.jpg")  # corrupt
    ds = TagImageDataset(items, DecodedImages(images, input_size=32, on_bad_image="skip"))
    assert ds.report.missing_images == ["1"]
    assert [it.item_id for it in ds.items] == ["0", "2", "3"]
    loader = DataLoader(ds, batch_size=3, collate_fn=Collator(vocab.padding_index))
    (batch,) = list(loader)
    assert batch.item_ids == ["0", "3"]  # never replaced by another item
    assert [i for i, _ in batch.skipped] == ["2"]
    assert "corrupt or truncated" in batch.skipped[0][1]
    assert batch.images.shape[0] == batch.tags.shape[0] == 2


def test_missing_and_corrupt_images_fail_policy(small_set):
    items, _, _, images = small_set
    write_truncated_jpeg(images / "2.jpg")
    ds = TagImageDataset(items, DecodedImages(images, input_size=32, on_bad_image="fail"))
    with pytest.raises(ImageError, match="item 2: corrupt or truncated") as info:
        ds[2]
    assert info.value.item_id == "2"
    (images / "1.jpg").unlink()
    with pytest.raises(ImageError) as missing:
        TagImageDataset(items, DecodedImages(images, input_size=32, on_bad_image="fail"))
    assert str(missing.value).startswith(
        f"{images.parent / 'a.csv'}:3: item 1: image 1.jpg not found"
    )
    assert str(missing.value).endswith("(1 missing in all: 1)")
    with pytest.raises(ValueError):
        DecodedImages(images, on_bad_image="ignore")  # type: ignore[arg-type]


def test_all_bad_batch_is_empty_but_reported(small_set):
    items, _, vocab, images = small_set
    write_truncated_jpeg(images / "0.jpg")
    ds = TagImageDataset(items[:1], DecodedImages(images, input_size=32))
    batch = Collator(vocab.padding_index)([ds[0]])
    assert len(batch) == 0 and batch.skipped[0][0] == "0"


def test_outlier_items_are_flagged(small_set):
    items, _, vocab, images = small_set
    flagged = with_outliers(items, 2, len(vocab), seed=0)
    for before, after in zip(items, flagged, strict=True):
        assert after.tags[: len(before.tags)].tolist() == before.tags.tolist()
        assert after.outliers.tolist() == [False] * len(before.tags) + [True, True]
        assert after.targets[-2:].tolist() == [0.0, 0.0]
        assert not set(after.tags[-2:].tolist()) & set(before.tags.tolist())
    ds = TagImageDataset(flagged, DecodedImages(images, input_size=32))
    batch = Collator(vocab.padding_index)([ds[0], ds[1]])
    assert batch.outliers.sum().item() == 4
    assert not (batch.outliers & batch.padding_mask).any()
    assert np.array_equal(with_outliers(items, 2, len(vocab), seed=0)[0].tags, flagged[0].tags)
