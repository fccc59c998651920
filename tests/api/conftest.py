"""API clients for each kind of caller: anonymous, a read-only user, staff with and without
the permissions an operator is given (token auth)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

# The real Wassenger sandbox process, shared with the messaging tests.
from tests.messaging.conftest import sandbox, sandbox_server  # noqa: F401

RELANCE_APPS = ("campaigns", "messaging", "monitoring", "webhooks")


@pytest.fixture(autouse=True)
def fresh_throttle_counts():
    from django.core.cache import cache

    cache.clear()


def _token_client(*, is_staff: bool, username: str, permissions: bool = True) -> APIClient:
    user = get_user_model().objects.create_user(
        username=username, is_staff=is_staff
    )  # no password: hashing is slow
    if permissions:  # what an operator is given in the admin: every right on Relance's data
        user.user_permissions.set(Permission.objects.filter(content_type__app_label__in=RELANCE_APPS))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    client.user = user
    return client


@pytest.fixture
def anonymous() -> APIClient:
    return APIClient()


@pytest.fixture
def reader(db) -> APIClient:
    return _token_client(is_staff=False, username="reader")


@pytest.fixture
def staff(db) -> APIClient:
    return _token_client(is_staff=True, username="staff")


@pytest.fixture
def staff_without_permissions(db) -> APIClient:
    return _token_client(is_staff=True, username="bare-staff", permissions=False)
