"""The training order: transformers' length-grouped batches, shuffled from a seed per epoch.

transformers' ``LengthGroupedSampler`` shuffles with the global torch RNG as it stands when an epoch starts, and
that state depends on every random draw before it (dropout, the head's initialisation). A run resumed inside its
second or later epoch cannot replay those draws, so it trained on another order than an unbroken run would have.
Seeding each epoch's shuffle with ``seed + epoch``, as accelerate's ``SeedableRandomSampler`` does for random
batches, makes the order a function of the epoch alone.
"""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices


class SeedableLengthGroupedSampler(LengthGroupedSampler):
    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Trainer (through accelerate's data loader) before each epoch, a resumed one included."""
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        # as accelerate's sampler: a loop that never calls set_epoch still gets a new order each epoch
        self.epoch += 1
        return iter(indices)
