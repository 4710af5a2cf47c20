"""Errors on the wire: OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``, and Ollama's, ``{"error": "message"}``, for its ``/api``
paths. Every message is one line; a traceback never leaves the server."""

from __future__ import annotations

from starlette.responses import JSONResponse

TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    501: "not_implemented_error",
}


class ApiError(Exception):
    """A request the server answers with an error status and one line."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(" ".join(message.split()))
        self.status = status
        self.message = str(self)
        self.param = param
        self.code = code


def error_response(path: str, error: ApiError) -> JSONResponse:
    """The error as the API at ``path`` words errors."""
    if path.startswith("/api/"):
        return JSONResponse({"error": error.message}, status_code=error.status)
    body = {
        "error": {
            "message": error.message,
            "type": TYPES.get(error.status, "server_error"),
            "param": error.param,
            "code": error.code,
        }
    }
    return JSONResponse(body, status_code=error.status)


def error_body(error: ApiError) -> dict[str, object]:
    """The error inside a stream already started (as an SSE event's data)."""
    return {
        "error": {
            "message": error.message,
            "type": TYPES.get(error.status, "server_error"),
            "param": error.param,
            "code": error.code,
        }
    }
