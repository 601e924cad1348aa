"""HTTP plumbing of the FHIR backend: one pooled httpx.AsyncClient, auth, and the mapping of
transport failures and HTTP statuses to the registry error types.

| what happened                               | raised                                     |
|---------------------------------------------|--------------------------------------------|
| timeout, connection refused/reset, 5xx, 429 | RegistryUnavailable (retryable)            |
| 401 / 403                                   | RegistryUnavailable (retryable=False)      |
|   (with SMART auth: a 401 first drops the access token and the request is sent once more)    |
| 404 / 410                                   | RecordNotFound                             |
| 400 / 422 / other 4xx                       | InvalidRequest (OperationOutcome text)     |
| 409                                         | Conflict                                   |
| 412 (If-Match lost the race)                | PreconditionFailed (internal: re-read)     |
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry_client.errors import Conflict, InvalidRequest, RecordNotFound, RegistryUnavailable
from registry_client.fhir.smart import SmartAuth

Json = dict[str, Any]
FHIR_JSON = "application/fhir+json"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
MAX_PAGES = 50


class PreconditionFailed(Exception):
    """412: the resource changed since we read it. Callers re-read and re-apply."""


@dataclass(frozen=True)
class Versioned:
    resource: Json
    version: str | None  # meta.versionId (the ETag without W/"…")

    @property
    def id(self) -> str:
        return str(self.resource["id"])


AUTH_FORMS = "'bearer:<token>', 'basic:<user>:<password>' or 'smart:<client_id>'"


def smart_client_id(value: str | None) -> str | None:
    """The client id of REGISTRY_AUTH=smart:<client_id>; None for the other forms."""
    kind, _, rest = (value or "").partition(":")
    if kind.lower() != "smart":
        return None
    if not rest.strip():
        raise ValueError(f"REGISTRY_AUTH must be {AUTH_FORMS}")
    return rest.strip()


def parse_auth(value: str | None) -> tuple[httpx.Auth | None, dict[str, str]]:
    """REGISTRY_AUTH → (httpx auth, extra headers). `bearer:<token>` or `basic:<user>:<password>`
    (`smart:<client_id>` is handled by FhirHttp: its header changes with each access token)."""
    if not value or smart_client_id(value):
        return None, {}
    kind, _, rest = value.partition(":")
    if kind.lower() == "bearer" and rest:
        return None, {"Authorization": f"Bearer {rest}"}
    if kind.lower() == "basic":
        user, sep, password = rest.partition(":")
        if sep and user:
            return httpx.BasicAuth(user, password), {}
    raise ValueError(f"REGISTRY_AUTH must be {AUTH_FORMS}")


def valid_id(value: str) -> bool:
    return bool(_ID.match(value or ""))


def escape_value(value: str) -> str:
    """A search value with FHIR's reserved comma and backslash escaped."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def outcome_text(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        parts = []
        for issue in body.get("issue") or []:
            text = (issue.get("details") or {}).get("text") or issue.get("diagnostics") or issue.get("code")
            where = ", ".join(issue.get("expression") or [])
            parts.append(f"{text} ({where})" if where else str(text))
        return "; ".join(parts)
    return ""


def _version_of(response: httpx.Response, body: Json) -> str | None:
    etag = response.headers.get("ETag")
    if etag:
        match = re.search(r'"([^"]+)"', etag)
        if match:
            return match.group(1)
    version = (body.get("meta") or {}).get("versionId")
    return str(version) if version else None


