"""Reading and server-side applying the objects the operator owns, as plain dicts.

Server-side apply under one stable field manager (``perf-operator``) lets the API server track
which fields are ours: a person's or another controller's fields are never silently overwritten,
because an apply that would change them fails with a conflict unless it is forced. We force only
where the operator has decided to take fields over (see the callers).

Plain dicts instead of the generated model classes: an apply body must contain exactly the fields
we manage (the models would serialise every unset field as null), and managedFields, quantities
and custom resources (PrometheusRule) are easiest to compare in their wire form.

"Is it different?" is a pure question answered here too (:func:`drifted`), so that a reconcile
with nothing to change sends no write at all.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException

from .. import FIELD_MANAGER
from ..api.conditions import APPLY_FAILED, RESOURCE_CONFLICT, condition_reason
from ..reconcile import EventRecorder, Outcome
from .client import api_client

#: Labels on every object the operator writes, so ``kubectl get -l`` finds them.
MANAGED_BY = ("app.kubernetes.io/managed-by", FIELD_MANAGER)
PROFILE_LABEL = "perf.idp.io/profile"
COMPONENT_LABEL = "perf.idp.io/component"
#: Hash of the body the operator last applied. It tells the operator's own changes (the spec
#: changed: "Updated") from someone else's (same hash, different fields: "Restored").
DESIRED_HASH = "perf.idp.io/desired-hash"


@dataclass(frozen=True)
class Kind:
    """Where a kind lives in the REST API."""

    api_version: str
    kind: str
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{path}/{name}" if name else path


HPA = Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
CONFIG_MAP = Kind("v1", "ConfigMap", "configmaps")
PROMETHEUS_RULE = Kind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")

_KINDS = {(k.api_version, k.kind): k for k in (HPA, CONFIG_MAP, PROMETHEUS_RULE, DEPLOYMENT)}


def kind_of(obj: dict[str, Any]) -> Kind:
    return _KINDS[(obj["apiVersion"], obj["kind"])]


async def _call(method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                body: Any = None, content_type: str = "application/json") -> Any:
    api = await api_client()
    return await api.call_api(
        path, method, query_params=query or [], body=body,
        header_params={"Accept": "application/json", "Content-Type": content_type},
        response_types_map={200: "object", 201: "object"}, auth_settings=["BearerToken"],
        _return_http_data_only=True)


async def get_object(kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return await _call("GET", kind.path(namespace, name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


async def list_objects(kind: Kind, namespace: str) -> list[dict[str, Any]]:
    result = await _call("GET", kind.path(namespace))
    return list(result.get("items") or [])


async def apply(obj: dict[str, Any], *, force: bool = False, dry_run: bool = False
                ) -> dict[str, Any]:
    """Server-side apply ``obj`` (exactly the fields we manage) as ``perf-operator``.

    ``force`` takes fields over from other managers; ``dry_run`` asks the API server to validate
    and default the object without persisting it. Returns the object as the server has it.
    """
    meta = obj["metadata"]
    query = [("fieldManager", FIELD_MANAGER)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return await _call("PATCH", kind_of(obj).path(meta["namespace"], meta["name"]), query=query,
                       body=obj, content_type="application/apply-patch+yaml")


async def delete_owned(kind: Kind, namespace: str, name: str, uid: str) -> bool:
    """Delete the object only if it is still the one we saw (uid precondition): an object of the
    same name created since by someone else is left alone. False when it is already gone."""
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid},
            "propagationPolicy": "Background"}
    try:
        await _call("DELETE", kind.path(namespace, name), body=body)
    except ApiException as err:
        if err.status in (404, 409):
            return False
        raise
    return True


async def served(api_version: str, plural: str) -> bool:
    """Whether the API server serves ``plural`` in ``api_version`` (discovery, which every
    authenticated client may read: no extra RBAC for asking whether a CRD is installed)."""
    try:
        resources = await _call("GET", f"/apis/{api_version}")
    except ApiException as err:
        if err.status in (404, 503):
            return False
        raise
    return any(r.get("name") == plural for r in resources.get("resources") or [])


def api_error_message(err: ApiException) -> str:
    """The API server's own message (e.g. which field failed validation), not the HTTP dump."""
    try:
        return json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{err.status} {err.reason}"


