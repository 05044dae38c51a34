"""Kubernetes manifests for the autoscaling a simulation recommended.

Two ways to feed a Datadog query to the HPA controller, as the issue asks:

- ``flavor="datadog"``: the Datadog Cluster Agent serves External metrics. Each
  workload gets an ``autoscaling/v2`` HorizontalPodAutoscaler whose External
  metric is named ``datadogmetric@<namespace>:<name>`` and a
  ``datadoghq.com/v1alpha1`` ``DatadogMetric`` holding the query.
- ``flavor="keda"``: KEDA owns the HPA. Each workload gets a ``keda.sh/v1alpha1``
  ``ScaledObject`` with a ``datadog`` trigger (``query``, ``queryValue``,
  optional ``age`` and ``metricUnavailableValue``; the target type goes in the
  trigger's ``metricType``, which KEDA's docs prefer to the deprecated
  ``metadata.type``) and the behavior under
  ``advanced.horizontalPodAutoscalerConfig.behavior``. The triggers authenticate
  through one ``TriggerAuthentication`` rendered here too: ``secretTargetRef``s
  to a Secret whose name and keys are parameters (:class:`DatadogSecret`). The
  API and APP keys themselves never appear in the output: a manifest ends up in
  git, a key must not.

The Datadog flavor references no credentials of ours: the Cluster Agent queries
Datadog with its own API and APP keys, set when it was installed.

What the outputs reference also comes with them: with ``cluster.overprovisioning.pods``
> 0 (either flavor), a ``PriorityClass`` and a ``Deployment`` of pause pods, as the
Cluster Autoscaler FAQ ("How can I configure overprovisioning with Cluster
Autoscaler?") describes. The class's value is -10: Cluster Autoscaler ignores
pods below ``--expendable-pods-priority-cutoff`` (default -10) when it decides to
scale up, so a lower value (the -1000 of some guides) would leave the displaced
pause pods Pending without bringing the warm node back, which is the whole point.
``preemptionPolicy: Never``: a placeholder exists to hold room, never to evict
anything (expendable pods below the cutoff included); one that does not fit stays
Pending, and that is what makes Cluster Autoscaler add the node.

Every document is checked before it is returned to anyone who asks
(:func:`validate_manifests`): built-in kinds with kubernetes-validate in strict
mode (a misspelled field fails), CRDs with jsonschema against the schemas in
``schemas/`` (transcribed from the published CRDs; see their ``$comment``).

Quantities are written exactly: 100 -> ``"100"``, 0.5 -> ``"500m"`` (the
controller reads milli-units, so nothing finer is meaningful).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import jsonschema
import kubernetes_validate
import yaml

from shiftover.errors import BadInput
from shiftover.scaling.hpa import HPASpec, MetricSpec, ScalingRules, _milli

KUBERNETES_VERSION = "1.30.0"
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a namespace: no '.', at most 63

_CRD_SCHEMAS = {
    ("datadoghq.com/v1alpha1", "DatadogMetric"): "datadogmetric_v1alpha1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda_scaledobject_v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda_triggerauthentication_v1alpha1.json",
}
_BUILT_IN = {
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("apps/v1", "Deployment"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
}

#: The pause image the headroom pods run (the tag kubeadm pins; pinned so a
#: re-render never pulls something new).
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.1"
#: The lowest priority whose Pending pods still make Cluster Autoscaler scale up
#: (its default ``--expendable-pods-priority-cutoff``); real pods (priority 0)
#: preempt them.
OVERPROVISIONING_PRIORITY = -10
# A Secret's data keys (Kubernetes' IsConfigMapKey).
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]{1,253}$")
# What a Datadog API key (32 hex) or APP key (40 hex) looks like.
_LOOKS_LIKE_A_KEY = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{40})$")


@dataclass(frozen=True)
class DatadogSecret:
    """Where KEDA reads the Datadog credentials: a Secret in the workloads' namespace.

    ``api_key`` / ``app_key`` / ``site_key`` are the *keys* of the Secret's data
    that hold each value (KEDA's parameters apiKey, appKey and datadogSite), never
    the values. ``site_key`` is optional: without it KEDA uses datadoghq.com.
    """

    name: str = "datadog-secrets"
    api_key: str = "apiKey"
    app_key: str = "appKey"
    site_key: str | None = None


@dataclass(frozen=True)
class Headroom:
    """Overprovisioning: ``pods`` pause pods, each requesting ``cpu_milli`` and ``memory_mib``."""

    pods: int
    cpu_milli: int
    memory_mib: int
    priority_class: str = "overprovisioning"


@dataclass(frozen=True)
class WorkloadScaling:
    """One Deployment's autoscaling: its HPA spec and the Datadog query behind its External metric.

    ``name`` names the HPA / ScaledObject; ``metric_name`` names the DatadogMetric.
    """

    name: str
    deployment: str
    hpa: HPASpec
    datadog_query: str
    metric_name: str


def _quantity(value: float) -> str:
    milli = _milli(value)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _check_name(value: str, what: str) -> None:
    if len(value) > 253 or not _DNS1123.match(value):
        raise BadInput(
            f"{what} {value!r} is not a valid Kubernetes name",
            hint="use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        )


def _check_secret(secret: DatadogSecret) -> None:
    if _LOOKS_LIKE_A_KEY.match(secret.name):  # refused unechoed, like the fields below
        raise BadInput(
            "the Secret name (--secret-name) looks like a Datadog key itself",
            hint="pass the name of the Secret that holds the keys (e.g. datadog-secrets), never a key: "
            "manifests end up in git",
        )
    _check_name(secret.name, "secret name")
    fields = [("API key", secret.api_key, "--api-key-field apiKey"), ("APP key", secret.app_key, "--app-key-field appKey")]
    if secret.site_key is not None:
        fields.append(("site", secret.site_key, "--site-field datadogSite"))
    for what, key, example in fields:
        if _LOOKS_LIKE_A_KEY.match(key):
            raise BadInput(
                f"the Secret key for the Datadog {what} looks like a Datadog key itself",
                hint=f"pass the name of the field in the Secret that holds it (e.g. {example}), never the key: "
                "manifests end up in git",
            )
        if not _SECRET_KEY.match(key):
            raise BadInput(
                f"{key!r} is not a valid key of a Secret (for the Datadog {what})",
                hint=f"a Secret's keys use letters, digits, '-', '_' and '.', e.g. {example}",
            )
    if len({k for _, k, _ in fields}) != len(fields):
        raise BadInput(
            "the Secret keys for the Datadog API key, APP key and site must differ",
            hint="e.g. apiKey, appKey and datadogSite",
        )


def _rules(rules: ScalingRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    out["selectPolicy"] = rules.select_policy
    if rules.policies:
        out["policies"] = [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ]
    return out


def _behavior(spec: HPASpec) -> dict[str, Any] | None:
    b = spec.behavior
    if b is None:
        return None
    out: dict[str, Any] = {}
    if b.scale_up is not None:
        out["scaleUp"] = _rules(b.scale_up)
    if b.scale_down is not None:
        out["scaleDown"] = _rules(b.scale_down)
    return out


def _target(m: MetricSpec) -> dict[str, Any]:
    t = m.target
    if t.type == "Utilization":
        return {"type": "Utilization", "averageUtilization": int(t.value)}
    if t.type == "AverageValue":
        return {"type": "AverageValue", "averageValue": _quantity(t.value)}
    return {"type": "Value", "value": _quantity(t.value)}


def _external_metric(w: WorkloadScaling) -> MetricSpec:
    external = [m for m in w.hpa.metrics if m.source == "External"]
    if len(external) != 1:
        raise BadInput(
            f"workload {w.name!r} has {len(external)} External metrics; the manifests need exactly one",
            hint="one Datadog query (datadog_query) backs the workload's one External metric",
        )
    for m in w.hpa.metrics:
        if m.source == "Object":
            raise BadInput(
                f"workload {w.name!r}: Object metric {m.name!r} cannot be rendered (no described object)",
                hint="use an External metric backed by a Datadog query instead",
            )
    return external[0]


def _check_workload(w: WorkloadScaling, role: str) -> None:
    _check_name(w.name, f"{role} name")
    _check_name(w.deployment, f"{role} deployment")
    _check_name(w.metric_name, f"{role} metric_name")
    if not w.datadog_query.strip():
        raise BadInput(
            f"{role} workload {w.name!r} has an empty datadog_query", hint="give the Datadog query"
        )


def _hpa_document(w: WorkloadScaling, namespace: str) -> dict[str, Any]:
    ext = _external_metric(w)
    metrics: list[dict[str, Any]] = []
    for m in w.hpa.metrics:
        if m.source == "Resource":
            metrics.append({"type": "Resource", "resource": {"name": m.name, "target": _target(m)}})
        elif m.source == "Pods":
            metrics.append(
                {"type": "Pods", "pods": {"metric": {"name": m.name}, "target": _target(m)}}
            )
        elif m is ext:
            metric = {"name": f"datadogmetric@{namespace}:{w.metric_name}"}
            metrics.append(
                {"type": "External", "external": {"metric": metric, "target": _target(m)}}
            )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.deployment},
        "minReplicas": w.hpa.min_replicas,
        "maxReplicas": w.hpa.max_replicas,
        "metrics": metrics,
    }
    behavior = _behavior(w.hpa)
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": w.name, "namespace": namespace},
        "spec": spec,
    }


def _datadog_metric_document(w: WorkloadScaling, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "datadoghq.com/v1alpha1",
        "kind": "DatadogMetric",
        "metadata": {"name": w.metric_name, "namespace": namespace},
        "spec": {"query": w.datadog_query},
    }


def _scaled_object_document(
    w: WorkloadScaling,
    namespace: str,
    *,
    auth_name: str,
    age_seconds: int | None,
    metric_unavailable_value: float | None,
) -> dict[str, Any]:
    ext = _external_metric(w)
    triggers: list[dict[str, Any]] = []
    for m in w.hpa.metrics:
        if m is ext:
            metadata = {"query": w.datadog_query, "queryValue": _plain_number(m.target.value)}
            if age_seconds is not None:
                metadata["age"] = str(age_seconds)
            if metric_unavailable_value is not None:
                metadata["metricUnavailableValue"] = _plain_number(metric_unavailable_value)
            triggers.append(
                {
                    "type": "datadog",
                    "metricType": m.target.type,
                    "metadata": metadata,
                    "authenticationRef": {"name": auth_name},
                }
            )
        elif m.source == "Resource":
            value = (
                str(int(m.target.value))
                if m.target.type == "Utilization"
                else _quantity(m.target.value)
            )
            triggers.append(
                {"type": m.name, "metricType": m.target.type, "metadata": {"value": value}}
            )
        else:
            raise BadInput(
                f"workload {w.name!r}: a {m.source} metric has no KEDA trigger here",
                hint="use flavor 'datadog', or an External (Datadog) or Resource metric",
            )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.deployment},
        "minReplicaCount": w.hpa.min_replicas,
        "maxReplicaCount": w.hpa.max_replicas,
        "triggers": triggers,
    }
    behavior = _behavior(w.hpa)
    if behavior is not None:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": w.name, "namespace": namespace},
        "spec": spec,
    }


def _trigger_auth_document(name: str, namespace: str, secret: DatadogSecret) -> dict[str, Any]:
    refs = [
        {"parameter": "apiKey", "name": secret.name, "key": secret.api_key},
        {"parameter": "appKey", "name": secret.name, "key": secret.app_key},
    ]
    if secret.site_key is not None:
        refs.append({"parameter": "datadogSite", "name": secret.name, "key": secret.site_key})
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"secretTargetRef": refs},
    }


def _cpu(milli: int) -> str:
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def _memory(mib: int) -> str:
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _headroom_documents(name: str, namespace: str, headroom: Headroom) -> list[dict[str, Any]]:
    """The PriorityClass (cluster-scoped: no namespace) and the Deployment of pause pods."""
    labels = {"app.kubernetes.io/name": name}
    requests: dict[str, str] = {}
    if headroom.cpu_milli:
        requests["cpu"] = _cpu(headroom.cpu_milli)
    if headroom.memory_mib:
        requests["memory"] = _memory(headroom.memory_mib)
    priority_class = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": headroom.priority_class},
        "value": OVERPROVISIONING_PRIORITY,
        "preemptionPolicy": "Never",
        "globalDefault": False,
        "description": "Overprovisioning placeholders (pause pods): any pod of higher priority preempts "
        "them; at -10 Cluster Autoscaler still adds nodes for them, so a warm node is kept.",
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": headroom.pods,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "priorityClassName": headroom.priority_class,
                    "terminationGracePeriodSeconds": 0,
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": "reserve-resources",
                            "image": PAUSE_IMAGE,
                            "resources": {"requests": requests},
                        }
                    ],
                },
            },
        },
    }
    return [priority_class, deployment]


def _check_headroom(headroom: Headroom, name: str) -> None:
    _check_name(headroom.priority_class, "priority class")
    _check_name(name, "overprovisioning deployment")
    if len(name) > 63:
        raise BadInput(
            f"the overprovisioning deployment name {name!r} is longer than 63 characters (a label value)",
            hint="shorten web.deployment in the config",
        )
    if headroom.cpu_milli <= 0 and headroom.memory_mib <= 0:
        raise BadInput(
            "overprovisioning pods request no cpu and no memory: they would hold no room",
            hint="set cluster.overprovisioning.requests (default: the web pod's requests)",
        )


def _plain_number(value: float) -> str:
    """A float as KEDA parses it (strconv.ParseFloat): 100 -> '100', 7.75 -> '7.75'."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render_manifests(
    web: WorkloadScaling,
    worker: WorkloadScaling | None,
    *,
    flavor: Literal["datadog", "keda"],
    namespace: str,
    keda_auth_name: str = "keda-trigger-auth-datadog-secret",
    keda_secret: DatadogSecret = DatadogSecret(),
    keda_age_seconds: int | None = None,
    metric_unavailable_value: float | None = None,
    headroom: Headroom | None = None,
) -> list[dict[str, Any]]:
    """The documents for web (and worker), and what they reference, validated.

    KEDA: one TriggerAuthentication (``keda_auth_name``, reading ``keda_secret``)
    first, then a ScaledObject per workload. With ``headroom`` of 1 pod or more
    (either flavor), a PriorityClass and a Deployment ``<web name>-overprovisioning``
    of pause pods at the end. Raises BadInput on a bad input or document.
    """
    if not _DNS1123_LABEL.match(namespace):  # the API server validates namespaces as labels, not subdomains
        raise BadInput(
            f"namespace {namespace!r} is not a valid Kubernetes name for a namespace (a DNS label)",
            hint="use at most 63 lower-case letters, digits and '-' (no '.'), starting and ending with a letter or digit",
        )
    workloads = [("web", web)] + ([("worker", worker)] if worker is not None else [])
    for role, w in workloads:
        _check_workload(w, role)
    names = [w.name for _, w in workloads]
    if len(set(names)) != len(names):
        raise BadInput(
            f"web and worker share the name {names[0]!r}", hint="give each workload its own name"
        )
    if flavor not in ("datadog", "keda"):
        raise BadInput(f"unknown manifest flavor {flavor!r}", hint="use 'datadog' or 'keda'")
    docs: list[dict[str, Any]] = []
    if flavor == "keda":
        _check_name(keda_auth_name, "TriggerAuthentication name (--trigger-auth)")
        _check_secret(keda_secret)
        docs.append(_trigger_auth_document(keda_auth_name, namespace, keda_secret))
    for _, w in workloads:
        if flavor == "datadog":
            docs.append(_datadog_metric_document(w, namespace))
            docs.append(_hpa_document(w, namespace))
        else:
            docs.append(
                _scaled_object_document(
                    w,
                    namespace,
                    auth_name=keda_auth_name,
                    age_seconds=keda_age_seconds,
                    metric_unavailable_value=metric_unavailable_value,
                )
            )
    if headroom is not None and headroom.pods < 0:
        raise BadInput(f"overprovisioning pods must be 0 or more, got {headroom.pods}")
    if headroom is not None and headroom.pods > 0:
        name = f"{web.name}-overprovisioning"
        _check_headroom(headroom, name)
        docs.extend(_headroom_documents(name, namespace, headroom))
    validate_manifests(docs)
    return docs


