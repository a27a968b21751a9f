"""The GitHub App edge: installation tokens minted for one repository and named permissions.

`AppTokenMinter` implements `coordinator.identities.TokenMinter`. PyGithub's `Auth.AppAuth` signs the JWT
(RS256, `iat` a minute in the past for clock drift, `exp` minutes after, `iss` the App's id); the token is asked
for with `POST /app/installations/{id}/access_tokens`, the body naming the repository and the permissions, which
PyGithub's own `get_access_token` cannot (it sends permissions only). The key never leaves this process: it signs
here, and no message, log line or exception carries it, the JWT or the token (`scrub`).

Each of GitHub's refusals gets its own reason: a JWT GitHub will not verify (401: a wrong key or App id), an
installation that is gone (404), permissions the installation was not granted or a repository it cannot reach
(422), a rate limit (403/429).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from github import Auth

from coordinator.edges.http import classify_error, url_host
from coordinator.identities import AppIdentity, MintedToken, MintFailure
from coordinator.redact import Secret, scrub

USER_AGENT = "agent-fleet-coordinator"


def _message(response: requests.Response) -> str:
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, Mapping) else None
    return str(message)[:200] if isinstance(message, str) else ""


def token_login(api_url: str, token: str, *, timeout_s: float = 10.0) -> str | None:
    """`GET /user`: the account a token acts as, or None when GitHub does not say (refused, unreachable)."""
    try:
        response = requests.get(f"{api_url.rstrip('/')}/user", timeout=timeout_s, headers={
            "Authorization": f"token {token}", "Accept": "application/vnd.github+json", "User-Agent": USER_AGENT})
        login = response.json().get("login") if response.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError):
        return None
    return login if isinstance(login, str) and login else None


class AppTokenMinter:
    """Mints installation tokens for `repository` (owner/name) through GitHub's REST API at `api_url`."""

    def __init__(self, api_url: str, repository: str, *, timeout_s: float = 10.0) -> None:
        self._api_url = api_url.rstrip("/")
        self._repository = repository
        self._timeout_s = timeout_s

    def jwt(self, app: AppIdentity) -> str:
        """The App's JWT, signed by PyGithub (PyJWT with cryptography); MintFailure if the key cannot sign."""
        try:
            return Auth.AppAuth(app.app_id, app.private_key.reveal()).create_jwt()
        except Exception as exc:  # PyJWT and cryptography raise many kinds for a bad key; the text may quote it
            raise MintFailure(
                f"App {app.app_id}: its private key cannot sign a JWT ({type(exc).__name__}); paste the whole .pem "
                "file the App's settings generated into the identity's private key"
            ) from None

    def mint(self, app: AppIdentity, permissions: Mapping[str, str]) -> MintedToken:
        jwt = self.jwt(app)
        secrets = (jwt, app.private_key.reveal())
        name = self._repository.split("/", 1)[1]
        url = f"{self._api_url}/app/installations/{app.installation_id}/access_tokens"
        asked = ", ".join(f"{k}: {v}" for k, v in sorted(permissions.items()))
        try:
            response = requests.post(
                url,
                json={"repositories": [name], "permissions": dict(permissions)},
                headers={"Authorization": f"Bearer {jwt}", "Accept": "application/vnd.github+json",
                         "User-Agent": USER_AGENT, "X-GitHub-Api-Version": "2022-11-28"},
                timeout=self._timeout_s,
            )
        except requests.RequestException as exc:
            raise MintFailure(f"App {app.app_id}: GitHub at {url_host(url)} unreachable while minting a token "
                              f"({classify_error(exc)}); the next cycle tries again") from None
        status, detail = response.status_code, scrub(_message(response), secrets)
        said = f" ({status}: {detail})" if detail else f" ({status})"
        if status == 201:
            return self._minted(app, response)
        if status == 401:
            raise MintFailure(
                f"App {app.app_id}: GitHub refused its JWT{said}: the private key is not this App's, or the App id "
                "is wrong; generate a new key in the App's settings and update the identity"
            )
        if status == 404:
            raise MintFailure(
                f"App {app.app_id}: no installation {app.installation_id}{said}: the App was uninstalled or the id is "
                f"wrong; install the App on {self._repository} and set the installation's id"
            )
        if status == 422:
            raise MintFailure(
                f"App {app.app_id}: installation {app.installation_id} cannot grant {asked} on {self._repository}"
                f"{said}: give the App these permissions in its settings, accept them on the installation and "
                "install it on the repository, or lower the role's githubPermissions"
            )
        if status in (403, 429):
            raise MintFailure(f"App {app.app_id}: GitHub refused to mint a token{said}; the next cycle tries again")
        raise MintFailure(f"App {app.app_id}: minting a token failed{said}; the next cycle tries again")

    def _minted(self, app: AppIdentity, response: requests.Response) -> MintedToken:
        try:
            body = response.json()
            token, expires = body["token"], body["expires_at"]
            if not isinstance(token, str) or not token or not isinstance(expires, str):
                raise ValueError("token or expires_at")
            expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MintFailure(f"App {app.app_id}: GitHub's answer to the mint holds no token and expiry") from None
        return MintedToken(Secret(token), expires_at)
