"""The CLI's HTTP client of runyard's API: problem details as errors, names resolved to ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from app import __version__

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiError(Exception):
    """The server refused the request (a problem body) or could not be reached."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.errors = errors or []

    def lines(self) -> list[str]:
        """The problem as the user reads it: title and detail, then each field error."""
        out = [str(self)]
        for error in self.errors:
            field = error.get("field") or error.get("key") or ""
            message = error.get("message", "")
            out.append(f"  {field}: {message}" if field else f"  {message}")
        return out


class RunyardClient:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"User-Agent": f"runyard-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self.has_token = bool(token)
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers=headers, **extra
            )
        except httpx.HTTPError as exc:
            raise ApiError(f"could not reach runyard at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise self._problem(response)
        return response

    def _problem(self, response: httpx.Response) -> ApiError:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            return ApiError(f"HTTP {status}: {response.text[:300]}", status)
        if not isinstance(body, dict) or "detail" not in body:
            return ApiError(f"HTTP {status}: {str(body)[:300]}", status)
        text = f"{body.get('title', 'Error')} ({status}): {body['detail']}"
        if status == 401 and not self.has_token:
            text += (
                "\nNo token was sent: set RUNYARD_TOKEN or pass --token (create one with "
                "'runyard tokens create --org SLUG --role admin' on the server)."
            )
        errors = body.get("errors")
        return ApiError(text, status, errors if isinstance(errors, list) else None)

    def get(self, path: str, timeout: float | None = None, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean, timeout=timeout).json()

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers).json()

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body).json()

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def text(self, path: str, **params: Any) -> str:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).text

    def events(self, path: str, read_timeout: float) -> Iterator[tuple[str, Any]]:
        """A server-sent event stream as (event, decoded data) pairs; ends when the server
        closes it. A missing endpoint raises ApiError with its status, like any request."""
        timeout = httpx.Timeout(10.0, read=read_timeout)
        try:
            with self._http.stream(
                "GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._problem(response)
                event, data = "message", list[str]()
                for line in response.iter_lines():
                    if not line:
                        if data:
                            yield event, _decode("\n".join(data))
                        event, data = "message", []
                    elif line.startswith(":"):
                        yield "comment", None  # a keep-alive: lets the caller check its clock
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
        except httpx.TimeoutException:
            yield "timeout", None
        except httpx.HTTPError as exc:
            raise ApiError(f"could not reach runyard at {self.url}: {exc}") from None

    # --- names to ids -------------------------------------------------------------------

    def project(self, ref: str) -> dict[str, Any]:
        """A project by id or by name (names are resolved through the list)."""
        projects = self.get("/api/v1/projects")["projects"]
        return _one("project", ref, projects, "'runyard projects list'")

    def job(self, project_id: str, ref: str) -> dict[str, Any]:
        jobs = self.get(f"/api/v1/projects/{project_id}/jobs")["jobs"]
        return _one("job", ref, jobs, "'runyard jobs list PROJECT'")


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _one(kind: str, ref: str, items: list[dict[str, Any]], hint: str) -> dict[str, Any]:
    by_id = [item for item in items if item["id"] == ref]
    if by_id:
        return dict(by_id[0])
    named = [item for item in items if item["name"] == ref]
    if len(named) == 1:
        return dict(named[0])
    if len(named) > 1:
        ids = ", ".join(item["id"] for item in named)
        raise ApiError(f"{len(named)} {kind}s are named {ref!r} ({ids}): give the id instead", 409)
    raise ApiError(f"no {kind} with the name or id {ref!r} in your organization; see {hint}", 404)
