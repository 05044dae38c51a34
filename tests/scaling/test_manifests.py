"""Manifests: each flavor renders and validates, with what it references (KEDA's TriggerAuthentication, overprovisioning); a misspelled field fails with a clear message."""

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
    OVERPROVISIONING_PRIORITY,
    PAUSE_IMAGE,
    DatadogSecret,
    Headroom,
    WorkloadScaling,
    notes,
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
    assert [d["kind"] for d in docs] == ["TriggerAuthentication", "ScaledObject", "ScaledObject"]
    spec = docs[1]["spec"]
    trigger = spec["triggers"][0]
    assert trigger["type"] == "datadog" and trigger["metricType"] == "AverageValue"
    assert trigger["authenticationRef"] == {"name": docs[0]["metadata"]["name"]}
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
    assert docs[2]["spec"]["triggers"][0]["metadata"]["queryValue"] == "0.5"


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
        ("keda", 1, lambda d: d["spec"]["triggers"][0].update(metdata={}), "at spec.triggers[0]"),
        (
            "keda",
            1,
            lambda d: d["spec"]["triggers"][0]["metadata"].update(queryValue=7),
            "at spec.triggers[0].metadata.queryValue",
        ),
        (
            "keda",
            1,
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
    docs[1]["spec"]["maxReplicaCout"] = 5
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


# --- what the outputs reference: KEDA's TriggerAuthentication, overprovisioning ---


def test_keda_trigger_authentication_points_at_the_secret_never_at_values() -> None:
    secret = DatadogSecret(name="dd-keys", api_key="api", app_key="app", site_key="site")
    docs = render_manifests(
        WEB, WORKER, flavor="keda", namespace="shop", keda_auth_name="dd-auth", keda_secret=secret
    )
    auth = docs[0]
    assert auth["kind"] == "TriggerAuthentication"
    assert auth["metadata"] == {"name": "dd-auth", "namespace": "shop"}
    assert auth["spec"] == {
        "secretTargetRef": [
            {"parameter": "apiKey", "name": "dd-keys", "key": "api"},
            {"parameter": "appKey", "name": "dd-keys", "key": "app"},
            {"parameter": "datadogSite", "name": "dd-keys", "key": "site"},
        ]
    }
    datadog_triggers = [
        t for d in docs[1:] for t in d["spec"]["triggers"] if t["type"] == "datadog"
    ]
    assert len(datadog_triggers) == 2
    assert all(t["authenticationRef"] == {"name": "dd-auth"} for t in datadog_triggers)
    # the CPU trigger needs no credentials
    assert "authenticationRef" not in docs[1]["spec"]["triggers"][1]


def test_keda_defaults_follow_kedas_datadog_docs_and_leave_the_site_out() -> None:
    auth = render_manifests(WEB, None, flavor="keda", namespace="shop")[0]
    refs = auth["spec"]["secretTargetRef"]
    assert [(r["parameter"], r["name"], r["key"]) for r in refs] == [
        ("apiKey", "datadog-secrets", "apiKey"),
        ("appKey", "datadog-secrets", "appKey"),
    ]


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        (DatadogSecret(api_key="0123456789abcdef0123456789abcdef"), "looks like a Datadog key"),
        (DatadogSecret(app_key="0123456789abcdef0123456789abcdef01234567"), "looks like a Datadog key"),
        (DatadogSecret(api_key="api key"), "not a valid key of a Secret"),
        (DatadogSecret(api_key="k", app_key="k"), "must differ"),
        (DatadogSecret(name="Datadog_Secrets"), "not a valid Kubernetes name"),
    ],
)
def test_bad_secret_references_are_refused(secret: DatadogSecret, words: str) -> None:
    with pytest.raises(BadInput, match=words):
        render_manifests(WEB, None, flavor="keda", namespace="shop", keda_secret=secret)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d["spec"].update(secretTargetRefs=[]), "'secretTargetRefs' was unexpected"),
        (lambda d: d["spec"]["secretTargetRef"][0].pop("key"), "'key' is a required property"),
        (lambda d: d.pop("spec"), "'spec' is a required property"),
    ],
)
def test_a_broken_trigger_authentication_fails_against_the_crd_schema(
    mutate: object, words: str
) -> None:
    docs = copy.deepcopy(render_manifests(WEB, None, flavor="keda", namespace="shop"))
    mutate(docs[0])  # type: ignore[operator]
    with pytest.raises(BadInput) as info:
        validate_manifests(docs)
    assert "keda.sh/v1alpha1 TriggerAuthentication" in str(info.value)
    assert words in str(info.value)
    assert "keda_triggerauthentication_v1alpha1.json" in str(info.value)


HEADROOM = Headroom(pods=3, cpu_milli=1500, memory_mib=2048)


