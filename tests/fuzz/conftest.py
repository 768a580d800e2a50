"""The fuzz corpus: seed inputs kept in ``corpus/`` (see its README.md), and shared limits.

Each fuzz test replays its corpus first, then lets hypothesis mutate the seeds for a bounded
number of examples (``FUZZ_EXAMPLES``, raise it with ``BILLING_FUZZ_EXAMPLES`` for a longer
hunt), so the suite stays fast and a failure found once becomes a new seed file.

The suite's examples are derandomized (tests/conftest.py); ``BILLING_FUZZ_RANDOM=1`` draws
new ones for a hunt.
"""

from __future__ import annotations

import os
from pathlib import Path

CORPUS = Path(__file__).parent / "corpus"
FUZZ_EXAMPLES = int(os.environ.get("BILLING_FUZZ_EXAMPLES", "40"))
MAX_DETAIL = 300  # a quarantine detail or a rate card problem is one readable line


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and len(message) <= MAX_DETAIL


def corpus_files(kind: str, suffix: str) -> list[Path]:
    return sorted((CORPUS / kind).glob(f"*{suffix}"))
