"""The intake's published OpenAPI document, fuzzed with Schemathesis against the running
system on each store: no operation answers 5xx, every answer is one the document
declares (its status, content type and body), and input the document rules out is
refused with a 4xx.

Each operation gets `REDEEM_FUZZ_EXAMPLES` valid and as many invalid requests (25 by
default), as the admin, with the names of a campaign, codes, a redemption and a job
that exist mixed into the generated paths, so that requests reach past "not found".
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from bench.support.processes import ADMIN_KEY, System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES = int(os.environ.get("REDEEM_FUZZ_EXAMPLES", "25"))
NEGATIVE = GenerationMode.NEGATIVE
# Generating up to 10 million codes a request would keep the store busy past the run.
MAX_GENERATED = 5
Answers = defaultdict[str, Counter[int]]


@pytest.fixture
def answers() -> Answers:
    """The statuses each operation answered, by operation."""
    return defaultdict(Counter)


@pytest.fixture
def published(any_system: System, answers: Answers) -> BaseSchema:
    """The document the intake serves, bound to it and to the admin key, with the names
    of things that exist mixed into the path parameters it generates."""
    url = any_system.services[0].url
    known = _seed(url)
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    schema.config.update(base_url=url, headers=ADMIN, request_timeout=30)

    @schema.hook
    def flatmap_path_parameters(_: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters:
            return st.just(path_parameters)
        return st.fixed_dictionaries(
            {
                name: st.sampled_from([value, *known.get(name, ())])
                for name, value in path_parameters.items()
            }
        )

    @schema.hook
    def map_body(context: Any, body: Any) -> Any:
        path = context.operation.path
        if path.endswith("/generate") and isinstance(body, dict):
            return {**body, "quantity": _few(body.get("quantity"))}
        return body

    @schema.hook
    def after_call(_: Any, case: Case[Any], response: Any) -> None:
        answers[case.operation.label][response.status_code] += 1

    return schema


def _few(quantity: Any) -> Any:
    """A quantity the document allows (up to 10 million), at most `MAX_GENERATED`: JSON
    numbers and numeric text are taken as numbers (`7.0`, `"7"`), as the service does."""
    try:
        many = not isinstance(quantity, bool) and MAX_GENERATED < float(quantity) <= 10**7
    except (TypeError, ValueError, OverflowError):
        return quantity
    return type(quantity)(MAX_GENERATED) if many else quantity


def _seed(url: str) -> dict[str, list[str]]:
    """A personal and a shared campaign, codes, a redemption and a generation job: the
    names a fuzzed path may use."""
    with httpx.Client(base_url=url, headers=ADMIN, timeout=30) as http:

        def post(path: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
            answer = http.post(path, json=body, params=params)
            assert answer.status_code < 300, answer.text
            return dict(answer.json())

        post("/v1/campaigns", {"codeType": "fuzz"})
        shared = {"codeUseType": "MULTI", "scanCode": "SHARED-1", "maxRedemptions": 5}
        post("/v1/campaigns", {"codeType": "fuzz-shared", **shared})
        for scan, state in (("FUZZ-1", "Available"), ("FUZZ-2", "Inactive")):
            post("/v1/campaigns/fuzz/codes", {"scanCode": scan, "codeState": state})
        post("/v1/campaigns/fuzz/codes", {"scanCode": "FUZZ-3", "codeState": "Available"})
        redeemed = post("/v1/redemptions", {"userId": "fuzzer", "scanCode": "FUZZ-3"}, wait=10)
        job = post("/v1/campaigns/fuzz/codes/generate", {"quantity": 3})
    return {
        "codeType": ["fuzz", "fuzz-shared"],
        "scanCode": ["FUZZ-1", "FUZZ-2", "FUZZ-3", "SHARED-1"],
        "redemptionId": [redeemed["redemptionId"]],
        "jobId": [job["jobId"]],
        "userId": ["fuzzer"],
        "scope": ["user:fuzzer"],
    }


def test_every_operation_answers_as_its_document_says(
    published: BaseSchema, answers: Answers
) -> None:
    failures: dict[str, BaseException] = {}
    results = list(published.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "operations the document does not describe well"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, NEGATIVE):
            try:
                _fuzz(published, operation, mode)
            except Unsatisfiable:  # nothing of it can be invalid: a path of any string
                pass
            except (Exception, BaseExceptionGroup) as failure:
                failures[f"{operation.label} ({mode.value})"] = failure

    assert not failures, "\n\n".join(f"{label}:\n{why}" for label, why in failures.items())
    assert len(answers) == len(operations)
    refused = {label: n for label, n in answers.items() if n.keys() & {401, 403}}
    assert not refused, f"the admin key was refused: {refused}"


def _fuzz(
    schema: BaseSchema, operation: APIOperation[Any, Any, Any, Any], mode: GenerationMode
) -> None:
    """`EXAMPLES` requests of `mode` to `operation`, each checked; unshrunk, as each
    example is a request to a system whose state the examples before changed.

    An import's body is lines of text, and any text is one (a generated number or list
    goes as its digits or brackets): it has no invalid form, so invalid imports are
    invalid in their query."""
    strategy = operation.as_strategy(mode, hooks=schema.hooks)
    if mode is NEGATIVE and operation.path.endswith("/import"):
        strategy = operation.as_strategy(
            mode, hooks=schema.hooks, body="scanCode\n", media_type="text/csv"
        )

    @settings(
        max_examples=EXAMPLES,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
        database=None,
    )
    @given(case=strategy)
    def attack(case: Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS)

    attack()