class FhirHttp:
    """Thin async FHIR REST client (JSON only)."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: str | None = None,
        timeout: float = 5.0,
        client: httpx.AsyncClient | None = None,
        max_connections: int = 20,
        private_key_file: Path | None = None,
        scopes: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        http_auth, headers = parse_auth(auth)
        client_id = smart_client_id(auth)
        headers = {"Accept": FHIR_JSON, **headers}
        self._owns_client = client is None
        if client is None:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
                limits=httpx.Limits(
                    max_connections=max_connections, max_keepalive_connections=max_connections
                ),
                transport=httpx.AsyncHTTPTransport(retries=1),
            )
        self._client = client
        self._auth = http_auth
        self._headers = headers
        self.smart: SmartAuth | None = None
        if client_id is not None:
            if private_key_file is None:
                raise ValueError("REGISTRY_AUTH=smart:… needs the client's private key file")
            self.smart = SmartAuth(client_id, private_key_file, scopes, self.base_url, client)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- transport and errors -----------------------------------------------------------------
    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        json: Json | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, Json]:
        all_headers = dict(self._headers)
        if json is not None:
            all_headers["Content-Type"] = FHIR_JSON
        all_headers.update(headers or {})
        response = await self._request(method, url, params, json, all_headers)
        body = self._body(response)
        self._raise_for(response, body)
        return response, body

    async def _request(
        self,
        method: str,
        url: str,
        params: Sequence[tuple[str, str]] | None,
        json: Json | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        for attempt in (1, 2):
            token = None
            if self.smart is not None:
                headers["Authorization"], token = await self.smart.authorization()
            try:
                response = await self._client.request(
                    method,
                    url,
                    params=list(params) if params else None,
                    json=json,
                    headers=headers,
                    auth=self._auth if self._auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException as exc:
                raise RegistryUnavailable(f"FHIR registry timed out ({type(exc).__name__})") from exc
            except httpx.TransportError as exc:
                raise RegistryUnavailable(f"FHIR registry unreachable ({type(exc).__name__})") from exc
            if response.status_code != 401 or self.smart is None or token is None or attempt == 2:
                return response
            self.smart.expire(token)  # revoked or expired early: once more with a fresh token
        raise AssertionError("unreachable")

    @staticmethod
    def _body(response: httpx.Response) -> Json:
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            if response.status_code >= 500 or response.is_success:
                raise RegistryUnavailable(
                    f"FHIR registry answered {response.status_code} with a non-JSON body"
                ) from None
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _raise_for(response: httpx.Response, body: Json) -> None:
        status = response.status_code
        if status < 400:
            return
        text = outcome_text(body) or response.reason_phrase or f"HTTP {status}"
        if status == 412:
            raise PreconditionFailed(text)
        if status in (404, 410):
            raise RecordNotFound(text)
        if status == 409:
            raise Conflict(text)
        if status in (401, 403):
            error = RegistryUnavailable(f"FHIR registry refused our credentials ({status}: {text})")
            error.retryable = False
            raise error
        if status == 429 or status >= 500:
            raise RegistryUnavailable(f"FHIR registry error {status}: {text}")
        raise InvalidRequest(text)

    # -- FHIR interactions ----------------------------------------------------------------------
    async def read(self, resource_type: str, resource_id: str) -> Versioned:
        if not valid_id(resource_id):
            raise RecordNotFound(f"no {resource_type} {resource_id!r}")
        response, body = await self.send("GET", self.url(f"{resource_type}/{resource_id}"))
        return Versioned(body, _version_of(response, body))

    async def search(self, resource_type: str, params: Sequence[tuple[str, str]]) -> list[Json]:
        """All matches, following `next` links (bounded)."""
        _, bundle = await self.send("GET", self.url(resource_type), params=params)
        found: list[Json] = []
        for _page in range(MAX_PAGES):
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource")
                if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                    if (entry.get("search") or {}).get("mode", "match") == "match":
                        found.append(resource)
            next_url = next(
                (link.get("url") for link in bundle.get("link") or [] if link.get("relation") == "next"), None
            )
            if not next_url:
                break
            _, bundle = await self.send("GET", next_url)
        return found

    async def create(self, resource: Json, if_none_exist: str | None = None) -> tuple[Versioned, bool]:
        """POST; with `if_none_exist` a conditional create. Returns (stored, created)."""
        headers = {"If-None-Exist": if_none_exist} if if_none_exist else None
        headers = {**(headers or {}), "Prefer": "return=representation"}
        response, body = await self.send(
            "POST", self.url(resource["resourceType"]), json=resource, headers=headers
        )
        if not body.get("resourceType"):  # a server that honours no Prefer: read it back
            location = response.headers.get("Location", "")
            parts = location.split("/_history")[0].rstrip("/").split("/")
            return await self.read(resource["resourceType"], parts[-1]), response.status_code == 201
        return Versioned(body, _version_of(response, body)), response.status_code == 201

    async def update(self, resource: Json, version: str | None) -> Versioned:
        """PUT with If-Match (when the version is known). PreconditionFailed on 412."""
        headers = {"Prefer": "return=representation"}
        if version:
            headers["If-Match"] = f'W/"{version}"'
        url = self.url(f"{resource['resourceType']}/{resource['id']}")
        response, body = await self.send("PUT", url, json=resource, headers=headers)
        if not body.get("resourceType"):
            return await self.read(resource["resourceType"], str(resource["id"]))
        return Versioned(body, _version_of(response, body))

    async def metadata(self) -> Json:
        _, body = await self.send("GET", self.url("metadata"))
        return body


def versioned(resource: Json) -> Versioned:
    """A search hit with its version (searches carry meta.versionId, not ETags)."""
    return Versioned(resource, (resource.get("meta") or {}).get("versionId"))
