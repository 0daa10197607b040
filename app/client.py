"""A small HTTP client of runyard's API, used by the CLI's client commands."""

from __future__ import annotations

from typing import Any

import httpx

from app import __version__


class ApiError(Exception):
    """The server refused the request (a problem body) or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RunyardClient:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"User-Agent": f"runyard-cli/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        self.url = url

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
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise ApiError(f"could not reach runyard at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise ApiError(_problem_text(response), response.status_code)
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers).json()

    def text(self, path: str, **params: Any) -> str:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).text

    # --- names to ids -------------------------------------------------------------------

    def project(self, ref: str) -> dict[str, Any]:
        """A project by id or by name."""
        if ref.startswith("proj_"):
            found: dict[str, Any] = self.get(f"/api/v1/projects/{ref}")
            return found
        for project in self.get("/api/v1/projects")["projects"]:
            if project["name"] == ref:
                return dict(project)
        raise ApiError(f"no project named {ref!r} in your organization", 404)

    def job(self, project_id: str, ref: str) -> dict[str, Any]:
        if ref.startswith("job_"):
            found: dict[str, Any] = self.get(f"/api/v1/projects/{project_id}/jobs/{ref}")
            return found
        for job in self.get(f"/api/v1/projects/{project_id}/jobs")["jobs"]:
            if job["name"] == ref:
                return dict(job)
        raise ApiError(f"no job named {ref!r} in that project", 404)


def _problem_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    if isinstance(body, dict) and "detail" in body:
        return f"{body.get('title', 'Error')} ({response.status_code}): {body['detail']}"
    return f"HTTP {response.status_code}: {str(body)[:300]}"
