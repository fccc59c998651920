"""API clients for each kind of caller: anonymous, a read-only user, staff (token auth)."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

# The real Wassenger sandbox process, shared with the messaging tests.
from tests.messaging.conftest import sandbox, sandbox_server  # noqa: F401


@pytest.fixture(autouse=True)
def fresh_throttle_counts():
    from django.core.cache import cache

    cache.clear()


def _token_client(*, is_staff: bool, username: str) -> APIClient:
    user = get_user_model().objects.create_user(
        username=username, is_staff=is_staff
    )  # no password: hashing is slow
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