# --- pure helpers ---------------------------------------------------------------------------

def owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    return any(ref.get("uid") == owner_uid
               for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def foreign_managers(obj: dict[str, Any], top_level: str) -> list[str]:
    """Managers other than ours that own fields under ``top_level`` (``spec`` or ``data``).

    The API server records ownership in managedFields; a manager that owns e.g. ``f:spec``
    entries has written those fields (``kubectl apply``, ``kubectl edit``, KEDA)."""
    key = f"f:{top_level}"
    managers = []
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER or entry.get("subresource"):
            continue
        if key in (entry.get("fieldsV1") or {}):
            managers.append(entry["manager"])
    return sorted(set(managers))


#: Fields holding resource quantities: the API server stores them in canonical form
#: ("1000" becomes "1k"), so they are compared by value.
QUANTITY_FIELDS = frozenset({"averageValue", "value"})


def drifted(desired: dict[str, Any], observed: dict[str, Any] | None) -> list[str]:
    """The paths of fields in ``desired`` (an apply body) that ``observed`` does not match.

    Only what we apply is compared: defaults the API server adds and fields of other managers are
    not drift. Owner references are matched by uid (other owners may be listed too); labels and
    annotations must contain ours. Empty list: nothing to write."""
    if observed is None:
        return ["<missing>"]
    paths: list[str] = []
    want_meta, have_meta = desired.get("metadata", {}), observed.get("metadata", {})
    for field in ("labels", "annotations"):
        _compare(want_meta.get(field) or {}, have_meta.get(field) or {},
                 f"metadata.{field}", paths)
    have_refs = {ref.get("uid"): ref for ref in have_meta.get("ownerReferences") or []}
    for ref in want_meta.get("ownerReferences") or []:
        _compare(ref, have_refs.get(ref["uid"]), f"metadata.ownerReferences[{ref['uid']}]",
                 paths)
    for key, value in desired.items():
        if key not in ("apiVersion", "kind", "metadata"):
            _compare(value, observed.get(key), key, paths)
    return paths


def _compare(want: Any, have: Any, path: str, out: list[str]) -> None:
    if isinstance(want, dict):
        if not isinstance(have, dict):
            out.append(path)
            return
        for key, value in want.items():
            sub = f"{path}.{key}"
            if key in QUANTITY_FIELDS and isinstance(value, str):
                if not _same_quantity(value, have.get(key)):
                    out.append(sub)
            else:
                _compare(value, have.get(key), sub, out)
    elif isinstance(want, list):
        if not isinstance(have, list) or len(want) != len(have):
            out.append(path)
            return
        for index, (w, h) in enumerate(zip(want, have, strict=True)):
            _compare(w, h, f"{path}[{index}]", out)
    elif want != have:
        out.append(path)


_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
             "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
             "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
             "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
             "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60)}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("1k", "500m", "2Gi", "1e3") as a number."""
    text = text.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, multiplier = text[:-len(suffix)], _SUFFIXES[suffix]
            break
    else:
        number, multiplier = text, Decimal(1)
    try:
        return Decimal(number) * multiplier
    except InvalidOperation:
        raise ValueError(f"not a quantity: {text!r}") from None


def _same_quantity(want: str, have: Any) -> bool:
    if not isinstance(have, str):
        return False
    try:
        return parse_quantity(want) == parse_quantity(have)
    except ValueError:
        return want == have


# --- objects the operator owns ---------------------------------------------------------------

def object_name(*parts: str, limit: int = 253) -> str:
    """``parts`` joined by '-', shortened with a hash suffix when longer than ``limit`` (a long
    profile name must still give a valid, unique and stable name)."""
    name = "-".join(parts)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:limit - 11].rstrip('-.')}-{digest}"


def owned_object(kind: Kind, name: str, profile: str, namespace: str,
                 owner_reference: dict[str, Any], component: str) -> dict[str, Any]:
    """The metadata every object of a profile carries: labels, and the owner reference that
    makes deleting the profile garbage-collect it."""
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": {
        "name": name, "namespace": namespace,
        "labels": {MANAGED_BY[0]: MANAGED_BY[1], PROFILE_LABEL: object_name(profile, limit=63),
                   COMPONENT_LABEL: component},
        "ownerReferences": [owner_reference]}}


