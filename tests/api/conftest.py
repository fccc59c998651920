"""API clients for each kind of caller: anonymous, a read-only user, staff (token auth)."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient


@pytest.fixture(scope="session", autouse=True)
def cache_table(django_db_setup, django_db_blocker):
    """Throttling counts in the database cache, whose table `migrate` does not create."""
    with django_db_blocker.unblock():
        call_command("createcachetable", verbosity=0)


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
