import torch
from accelerate.data_loader import skip_first_batches
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import get_length_grouped_indices

from dhrd.training.sampling import SeedableLengthGroupedSampler

LENGTHS = [3, 17, 5, 9, 12, 1, 8, 30, 2, 14, 6, 11, 4, 20, 7, 16]


def order(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_an_epoch_order_depends_on_the_seed_and_epoch_alone():
    sampler = SeedableLengthGroupedSampler(4, LENGTHS, seed=7)
    first = [order(sampler, e) for e in range(3)]
    torch.manual_seed(123)  # another global RNG state: the order of each epoch stays the same
    torch.rand(1000)
    assert [order(sampler, e) for e in range(3)] == first
    assert [order(SeedableLengthGroupedSampler(4, LENGTHS, seed=7), e) for e in range(3)] == first
    assert len({tuple(o) for o in first}) == 3, "each epoch is shuffled anew"
    assert all(sorted(o) == list(range(len(LENGTHS))) for o in first)
    assert order(SeedableLengthGroupedSampler(4, LENGTHS, seed=8), 0) != first[0]


def test_the_order_is_transformers_length_grouping_seeded_by_seed_plus_epoch():
    lengths = LENGTHS * 4  # 64 rows at batch 4: megabatches of 16, each sorted by length
    expected = get_length_grouped_indices(lengths, 4, generator=torch.Generator().manual_seed(9 + 2))
    assert order(SeedableLengthGroupedSampler(4, lengths, seed=9), 2) == expected
    first_megabatch = [lengths[i] for i in expected[1:16]]
    assert first_megabatch == sorted(first_megabatch, reverse=True)


def test_without_set_epoch_each_pass_is_the_next_epoch():
    sampler = SeedableLengthGroupedSampler(4, LENGTHS, seed=3)
    passes = [list(sampler) for _ in range(2)]
    assert passes == [order(SeedableLengthGroupedSampler(4, LENGTHS, seed=3), e) for e in range(2)]


def test_a_resumed_epoch_continues_the_unbroken_order():
    """What Trainer does on resuming inside epoch 2: skip the batches already trained, set the epoch, iterate."""
    unbroken = DataLoader(range(len(LENGTHS)), batch_size=4, sampler=SeedableLengthGroupedSampler(4, LENGTHS, seed=5))
    unbroken.sampler.set_epoch(2)
    expected = [b.tolist() for b in unbroken][2:]
    fresh = DataLoader(range(len(LENGTHS)), batch_size=4, sampler=SeedableLengthGroupedSampler(4, LENGTHS, seed=5))
    resumed = skip_first_batches(fresh, 2)
    resumed.batch_sampler.batch_sampler.sampler.set_epoch(2)
    torch.rand(100)  # the global RNG of a resumed run is not that of the unbroken one
    assert [b.tolist() for b in resumed] == expected
