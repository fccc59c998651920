"""The REST API's shared policy, used by every app's `api.py`; the router is `config/api_urls.py`.

It owns who may do what (`StaffWritesOthersRead`), how lists are paged (`ApiPagination`), how
bodies are parsed (`SafeJSONParser`), and the three together for a viewset (`ApiViewSetMixin`).

The apps' own serializers, viewsets and refusals stay in their `api.py`; nothing here imports an app.
"""

from __future__ import annotations

from rest_framework import permissions
from rest_framework.exceptions import ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

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
    verbs = {"create": ["add"], "bulk": ["add", "change"]}.get(action)  # bulk creates and updates
    verbs = verbs or (["delete"] if method == "DELETE" else ["change"])
    return [f"{model._meta.app_label}.{verb}_{model._meta.model_name}" for verb in verbs]


# --- Paging and parsing ----------------------------------------------------------------------


class ApiPagination(PageNumberPagination):
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
