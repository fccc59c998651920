"""The API against its own OpenAPI schema: schemathesis generates requests for every operation
(valid and invalid bodies, query strings, path ids) and sends them to the Django WSGI app as
staff. No answer may be a 5xx, and every documented answer must match its schema.

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
from tests.factories import make_campaign, make_category, make_contact, make_message


def _generated_schema() -> dict:
    return json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


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


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_a_server_error_or_breaks_its_schema(case, staff_headers):
    case.call_and_validate(headers=staff_headers, checks=[not_a_server_error, response_schema_conformance])


@pytest.mark.django_db
def test_the_fuzzed_schema_is_the_one_served(staff):
    served = staff.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert served.status_code == 200
    assert json.loads(served.content) == _generated_schema()