def content_hash(value: Any) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace): equal content, equal hash."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ApplyStep:
    """What to do about one object the operator wants to own."""

    #: create | update | restore | take-over | conflict | unchanged
    action: str
    body: dict[str, Any]
    force: bool = False
    #: The fields that differ (update, restore) or who holds the object (conflict, take-over).
    detail: str = ""

    @property
    def writes(self) -> bool:
        return self.action in ("create", "update", "restore", "take-over")


def plan_owned(desired: dict[str, Any], observed: dict[str, Any] | None, owner_uid: str, *,
               top_level: str, previously_applied: bool = False,
               take_over: bool = False) -> ApplyStep:
    """Decide what to do about ``desired`` given what the API server has (pure).

    * missing: create it (``restore`` if the operator had applied it before);
    * present but not owned by this profile: someone else's. Reported as a conflict, never
      written, unless ``take_over`` (then applied with force, which moves their fields to us);
    * owned and equal on every field we apply: nothing to do, nothing is sent;
    * owned and different: ``update`` when our own desired state changed (the hash annotation
      differs), ``restore`` when someone edited it. Force is used only when another manager
      holds some of our fields (a hand edit): the object is ours, and those fields are ours.
    """
    body = _with_hash(desired)
    if observed is None:
        return ApplyStep("restore" if previously_applied else "create", body,
                         detail="it was deleted" if previously_applied else "")
    others = foreign_managers(observed, top_level)
    if not owned_by(observed, owner_uid):
        holders = f"managed by {', '.join(others)}" if others else "not created by it"
        return ApplyStep("take-over" if take_over else "conflict", body, force=take_over,
                         detail=f"exists and is not owned by this profile ({holders})")
    drift = drifted(body, observed)
    if not drift:
        return ApplyStep("unchanged", body)
    ours_changed = ((observed["metadata"].get("annotations") or {}).get(DESIRED_HASH)
                    != body["metadata"]["annotations"][DESIRED_HASH])
    detail = ", ".join(drift)
    if not ours_changed and others:
        detail += f" (changed by {', '.join(others)})"
    return ApplyStep("update" if ours_changed else "restore", body, force=bool(others),
                     detail=detail)


def _with_hash(desired: dict[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    annotations = {**(meta.get("annotations") or {}), DESIRED_HASH: content_hash(desired)[:16]}
    return {**desired, "metadata": {**meta, "annotations": annotations}}


def announce(events: EventRecorder, step: ApplyStep, where: str) -> None:
    """One Event per transition: callers announce a conflict only when it is new, and the
    other actions happen once because the next reconcile finds nothing to do."""
    if step.action == "create":
        events.normal("Created", f"created {where}")
    elif step.action == "update":
        events.normal("Updated", f"updated {where}: {step.detail}")
    elif step.action == "restore":
        events.normal("Restored", f"restored {where}: {step.detail}")
    elif step.action == "take-over":
        events.normal("TakenOver", f"took over {where}, which {step.detail}")
    elif step.action == "conflict":
        events.warning("Conflict", f"{where} {step.detail}; left unchanged")


async def carry_out(step: ApplyStep, *, status: dict[str, Any], events: EventRecorder,
                    condition: str, where: str, conflict_hint: str) -> Outcome | None:
    """Carry out one planned step on an owned object: None when it is done (or there was
    nothing to do), else the failed Outcome (a conflict, announced once; or a refused apply)."""
    if step.action == "conflict":
        if condition_reason(status, condition) != "ResourceConflict":
            announce(events, step, where)
        return Outcome(condition=condition, ready=False, reason=RESOURCE_CONFLICT,
                       message=f"{where} {step.detail}; {conflict_hint}")
    if step.writes:
        try:
            await apply(step.body, force=step.force)
        except ApiException as err:
            return Outcome(condition=condition, ready=False, reason=APPLY_FAILED,
                           message=f"{where}: {api_error_message(err)}")
        announce(events, step, where)
    return None
