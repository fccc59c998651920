"""Who may do what: anonymous → 401, a read-only user reads (403 on writes), staff does
what their Django permissions allow (an operator's: everything).

The matrix lists every path and method of the schema; a test checks that it stays complete.
"""

import pytest
import yaml
from django.contrib.auth.models import Permission

from tests.factories import (
    make_campaign,
    make_category,
    make_contact,
    make_device,
    make_inbound,
    make_message,
)

pytestmark = pytest.mark.django_db

CONTACT = {"phone": "06 12 34 56 78", "first_name": "Lou"}

# (method, path, body, what staff gets). Fresh rows per test: the campaign is a draft with one
# contact, so it launches (200); pausing or resuming a draft is refused (409).
MATRIX = [
    ("get", "/api/devices/", None, 200),
    ("get", "/api/devices/{device}/", None, 200),
    (
        "put",
        "/api/devices/{device}/",
        {"daily_limit": 500, "gap_seconds": 30, "batch_size": 10, "batch_pause_seconds": 60},
        200,
    ),
    ("patch", "/api/devices/{device}/", {"daily_limit": 900}, 200),
    ("get", "/api/categories/", None, 200),
    ("post", "/api/categories/", {"name": "New"}, 201),
    ("get", "/api/categories/{category}/", None, 200),
    ("put", "/api/categories/{category}/", {"name": "Renamed"}, 200),
    ("patch", "/api/categories/{category}/", {"description": "d"}, 200),
    ("delete", "/api/categories/{category}/", None, 204),
    ("get", "/api/contacts/", None, 200),
    ("post", "/api/contacts/", CONTACT, 201),
    ("post", "/api/contacts/bulk/", [CONTACT], 200),
    ("get", "/api/contacts/{contact}/", None, 200),
    ("put", "/api/contacts/{contact}/", CONTACT, 200),
    ("patch", "/api/contacts/{contact}/", {"name": "Martin"}, 200),
    ("post", "/api/contacts/{contact}/opt-out/", None, 200),
    ("get", "/api/contacts/{contact}/conversation/", None, 200),
    ("get", "/api/campaigns/", None, 200),
    ("post", "/api/campaigns/", "campaign", 201),
    ("get", "/api/campaigns/{campaign}/", None, 200),
    ("put", "/api/campaigns/{campaign}/", "campaign", 200),
    ("patch", "/api/campaigns/{campaign}/", {"name": "Renamed"}, 200),
    ("delete", "/api/campaigns/{campaign}/", None, 204),
    ("post", "/api/campaigns/{campaign}/launch/", {}, 200),
    ("post", "/api/campaigns/{campaign}/clone/", None, 201),
    ("post", "/api/campaigns/{campaign}/test-send/", {}, 400),
    ("post", "/api/campaigns/{campaign}/pause/", None, 409),
    ("post", "/api/campaigns/{campaign}/resume/", None, 409),
    ("post", "/api/campaigns/{campaign}/cancel/", None, 200),
    ("post", "/api/campaigns/{campaign}/retry-failed/", None, 409),  # a draft has nothing sent
    ("get", "/api/campaigns/{campaign}/stats/", None, 200),
    ("post", "/api/campaigns/{campaign}/hand-over/", {}, 200),
    ("get", "/api/messages/", None, 200),
    ("get", "/api/messages/{message}/", None, 200),
    ("get", "/api/replies/", None, 200),
    ("get", "/api/replies/{reply}/", None, 200),
    ("get", "/api/stats/daily/", None, 200),
    ("get", "/api/schema/", None, 200),
    ("get", "/api/docs/", None, 200),
]
WRITES = {"post", "put", "patch", "delete"}


@pytest.fixture
def rows():
    device = make_device()
    category = make_category()
    contact = make_contact(categories=[category])
    campaign = make_campaign(device=device, categories=[category])
    message = make_message(campaign=make_campaign(device=device), contact=make_contact())
    return {
        "device": device,
        "category": category,
        "contact": contact,
        "campaign": campaign,
        "message": message,
        "reply": make_inbound(message_1=message),
    }


def _call(client, method, path, body, rows):
    if body == "campaign":
        body = {
            "name": "C",
            "devices": [rows["device"].pk],
            "categories": [rows["category"].pk],
            "message_1_text": "Bonjour {{ first_name }}",
            "message_2_text": "Merci",
        }
    url = path.format(**{name: row.pk for name, row in rows.items()})
    return (
        getattr(client, method)(url, body, format="json")
        if body is not None
        else getattr(client, method)(url)
    )


@pytest.mark.parametrize(("method", "path", "body", "staff_status"), MATRIX)
def test_anonymous_gets_401_everywhere(anonymous, rows, method, path, body, staff_status):
    response = _call(anonymous, method, path, body, rows)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("method", "path", "body", "staff_status"), MATRIX)
def test_a_read_only_user_reads_and_is_refused_every_write(reader, rows, method, path, body, staff_status):
    response = _call(reader, method, path, body, rows)
    assert response.status_code == (403 if method in WRITES else staff_status)


@pytest.mark.parametrize(("method", "path", "body", "staff_status"), MATRIX)
def test_staff_may_do_everything(staff, rows, method, path, body, staff_status):
    response = _call(staff, method, path, body, rows)
    assert response.status_code == staff_status, getattr(response, "data", response.content)


@pytest.mark.parametrize(("method", "path", "body", "staff_status"), MATRIX)
def test_staff_without_the_model_permission_reads_and_is_refused_every_write(
    staff_without_permissions, rows, method, path, body, staff_status
):
    response = _call(staff_without_permissions, method, path, body, rows)
    assert response.status_code == (403 if method in WRITES else staff_status)


def test_launching_needs_the_change_permission_as_in_the_admin(staff_without_permissions, rows):
    user, path = staff_without_permissions.user, f"/api/campaigns/{rows['campaign'].pk}/launch/"
    assert staff_without_permissions.post(path).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="change_campaign"))
    assert staff_without_permissions.post(path).status_code == 200


def test_the_matrix_covers_every_path_and_method_of_the_schema(staff):
    schema = yaml.safe_load(staff.get("/api/schema/").content)
    documented = {
        (method, path) for path, item in schema["paths"].items() for method in item if method != "parameters"
    }
    in_matrix = {
        (
            method,
            path.replace("{device}", "{id}")
            .replace("{category}", "{id}")
            .replace("{contact}", "{id}")
            .replace("{campaign}", "{id}")
            .replace("{message}", "{id}")
            .replace("{reply}", "{id}"),
        )
        for method, path, _, _ in MATRIX
    }
    undocumented = {("get", "/api/schema/"), ("get", "/api/docs/")}
    assert documented == in_matrix - undocumented


def test_session_login_works_like_a_token(client, django_user_model, rows):
    user = django_user_model.objects.create_user(username="op", is_staff=True)
    client.force_login(user)
    assert client.get("/api/categories/").status_code == 200


def test_token_clients_are_throttled_at_the_configured_rate(staff, monkeypatch, settings):
    from rest_framework.throttling import SimpleRateThrottle

    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    assert rates == {"user": settings.API_THROTTLE_USER, "anon": settings.API_THROTTLE_ANON}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "3/minute"})
    answers = [staff.get("/api/devices/").status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(reader):
    import re

    page = reader.get("/api/docs/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in asset for asset in assets), assets
    assert not [asset for asset in assets if asset.startswith(("http:", "https:", "//"))]
