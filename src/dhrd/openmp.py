"""How torch's OpenMP threads wait between parallel regions, set before torch loads.

torch's CPU kernels run each operation as an OpenMP parallel region over ``torch.get_num_threads()`` threads.
Between regions, GNU OpenMP's threads spin for a while before they sleep (``OMP_WAIT_POLICY`` unset). On a
machine whose cores are also busy with other work (a laptop with a browser, a shared 2-core box, a test suite
beside a training run), the spinning threads take the cores that the working threads need, and every region's
barrier waits for a descheduled thread. Measured on a 2-core AVX2 EPYC beside other jobs (load average 7-9),
one LoRA-sized training step of a 6-layer Llama (8 x 128 tokens), side by side in one run, three rounds:

    two threads, default wait: 21.3, 17.6 s a step; two threads, passive wait: 7.1, 4.8 s; one thread: 10.6, 8.7 s

A SmolLM2-135M training in that state went from 2.4 s a step (alone) to 300 s a step. ``OMP_WAIT_POLICY=PASSIVE``
makes the waiting threads sleep at once. Its cost on an idle machine (a wake-up per region) was not measured here
(no idle machine this session): ``DHRD_KEEP_OPENMP=1``, or any ``OMP_WAIT_POLICY`` of your own, keeps yours.
"""

from __future__ import annotations

import os
import sys


def passive_openmp_wait() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this process and its children where the user has set no policy and
    torch is not loaded yet (OpenMP reads it once, when torch's runtime starts). Returns whether it was set."""
    if os.environ.get("OMP_WAIT_POLICY") or os.environ.get("DHRD_KEEP_OPENMP") == "1" or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True