def notes(docs: list[dict[str, Any]]) -> list[str]:
    """What the documents need from the cluster that they do not hold, as comment lines.

    The Secret KEDA reads (with a ``kubectl`` line that takes the keys from the
    environment, so no key is typed into a file), and who holds the DatadogMetric
    credentials.
    """
    lines: list[str] = []
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata", {})
        if kind == "TriggerAuthentication":
            refs = doc["spec"]["secretTargetRef"]
            secret, ns = refs[0]["name"], meta.get("namespace", "default")
            env = {"apiKey": "DD_API_KEY", "appKey": "DD_APP_KEY", "datadogSite": "DD_SITE"}
            literals = " ".join(f'--from-literal={r["key"]}="${env[r["parameter"]]}"' for r in refs)
            keys = ", ".join(
                r["key"] if r["key"] == r["parameter"] else f'{r["key"]} ({r["parameter"]})' for r in refs
            )
            lines += [
                f"KEDA reads the Datadog keys from the Secret {secret} in namespace {ns}: keys {keys}.",
                "It is not in this file (no key ever is); create it once, e.g.:",
                f"  kubectl create secret generic {secret} -n {ns} {literals}",
            ]
            if not any(r["parameter"] == "datadogSite" for r in refs):
                lines.append(
                    "No datadogSite: KEDA queries datadoghq.com; for another site (datadoghq.eu, ...) "
                    "add it to the Secret and pass --site-field with its key."
                )
        elif kind == "DatadogMetric" and not any("Cluster Agent" in line for line in lines):
            lines += [
                "The DatadogMetric objects are served by the Datadog Cluster Agent's external metrics",
                "provider with DatadogMetric support (Helm: clusterAgent.metricsProvider.enabled and",
                "useDatadogMetrics); it queries Datadog with its own API and APP keys, from its install,",
                "not from these manifests.",
            ]
        elif kind == "PriorityClass":
            lines.append(
                f"PriorityClass {meta['name']} is cluster-scoped: applying it needs cluster-wide rights."
            )
    return lines