@pytest.mark.parametrize("flavor", ["datadog", "keda"])
def test_headroom_renders_a_priority_class_and_pause_pods(flavor: str) -> None:
    docs = render_manifests(WEB, WORKER, flavor=flavor, namespace="shop", headroom=HEADROOM)  # type: ignore[arg-type]
    klass, deployment = docs[-2], docs[-1]
    assert klass["kind"] == "PriorityClass" and klass["apiVersion"] == "scheduling.k8s.io/v1"
    assert klass["metadata"] == {"name": "overprovisioning"}  # cluster-scoped: no namespace
    assert klass["value"] == OVERPROVISIONING_PRIORITY == -10
    assert klass["preemptionPolicy"] == "Never" and klass["globalDefault"] is False
    assert deployment["kind"] == "Deployment" and deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["name"] == "web-overprovisioning"
    assert deployment["metadata"]["namespace"] == "shop"
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "overprovisioning"
    assert pod["terminationGracePeriodSeconds"] == 0
    (container,) = pod["containers"]
    assert container["image"] == PAUSE_IMAGE
    assert PAUSE_IMAGE.startswith("registry.k8s.io/pause:3.")
    assert container["resources"] == {"requests": {"cpu": "1500m", "memory": "2Gi"}}


def test_no_headroom_no_placeholders() -> None:
    for headroom in (None, Headroom(pods=0, cpu_milli=1000, memory_mib=1024)):
        kinds = {d["kind"] for d in render_manifests(WEB, None, flavor="datadog", namespace="shop", headroom=headroom)}
        assert kinds == {"DatadogMetric", "HorizontalPodAutoscaler"}


def test_bad_headroom_is_refused() -> None:
    with pytest.raises(BadInput, match="0 or more"):
        render_manifests(WEB, None, flavor="datadog", namespace="shop", headroom=Headroom(-1, 1000, 1024))
    with pytest.raises(BadInput, match="hold no room"):
        render_manifests(WEB, None, flavor="datadog", namespace="shop", headroom=Headroom(2, 0, 0))
    with pytest.raises(BadInput, match="priority class 'Low' is not a valid Kubernetes name"):
        render_manifests(
            WEB, None, flavor="datadog", namespace="shop", headroom=Headroom(2, 100, 0, priority_class="Low")
        )


def test_headroom_quantities_and_priority_class_name() -> None:
    docs = render_manifests(
        WEB,
        None,
        flavor="datadog",
        namespace="shop",
        headroom=Headroom(pods=1, cpu_milli=2000, memory_mib=1536, priority_class="headroom"),
    )
    assert docs[-2]["metadata"]["name"] == "headroom"
    pod = docs[-1]["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "headroom"
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "2", "memory": "1536Mi"}


@pytest.mark.parametrize(
    ("index", "mutate", "words"),
    [
        (-1, lambda d: d["spec"]["template"]["spec"].update(priorityClass="x"), "Deployment 'web-overprovisioning'"),
        (-2, lambda d: d.update(value="low"), "PriorityClass 'overprovisioning'): at value"),
        (-2, lambda d: d.update(preemptionPolicy=0), "at preemptionPolicy"),
    ],
)
def test_broken_headroom_documents_fail_strict_validation(
    index: int, mutate: object, words: str
) -> None:
    docs = copy.deepcopy(
        render_manifests(WEB, None, flavor="datadog", namespace="shop", headroom=HEADROOM)
    )
    mutate(docs[index])  # type: ignore[operator]
    with pytest.raises(BadInput) as info:
        validate_manifests(docs)
    assert words in str(info.value)


def test_notes_say_what_the_cluster_must_hold_and_keep_the_yaml_intact() -> None:
    docs = render_manifests(
        WEB, WORKER, flavor="keda", namespace="shop", keda_secret=DatadogSecret(name="dd-keys"), headroom=HEADROOM
    )
    lines = notes(docs)
    text = "\n".join(lines)
    assert (
        'kubectl create secret generic dd-keys -n shop --from-literal=apiKey="$DD_API_KEY" '
        '--from-literal=appKey="$DD_APP_KEY"'
    ) in text
    assert "datadoghq.com" in text  # no site key: says which site KEDA queries
    assert "PriorityClass overprovisioning is cluster-scoped" in text
    out = to_yaml(docs, header=lines)
    assert out.startswith("# KEDA reads the Datadog keys from the Secret dd-keys in namespace shop")
    assert list(yaml.safe_load_all(out)) == docs

    dd = notes(render_manifests(WEB, WORKER, flavor="datadog", namespace="shop"))
    assert sum("Cluster Agent" in line for line in dd) == 1
    assert "its own API and APP keys" in " ".join(dd)
