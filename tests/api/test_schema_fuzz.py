"""The API against its own OpenAPI schema: schemathesis generates requests for every operation
(valid and invalid bodies, query strings, path ids) and sends them to the Django WSGI app as
staff. No answer may be a 5xx, and every documented answer must match its schema. A stateful
run follows the schema's links (create, then the row's detail and actions).

Below it, what the contract says beyond the serializers (config/api.py's postprocessing hooks):
the throttle's 429 on every operation, launch's two 429 bodies, E.164 phones, the links; and a
real throttled answer and a real quota refusal checked against the documented 429.

The schema is generated at collection by the generator `/api/schema/` serves (loading it over
HTTP would need a user, hence a database, before tests run; and schemathesis 4.32's lazy
`from_fixture` loader does not work with pytest 9). A test checks it is the served schema.
"""

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application
from tests.factories import make_campaign, make_category, make_contact, make_device, make_message


def _generated_schema() -> dict:
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


pytestmark = pytest.mark.django_db  # the API's conftest clears throttle counts, in the database cache

schema = schemathesis.openapi.from_dict(_generated_schema())
schema.app = application


@pytest.fixture
def same_connection():
    """Keep the test's connection (and its transaction) across requests, as Django's test
    client does: the WSGI handler would otherwise close it at each request's start and end."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def staff_headers(staff, same_connection) -> dict:
    # A few rows so that low ids exist and detail, update and action paths do real work.
    category = make_category()
    campaign = make_campaign(categories=[category])
    make_message(campaign=campaign, contact=make_contact(categories=[category]))
    return {"Authorization": f"Token {Token.objects.get(user=staff.user).key}"}


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_a_server_error_or_breaks_its_schema(case, staff_headers):
    case.call_and_validate(headers=staff_headers, checks=[not_a_server_error, response_schema_conformance])


def test_the_fuzzed_schema_is_the_one_served(staff):
    served = staff.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert served.status_code == 200
    assert json.loads(served.content) == _generated_schema()


# --- What the contract says beyond the serializers (config/api.py's hooks) ----------------------


def _throttled_operations() -> set[tuple[str, str]]:
    generator = SchemaGenerator()
    generator.get_schema(request=None, public=True)
    operations = set()
    for path, _regex, method, callback in generator.endpoints:
        view = generator.create_view(callback, method)
        if view.get_throttles():
            operations.add((generator.coerce_path(path, method, view), method.lower()))
    return operations


THROTTLED = {"$ref": "#/components/schemas/Throttled"}


def test_every_throttled_operation_documents_the_throttles_429():
    document = _generated_schema()
    throttled = _throttled_operations()
    operations = {(path, method) for path, methods in document["paths"].items() for method in methods}
    # Every documented operation is throttled (settings API_THROTTLE_*); the schema and docs
    # pages are too, but are not in the schema.
    assert throttled - {("/api/schema/", "get"), ("/api/docs/", "get")} == operations
    for path, method in operations:
        answer = document["paths"][path][method]["responses"]["429"]
        schema = answer["content"]["application/json"]["schema"]
        assert THROTTLED in (schema, *schema.get("oneOf", [])), (method, path)
        assert "Retry-After" in answer["headers"]
    assert document["components"]["schemas"]["Throttled"]["required"] == ["detail"]


def test_launch_documents_its_quota_refusal_and_the_throttle_as_one_of_two_429s():
    answer = _generated_schema()["paths"]["/api/campaigns/{id}/launch/"]["post"]["responses"]["429"]
    schema = answer["content"]["application/json"]["schema"]
    assert schema == {"oneOf": [{"$ref": "#/components/schemas/QuotaRefusal"}, THROTTLED]}


def test_phones_are_any_format_in_and_e164_out():
    from campaigns.phones import E164_REGEX

    components = _generated_schema()["components"]["schemas"]
    assert components["Contact"]["properties"]["phone"]["pattern"] == E164_REGEX
    for request in ("ContactRequest", "PatchedContactRequest", "ContactBulkItemRequest"):
        phone = components[request]["properties"]["phone"]
        assert "pattern" not in phone and (phone["minLength"], phone["maxLength"]) == (1, 64)
    device_phone = components["Device"]["properties"]["phone"]  # E.164 or empty
    assert {"type": "string", "pattern": E164_REGEX} in device_phone["oneOf"]


@pytest.mark.django_db
def test_the_bulk_body_documents_the_item_count_the_view_enforces(staff_headers):
    from django.test import Client

    body = _generated_schema()["paths"]["/api/contacts/bulk/"]["post"]["requestBody"]
    limits = body["content"]["application/json"]["schema"]
    assert (limits["minItems"], limits["maxItems"]) == (1, 1000)
    client = Client(headers=staff_headers)
    item = {"phone": "+33612345678"}
    for count in (0, limits["maxItems"] + 1):
        answer = client.post("/api/contacts/bulk/", [item] * count, content_type="application/json")
        assert answer.status_code == 400, count


def test_each_create_links_to_its_detail_and_actions_with_the_created_id():
    paths = _generated_schema()["paths"]
    by_id = {op["operationId"]: (path, op) for path, ops in paths.items() for op in ops.values()}
    expected = {
        "/api/categories/": {"categories_retrieve", "categories_update", "categories_destroy"},
        "/api/contacts/": {"contacts_retrieve", "contacts_update", "contacts_opt_out_create"},
        "/api/campaigns/": {"campaigns_retrieve", "campaigns_launch_create", "campaigns_cancel_create"},
    }
    for path, some_targets in expected.items():
        links = paths[path]["post"]["responses"]["201"]["links"]
        assert some_targets <= set(links), path
        for link in links.values():
            target_path, _ = by_id[link["operationId"]]
            assert target_path.startswith(f"{path}{{id}}/")
            assert link["parameters"] == {"id": "$response.body#/id"}


def test_a_real_throttled_answer_matches_the_documented_429(staff_headers, monkeypatch):
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {"user": "1/minute", "anon": "1/minute"})
    launch = schema["/api/campaigns/{id}/launch/"]["POST"].Case(
        path_parameters={"id": 1}, body={}, media_type="application/json"
    )
    for case in (schema["/api/devices/"]["GET"].Case(), launch):
        answers = [case.call(headers=staff_headers) for _ in range(2)]
        assert answers[-1].status_code == 429, case.path
        assert "retry-after" in {name.lower() for name in answers[-1].headers}
        case.validate_response(answers[-1], checks=[response_schema_conformance])


def test_a_real_quota_refusal_matches_the_documented_429(staff_headers, fake_clock):
    category = make_category()
    campaign = make_campaign(categories=[category], device=make_device(daily_limit=20))  # 18 a day
    for _ in range(30):
        make_contact(categories=[category])
    case = schema["/api/campaigns/{id}/launch/"]["POST"].Case(
        path_parameters={"id": campaign.pk}, body={}, media_type="application/json"
    )
    answer = case.call(headers=staff_headers)
    assert (answer.status_code, answer.json()["code"]) == (429, "quota_exceeded")
    case.validate_response(answer, checks=[response_schema_conformance])


def test_following_the_links_from_each_create_breaks_nothing(staff_headers):
    """Stateful: create a row, then call its detail and actions through the schema's links."""
    from schemathesis.generation.stateful import run_state_machine_as_test

    class StaffFollowingLinks(schema.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"headers": staff_headers}

        def validate_response(self, response, case, **kwargs):
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run_state_machine_as_test(
        StaffFollowingLinks,
        settings=settings(
            max_examples=15,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        ),
    )
