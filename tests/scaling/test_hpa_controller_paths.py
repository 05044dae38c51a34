"""Cases where shiftover differed from kube-controller-manager, named after the code path.

Each test is written from the controller's source (``replica_calculator.go``,
``horizontal.go``, ``metrics/utilization.go``) and its tests
(``replica_calculator_test.go``, ``horizontal_test.go``); issue 9 lists the
examples. A test here failed before its fix.
"""

from __future__ import annotations

from shiftover.scaling.hpa import (
    ControllerConstants,
    HPAController,
    HPASpec,
    MetricSpec,
    MetricTarget,
)

NO_WINDOW = ControllerConstants(downscale_stabilization_seconds=0.0)


def ext_avg(target: float = 100.0) -> MetricSpec:
    return MetricSpec("External", "q", MetricTarget("AverageValue", target))


# --- stabilizeRecommendation: the seed of the first sync ------------------------------------


def test_stabilizeRecommendation_ignores_seed_at_zero_window_first_sync_fast_path() -> None:
    # recordInitialRecommendation stamps the seed (7) when the sync starts; the cutoff
    # (now - 0 s) is taken later in the same sync, so the seed is Before(cutoff).
    ctl = HPAController(HPASpec(1, 10, (ext_avg(),)), NO_WINDOW)
    assert ctl.step(0.0, 7, 7, {"q": 100.0}) == 1
    assert ctl.last_reason == "DesiredWithinRange"
