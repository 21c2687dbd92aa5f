"""A poison image: bytes that passed the upload check but crash the decoder in the worker (the
stored blobs, derivative and original, were damaged after intake). It ends in ``error`` with a
message; its batch-mates are decided as usual."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade.blobs import BlobStore
from cascade.context import Context
from cascade.db.schema import Image, State, Submission
from services.app import create_app
from tests.integration.conftest import png_bytes
from tests.integration.test_stage_workers import activate
from tests.reliability.conftest import final_states, wait_all_final

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_poison_image_errors_and_its_batch_is_decided(stack_settings, make_stack, api_key):
    settings = stack_settings.model_copy(update={"stage1_batch_size": 8})
    ctx = Context.from_settings(settings)
    activate(ctx, 1, t1_lo=0.0, t1_hi=1.0, t2_lo=0.5, t2_hi=0.5)
    # Upload through the real API first; the workers start afterwards, so all eight messages
    # wait in the broker and the first stage-1 batch holds the poison and its batch-mates.
    api = create_app(context=ctx).test_client()
    auth = {"Authorization": f"Bearer {api_key}", "Content-Type": "image/png"}
    ids = []
    for seed in range(700, 708):
        response = api.post("/v1/images", data=png_bytes(seed), headers=auth)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    poison = ids[3]
    with ctx.sessions() as session:
        image = session.get(Submission, poison).image  # type: ignore[union-attr]
        blob_key = session.get(Image, image.sha256).blob_key  # type: ignore[union-attr]
    # The worker reads the derivative and falls back to the original: damage both.
    for key in (blob_key, BlobStore.derivative_key_for(image.sha256)):
        blob = Path(settings.blobs) / key
        blob.write_bytes(blob.read_bytes()[:60])  # a valid header, then nothing
    make_stack(settings, web=False, beat=False)
    wait_all_final(ctx, ids, 120, "the poisoned batch decided")
    subs = final_states(ctx, ids)
    assert subs[poison].state == State.ERROR
    assert subs[poison].error and "decode" in subs[poison].error
    assert subs[poison].decision is None
    rest = [subs[i] for i in ids if i != poison]
    assert all(s.state == State.DECIDED and s.s2 is not None for s in rest), [
        (s.state, s.error) for s in rest
    ]
    # The poison was seen once (its batch was not retried because of it).
    assert subs[poison].attempts == 1
    # And the API tells its owner, without internals.
    detail = api.get(f"/v1/images/{poison}", headers=auth).get_json()
    assert detail["state"] == "error" and detail["error"]
    assert settings.blobs not in detail["error"]
    ctx.close()
