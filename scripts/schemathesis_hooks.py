"""presignd's own schemathesis checks (loaded through SCHEMATHESIS_HOOKS by scripts/schemathesis).

Beyond the contract's schemas: every response carries `x-request-id`, and every 4xx/5xx is an
RFC 9457 problem+json document with a stable `code` and the same `request_id` as the header.
"""

import json

import schemathesis


def _header(response, name):
    values = response.headers.get(name.lower()) or []
    return values[0] if values else None


@schemathesis.check
def presignd_request_id(ctx, response, case):
    """Every response carries an x-request-id header."""
    if not _header(response, "x-request-id"):
        raise AssertionError("response without an x-request-id header")


@schemathesis.check
def presignd_problem_json(ctx, response, case):
    """Every 4xx and 5xx is application/problem+json with code and request_id."""
    if response.status_code < 400:
        return
    content_type = (_header(response, "content-type") or "").split(";")[0].strip()
    if content_type != "application/problem+json":
        raise AssertionError(
            f"{response.status_code} answered with content-type {content_type!r}, "
            "not application/problem+json"
        )
    try:
        problem = json.loads(response.content)
    except ValueError as e:
        raise AssertionError(f"{response.status_code} problem is not JSON: {e}") from e
    if not isinstance(problem, dict):
        raise AssertionError("the problem document is not a JSON object")
    for member in ("type", "title", "status", "detail", "code", "request_id"):
        if member not in problem:
            raise AssertionError(f"problem without {member!r}: {problem}")
    if problem["status"] != response.status_code:
        raise AssertionError(
            f"problem status {problem['status']} != HTTP status {response.status_code}"
        )
    if problem["request_id"] != _header(response, "x-request-id"):
        raise AssertionError("problem request_id differs from the x-request-id header")
    if response.status_code == 401 and not _header(response, "www-authenticate"):
        raise AssertionError("401 without WWW-Authenticate")
