"""Manifests: each flavor renders and validates; a misspelled field fails with a clear message."""

from __future__ import annotations

import copy

import pytest
import yaml

from shiftover.errors import BadInput
from shiftover.scaling.hpa import (
    Behavior,
    HPASpec,
    MetricSpec,
    MetricTarget,
    ScalingPolicy,
    ScalingRules,
)
from shiftover.scaling.manifests import (
    WorkloadScaling,
    render_manifests,
    to_yaml,
    validate_manifests,
)

WEB = WorkloadScaling(
    name="web",
    deployment="web",
    hpa=HPASpec(
        3,
        40,
        (
            MetricSpec("External", "rps", MetricTarget("AverageValue", 120.0)),
            MetricSpec("Resource", "cpu", MetricTarget("Utilization", 70)),
        ),
        Behavior(
            scale_up=ScalingRules(
                policies=(ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15))
            ),
            scale_down=ScalingRules(
                stabilization_window_seconds=300, policies=(ScalingPolicy("Percent", 10, 60),)
            ),
        ),
    ),
    datadog_query="sum:trace.rack.request.hits{service:web,env:prod}.as_rate()",
    metric_name="web-requests",
)
WORKER = WorkloadScaling(
    name="worker",
    deployment="sidekiq",
    hpa=HPASpec(1, 20, (MetricSpec("External", "queue", MetricTarget("AverageValue", 0.5)),)),
    datadog_query="max:sidekiq.queue.size{queue:default,env:prod}",
    metric_name="worker-queue",
)


def test_datadog_flavor_renders_hpa_and_datadogmetric() -> None:
    docs = render_manifests(WEB, WORKER, flavor="datadog", namespace="shop")
    kinds = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert kinds == [
        ("DatadogMetric", "web-requests"),
        ("HorizontalPodAutoscaler", "web"),
        ("DatadogMetric", "worker-queue"),
        ("HorizontalPodAutoscaler", "worker"),
    ]
    hpa = docs[1]["spec"]
    external = hpa["metrics"][0]["external"]
    assert external["metric"]["name"] == "datadogmetric@shop:web-requests"
    assert external["target"] == {"type": "AverageValue", "averageValue": "120"}
    assert hpa["metrics"][1]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    assert hpa["behavior"]["scaleDown"]["policies"] == [
        {"type": "Percent", "value": 10, "periodSeconds": 60}
    ]
    assert docs[0]["spec"] == {"query": WEB.datadog_query}
    assert docs[3]["spec"]["metrics"][0]["external"]["target"]["averageValue"] == "500m"
    assert "behavior" not in docs[3]["spec"]


def test_keda_flavor_renders_scaled_objects() -> None:
    docs = render_manifests(
        WEB, WORKER, flavor="keda", namespace="shop", metric_unavailable_value=0
    )
    assert [d["kind"] for d in docs] == ["ScaledObject", "ScaledObject"]
    spec = docs[0]["spec"]
    trigger = spec["triggers"][0]
    assert trigger["type"] == "datadog" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"] == {
        "query": WEB.datadog_query,
        "queryValue": "120",
        "metricUnavailableValue": "0",
    }
    assert spec["triggers"][1] == {
        "type": "cpu",
        "metricType": "Utilization",
        "metadata": {"value": "70"},
    }
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleUp"]["selectPolicy"]
        == "Max"
    )
    assert docs[1]["spec"]["triggers"][0]["metadata"]["queryValue"] == "0.5"


def test_to_yaml_round_trips() -> None:
    docs = render_manifests(WEB, None, flavor="datadog", namespace="shop")
    text = to_yaml(docs)
    assert text.startswith("---\napiVersion: datadoghq.com/v1alpha1\n")
    assert list(yaml.safe_load_all(text)) == docs


@pytest.mark.parametrize(
    ("flavor", "index", "mutate", "words"),
    [
        (
            "datadog",
            1,
            lambda d: d["spec"].update(maxReplica=3),
            "document 2 (autoscaling/v2 HorizontalPodAutoscaler 'web'): at spec",
        ),
        (
            "datadog",
            0,
            lambda d: d["spec"].update(qeury="x"),
            "document 1 (datadoghq.com/v1alpha1 DatadogMetric 'web-requests'): at spec",
        ),
        ("keda", 0, lambda d: d["spec"]["triggers"][0].update(metdata={}), "at spec.triggers[0]"),
        (
            "keda",
            0,
            lambda d: d["spec"]["triggers"][0]["metadata"].update(queryValue=7),
            "at spec.triggers[0].metadata.queryValue",
        ),
        (
            "keda",
            0,
            lambda d: d["spec"].pop("scaleTargetRef"),
            "'scaleTargetRef' is a required property",
        ),
    ],
)
def test_a_broken_document_fails_with_its_name_and_path(
    flavor: str, index: int, mutate: object, words: str
) -> None:
    docs = copy.deepcopy(render_manifests(WEB, None, flavor=flavor, namespace="shop"))  # type: ignore[arg-type]
    mutate(docs[index])  # type: ignore[operator]
    with pytest.raises(BadInput) as info:
        validate_manifests(docs)
    assert words in str(info.value)


def test_misspelled_field_names_the_field() -> None:
    docs = copy.deepcopy(render_manifests(WEB, None, flavor="keda", namespace="shop"))
    docs[0]["spec"]["maxReplicaCout"] = 5
    with pytest.raises(BadInput, match="'maxReplicaCout' was unexpected"):
        validate_manifests(docs)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(BadInput, match="not a valid Kubernetes name"):
        render_manifests(WEB, None, flavor="datadog", namespace="Shop_1")
    two = WorkloadScaling(
        "w",
        "w",
        HPASpec(1, 2, (MetricSpec("External", "a", MetricTarget("Value", 1.0)),) * 2),
        "q",
        "m",
    )
    with pytest.raises(BadInput, match="exactly one"):
        render_manifests(two, None, flavor="keda", namespace="shop")
    with pytest.raises(BadInput, match="no schema"):
        validate_manifests([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}])
