"""Encord's error envelope, its codes and the emulator's error texts, built in one place."""

from __future__ import annotations

import json
from typing import Any

# The codes the SDK (encord/http/error_utils.py) knows and the emulator answers.
AUTHENTICATION_ERROR = "AUTHENTICATION_ERROR"
AUTHORISATION_ERROR = "AUTHORISATION_ERROR"
RESOURCE_NOT_FOUND_ERROR = "RESOURCE_NOT_FOUND_ERROR"
METHOD_NOT_ALLOWED_ERROR = "METHOD_NOT_ALLOWED_ERROR"
UNKNOWN_ERROR = "UNKNOWN_ERROR"
OPERATION_NOT_ALLOWED = "OPERATION_NOT_ALLOWED"
RESOURCE_EXISTS_ERROR = "RESOURCE_EXISTS_ERROR"
DUPLICATE_SSH_KEY_ERROR = "DUPLICATE_SSH_KEY_ERROR"
SSH_KEY_NOT_FOUND_ERROR = "SSH_KEY_NOT_FOUND_ERROR"
INVALID_ARGUMENTS_ERROR = "INVALID_ARGUMENTS_ERROR"

# The JSON `status` of each code, and the HTTP status line under --mirror-status. A code
# the table does not know (force_error "SOMETHING_NEW") is a client-side error by default.
STATUS_BY_CODE = {
    AUTHENTICATION_ERROR: 401,
    SSH_KEY_NOT_FOUND_ERROR: 401,
    DUPLICATE_SSH_KEY_ERROR: 401,
    AUTHORISATION_ERROR: 403,
    OPERATION_NOT_ALLOWED: 403,
    RESOURCE_NOT_FOUND_ERROR: 404,
    METHOD_NOT_ALLOWED_ERROR: 405,
    RESOURCE_EXISTS_ERROR: 409,
    INVALID_ARGUMENTS_ERROR: 400,
    UNKNOWN_ERROR: 500,
}
DEFAULT_ERROR_STATUS = 400

# Error texts (the `payload` of INVALID_ARGUMENTS_ERROR and friends). Never put a key,
# a signature or a header value into one of these.
MSG_BODY_NOT_JSON = "The request body is not valid JSON."
MSG_BODY_NOT_OBJECT = "The request body must be a JSON object."
MSG_BODY_TOO_LARGE = "The request body is too large."
MSG_BAD_CONTENT_LENGTH = "The Content-Length header is not valid."
MSG_FIELD_MISSING = "The field `{field}` is missing."
MSG_FIELD_TYPE = "The field `{field}` must be {expected}."
MSG_UNKNOWN_QUERY_TYPE = "Unknown query_type `{query_type}`."
MSG_UNKNOWN_METHOD = "query_type `{query_type}` does not support query_method `{query_method}`."
MSG_TITLE_EMPTY = "The API key title must not be empty."
MSG_TITLE_TOO_LONG = "The API key title must be at most {limit} characters long."
MSG_SCOPES_EMPTY = "At least one scope is required."
MSG_SCOPES_NOT_JSON = "`scopes` is a string but not a JSON-encoded list."
MSG_SCOPE_UNKNOWN = "Unknown scope `{scope}`; allowed: {allowed}."
MSG_RESOURCE_NOT_FOUND = "No {kind} with hash `{resource_hash}`."
MSG_NOT_FOUND_PATH = "No such endpoint."
MSG_USE_POST = "The Encord public API takes POST only."
MSG_INTERNAL = "The emulator failed to handle the request."


def status_for(code: str) -> int:
    """The JSON `status` Encord pairs with `code`."""
    return STATUS_BY_CODE.get(code, DEFAULT_ERROR_STATUS)


class EncordError(Exception):
    """An answer in Encord's error envelope; raised by the operations, sent by the server."""

    def __init__(
        self, code: str, payload: Any = None, *, status: int | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.payload = payload
        self.status = status if status is not None else status_for(code)  # the JSON `status`
        # The HTTP status line, when it must not follow the Encord default (200) or --mirror-status.
        self.http_status = http_status

    def envelope(self) -> dict[str, Any]:
        return envelope(self.code, self.payload, status=self.status)


def invalid(message: str) -> EncordError:
    """INVALID_ARGUMENTS_ERROR with a message payload, as Encord sends it."""
    return EncordError(INVALID_ARGUMENTS_ERROR, message)


def envelope(code: str, payload: Any = None, *, status: int | None = None) -> dict[str, Any]:
    """`{"status": 4xx, "response": [CODE], "payload": ...}`: the code travels as a one-element list."""
    body: dict[str, Any] = {"status": status if status is not None else status_for(code), "response": [code]}
    if payload is not None:
        body["payload"] = payload
    return body


def success(value: Any) -> bytes:
    """The success envelope, serialised."""
    return json.dumps({"status": 200, "response": value}).encode()
