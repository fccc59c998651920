"""The REST API's shared policy, used by every app's `api.py`; the router is `config/api_urls.py`.

It owns who may do what (`StaffWritesOthersRead`), how lists are paged (`ApiPagination`), how
bodies are parsed (`SafeJSONParser`), the three together for a viewset (`ApiViewSetMixin`), and
what the OpenAPI schema says beyond each view's own serializers: the throttle's 429 on every
throttled operation, and links from each create to its detail and actions (the two
`SPECTACULAR_SETTINGS['POSTPROCESSING_HOOKS']`), so that a contract fuzzer can follow them.

The apps' own serializers, viewsets and refusals stay in their `api.py`; nothing here imports an app.
"""

from __future__ import annotations

from rest_framework import permissions
from rest_framework.exceptions import ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from config.paging import EstimatedCountPaginator

# --- Who may do what -------------------------------------------------------------------------


class StaffWritesOthersRead(permissions.BasePermission):
    """Any authenticated user reads; staff write (POST, PUT, PATCH, DELETE, actions) what
    their Django permissions allow them to in the admin, and nothing more.

    Creating needs the model's `add` permission (a bulk import `add` and `change`),
    deleting its `delete`, and every other write, launch, pause, resume, cancel and
    opt-out included, its `change`: the rule of the admin and the operator pages
    (superusers hold every permission).
    """

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return True
        if not user.is_staff:
            return False
        model = _model_of(view)
        return model is None or user.has_perms(_permissions(model, request.method, view))


def _model_of(view):
    queryset = getattr(view, "queryset", None)
    if queryset is None and hasattr(view, "get_queryset"):
        queryset = view.get_queryset()
    return None if queryset is None else queryset.model


def _permissions(model, method: str, view) -> list[str]:
    action = getattr(view, "action", None)
    # A clone creates; a bulk import creates and updates.
    verbs = {"create": ["add"], "clone": ["add"], "bulk": ["add", "change"]}.get(action)
    verbs = verbs or (["delete"] if method == "DELETE" else ["change"])
    return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}" for verb in verbs]


# --- Paging and parsing ----------------------------------------------------------------------


class ApiPagination(PageNumberPagination):
    # An unfiltered list of a large table is counted by PostgreSQL's estimate (config/paging.py).
    django_paginator_class = EstimatedCountPaginator
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class SafeJSONParser(JSONParser):
    """DRF's JSON parser, but a body nested too deep for Python's decoder is a 400, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply.") from None


class ApiViewSetMixin:
    permission_classes = [StaffWritesOthersRead]
    pagination_class = ApiPagination
    parser_classes = [SafeJSONParser, FormParser, MultiPartParser]


# --- What the schema says beyond the views' serializers (postprocessing hooks) ---------------

THROTTLED_SCHEMA = {
    "type": "object",
    "description": "DRF's throttle answer: the client sent more requests than its rate allows.",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "additionalProperties": False,  # what tells it apart from an action's own 429 (launch's quota)
}
_THROTTLED_REF = {"$ref": "#/components/schemas/Throttled"}
_RETRY_AFTER = {
    "description": "Seconds until the client may send again.",
    "schema": {"type": "integer", "minimum": 0},
}


def schema_throttled_responses(result, generator, request, public):
    """Document the throttle's 429 on every operation whose view is throttled (settings
    `API_THROTTLE_USER`/`_ANON`). An operation that answers its own 429 (launch's quota
    refusal) documents both bodies, one of the two."""
    result.setdefault("components", {}).setdefault("schemas", {})["Throttled"] = THROTTLED_SCHEMA
    for path, method in _throttled_operations(generator):
        operation = result["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["responses"]["429"] = _with_throttled(operation["responses"].get("429"))
    return result


def _throttled_operations(generator):
    for path, _regex, method, callback in generator.endpoints or []:
        view = generator.create_view(callback, method)
        if view.get_throttles():
            yield generator.coerce_path(path, method, view), method.lower()


def _with_throttled(response: dict | None) -> dict:
    if response is None:
        content = {"application/json": {"schema": _THROTTLED_REF}}
        return {
            "description": "Too many requests (throttled).",
            "headers": {"Retry-After": _RETRY_AFTER},
            "content": content,
        }
    response.setdefault("headers", {})["Retry-After"] = _RETRY_AFTER  # sent when throttled only
    for media in response.get("content", {}).values():
        media["schema"] = {"oneOf": [media["schema"], _THROTTLED_REF]}
    response["description"] = f"{response.get('description', '')} Or throttled (Throttled).".strip()
    return response


def schema_links(result, generator, request, public):
    """Link each create (`POST /api/<things>/`, 201) to its detail and actions
    (`/api/<things>/{id}/…`), passing the created row's `id`."""
    paths = result.get("paths", {})
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = {
            target["operationId"]: {
                "operationId": target["operationId"],
                "parameters": {"id": "$response.body#/id"},
                "description": f"{method.upper()} {other}, for the row just created.",
            }
            for other, targets in paths.items()
            if other.startswith(f"{path}{{id}}/")
            for method, target in targets.items()
            if "operationId" in target
        }
        if links:
            created["links"] = links
    return result
