"""Hypothesis draws the same examples on every run of the suite (every property and fuzz
test), so a red CI is a change's doing, never the luck of the draw. ``BILLING_FUZZ_RANDOM=1``
draws new examples, for a hunt; a failure found that way becomes a corpus seed or a test."""

import os

from hypothesis import settings

settings.register_profile("suite", derandomize=True)
settings.register_profile("hunt", derandomize=False)
settings.load_profile("hunt" if os.environ.get("BILLING_FUZZ_RANDOM") else "suite")
