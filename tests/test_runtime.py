"""The garbage-collector settings a served process runs with."""

from __future__ import annotations

import gc

from service import runtime


def test_tune_freezes_startup_objects_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        runtime.tune()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (runtime.YOUNG_THRESHOLD, *runtime.OLDER_THRESHOLDS)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
