"""Clients for the operator pages: an operator (staff, may act) and a viewer (may only look)."""

import pytest
from django.contrib.auth import get_user_model


def _client(client, *, username: str, **flags):
    client.force_login(get_user_model().objects.create_user(username=username, **flags))
    return client


@pytest.fixture
def operator(client, db):
    return _client(client, username="operator", is_staff=True, is_superuser=True)


@pytest.fixture
def viewer(client, db):
    return _client(client, username="viewer")
