"""Will the new environment keep up? HPA + Cluster Autoscaler simulator.

Modules, in the order data flows through them:

- :mod:`~shiftover.scaling.trace` — the traffic trace (CSV) as per-second demand;
- :mod:`~shiftover.scaling.config` — ``scaling.yaml`` (the pydantic boundary) and
  the plain values the simulator reads;
- :mod:`~shiftover.scaling.hpa` — one HPA sync with the controller's arithmetic;
- :mod:`~shiftover.scaling.cluster` — pods on nodes, the scheduler, Cluster Autoscaler;
- :mod:`~shiftover.scaling.sim` — the replay: ``simulate(trace, config) -> SimResult``;
- :mod:`~shiftover.scaling.recommend` — the sweep for the cheapest setting within the SLO;
- :mod:`~shiftover.scaling.chart` — PNG and self-contained HTML;
- :mod:`~shiftover.scaling.manifests` — HPA/DatadogMetric or KEDA manifests, validated.

Nothing is imported here, so ``import shiftover.scaling.hpa`` stays light.
"""