@cache
def _schema(filename: str) -> dict[str, Any]:
    text = (
        resources.files("shiftover.scaling")
        .joinpath("schemas", filename)
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(document root)"


def validate_manifests(docs: list[dict[str, Any]]) -> None:
    """Validate every document; raise BadInput naming the document and the path of the first problem."""
    for i, doc in enumerate(docs):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        api = doc.get("apiVersion") if isinstance(doc, dict) else None
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        label = f"document {i + 1} ({api} {kind} {name!r})"
        if not isinstance(name, str) or not name:
            raise BadInput(f"{label}: metadata.name is missing", hint="every object needs a name")
        key = (api, kind)
        if key in _BUILT_IN:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise BadInput(
                    f"{label}: at {_path(exc.path)}: {exc.message}",
                    hint=f"fix the field against the Kubernetes {KUBERNETES_VERSION} schema",
                ) from None
            continue
        filename = _CRD_SCHEMAS.get(key)  # type: ignore[arg-type]
        if filename is None:
            known = ", ".join(f"{a} {k}" for a, k in sorted(_BUILT_IN | set(_CRD_SCHEMAS)))
            raise BadInput(f"{label}: no schema for this kind", hint=f"known kinds: {known}")
        validator = jsonschema.Draft7Validator(_schema(filename))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            raise BadInput(
                f"{label}: at {_path(first.absolute_path)}: {first.message}",
                hint=f"fix the field against the published {kind} CRD schema (schemas/{filename})",
            )


def to_yaml(docs: list[dict[str, Any]], header: Sequence[str] = ()) -> str:
    """A multi-document YAML stream, keys in the order written; ``header`` lines as ``#`` comments first."""
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header)
    return comments + body


__all__ = [
    "KUBERNETES_VERSION",
    "OVERPROVISIONING_PRIORITY",
    "PAUSE_IMAGE",
    "DatadogSecret",
    "Headroom",
    "WorkloadScaling",
    "notes",
    "render_manifests",
    "to_yaml",
    "validate_manifests",
]
