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
  ``advanced.horizontalPodAutoscalerConfig.behavior``. The trigger authenticates
  through a TriggerAuthentication the cluster must already have (its name is a
  parameter; the API and APP keys never appear here).

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

_CRD_SCHEMAS = {
    ("datadoghq.com/v1alpha1", "DatadogMetric"): "datadogmetric_v1alpha1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda_scaledobject_v1alpha1.json",
}
_BUILT_IN = {("autoscaling/v2", "HorizontalPodAutoscaler")}


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
    keda_age_seconds: int | None = None,
    metric_unavailable_value: float | None = None,
) -> list[dict[str, Any]]:
    """The documents for web (and worker), validated. Raises BadInput on a bad input or document."""
    _check_name(namespace, "namespace")
    workloads = [("web", web)] + ([("worker", worker)] if worker is not None else [])
    for role, w in workloads:
        _check_workload(w, role)
    names = [w.name for _, w in workloads]
    if len(set(names)) != len(names):
        raise BadInput(
            f"web and worker share the name {names[0]!r}", hint="give each workload its own name"
        )
    docs: list[dict[str, Any]] = []
    for _, w in workloads:
        if flavor == "datadog":
            docs.append(_datadog_metric_document(w, namespace))
            docs.append(_hpa_document(w, namespace))
        elif flavor == "keda":
            _check_name(keda_auth_name, "keda_auth_name")
            docs.append(
                _scaled_object_document(
                    w,
                    namespace,
                    auth_name=keda_auth_name,
                    age_seconds=keda_age_seconds,
                    metric_unavailable_value=metric_unavailable_value,
                )
            )
        else:
            raise BadInput(f"unknown manifest flavor {flavor!r}", hint="use 'datadog' or 'keda'")
    validate_manifests(docs)
    return docs


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


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream, keys in the order written."""
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True)


__all__ = [
    "KUBERNETES_VERSION",
    "WorkloadScaling",
    "render_manifests",
    "to_yaml",
    "validate_manifests",
]
