"""Property-based fuzzing of the API from its own OpenAPI document (schemathesis, in-process WSGI).

Bounded examples keep it well under a minute. Besides "no 5xx", the answers must be documented
status codes and content types with bodies matching the document's schemas.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cascade.apikeys import IssuedKey
from cascade.config import Settings
from cascade.context import Context
from services.api.openapi import openapi_document
from tests.api.conftest import MAX_PIXELS, MAX_UPLOAD_BYTES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


# The document as the test app serves it (its limits are those of ``api_settings``); the
# schema is loaded at import so that each operation becomes its own test. (Schemathesis's
# ``pytest.from_fixture`` does not work with pytest 9: it reads the removed ``Node._nodeid``.)
DOC_SETTINGS = Settings(env="test", max_upload_bytes=MAX_UPLOAD_BYTES, max_pixels=MAX_PIXELS,
                        max_batch_images=8)  # fmt: skip
schema = schemathesis.openapi.from_dict(openapi_document(DOC_SETTINGS))


def test_the_served_document_is_the_fuzzed_one(api: FlaskClient) -> None:
    served = api.get("/v1/openapi.json")
    assert served.status_code == 200
    assert served.json == openapi_document(DOC_SETTINGS)
    page = api.get("/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    for path in served.json["paths"]:
        assert path in page.get_data(as_text=True)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_never_fails_on_generated_requests(
    case: Any, api_app: Flask, api_context: Context, key: IssuedKey
) -> None:
    api_context.settings.rate_limit_per_minute = 1_000_000  # fuzzing is a burst by design
    case.call_and_validate(
        app=api_app, headers={"Authorization": f"Bearer {key.key}"}, checks=CHECKS
    )
