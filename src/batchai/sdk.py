"""The official Azure Python SDK, configured for a batchai server in one line.

``batchai.sdk.client()`` returns the Batch AI management client of the installed ``azure-mgmt-batchai``
(``BatchAI`` of 7.0.0, azure-core based, or ``BatchAIManagementClient`` of 2.x, msrest based), pointed at
the server the ``batchai`` CLI uses and authenticated with its token; ``batchai.sdk.resource_client()``
does the same for ``azure-mgmt-resource``'s ``ResourceManagementClient`` (resource groups), and
``batchai.sdk.make_client(cls)`` for any other Azure management client class of either generation.

Configuration is the CLI's, in the CLI's order: ``$BATCHAI_ENDPOINT`` and ``$BATCHAI_TOKEN`` (and
``$BATCHAI_SUBSCRIPTION``), else what ``batchai configure`` stored in ``{home}/config.json``, else the
``credentials.json`` a server wrote in its home; the home is ``$BATCHAI_HOME``, else ``~/.batchai``.

Plain-http endpoints (a local server) work: azure-core's ``BearerTokenCredentialPolicy`` refuses to send a
token over http, so azure-core clients are built with ``authentication_policy=`` a policy that sets the
``Authorization: Bearer`` header from the token (the clients' documented hook for a custom policy);
msrest clients sign their ``requests`` session the same way, over http or https.

The Azure packages are imported only when a client is made: this module imports without them.
"""

from __future__ import annotations

import importlib
import inspect
import os
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from batchai.cli.client import Connection
from batchai.cli.client import connection as _cli_connection
from batchai.cli.errors import CliError

__all__ = [
    "DEFAULT_POLLING_INTERVAL",
    "BatchaiCredential",
    "NotConfigured",
    "client",
    "connection",
    "credentials",
    "make_client",
    "resource_client",
]

# Seconds between two polls of a long-running operation. Azure's default is 30 seconds; batchai ends most
# operations within the first response, and a local server is cheap to ask.
DEFAULT_POLLING_INTERVAL = 1.0
# How long a token is said to be valid for (azure-core asks again before then; the token never changes).
TOKEN_LIFETIME_SECONDS = 3600


class NotConfigured(RuntimeError):
    """No batchai server is configured (no endpoint or token in the environment, config or credentials)."""


class _Token(NamedTuple):
    """What ``get_token`` returns when azure-core is not installed (azure-core's ``AccessToken`` shape)."""

    token: str
    expires_on: int


class BatchaiCredential:
    """The batchai admin token as a credential for both generations of the Azure SDK.

    - azure-core (``TokenCredential``/``SupportsTokenInfo``): ``get_token(*scopes)`` and
      ``get_token_info(*scopes)`` return the token whatever the scopes, valid for an hour from the call.
    - msrest (``msrest.authentication.Authentication``): ``signed_session(session)`` returns a
      ``requests.Session`` sending ``Authorization: Bearer <token>``.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the token must not be empty")
        self.token = token

    def __repr__(self) -> str:  # never show the token
        return "BatchaiCredential(token=***)"

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """azure-core's ``TokenCredential.get_token``: an ``AccessToken(token, expires_on)``."""
        expires_on = int(time.time()) + TOKEN_LIFETIME_SECONDS
        try:
            from azure.core.credentials import AccessToken
        except ImportError:
            return _Token(self.token, expires_on)
        return AccessToken(self.token, expires_on)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        """azure-core's ``SupportsTokenInfo.get_token_info`` (azure-core 1.31 and later)."""
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(self.token, int(time.time()) + TOKEN_LIFETIME_SECONDS)

    def signed_session(self, session: Any = None) -> Any:
        """msrest's ``Authentication.signed_session``: ``session`` (or a new one) with the bearer header."""
        if session is None:
            session = importlib.import_module("requests").Session()  # msrest's HTTP library
        session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def refresh_session(self, session: Any = None) -> Any:
        """msrest's ``Authentication.refresh_session``: the token does not expire, so as ``signed_session``."""
        return self.signed_session(session)

    def authorization(self) -> str:
        """The ``Authorization`` header value."""
        return f"Bearer {self.token}"


class _BearerHeaderPolicy:
    """An azure-core pipeline policy (``HTTPPolicy`` protocol: ``next`` and ``send``) that sets the bearer
    header on every request, over http as over https. It stands where ``BearerTokenCredentialPolicy`` would."""

    next: Any = None

    def __init__(self, credential: BatchaiCredential) -> None:
        self._credential = credential

    def send(self, request: Any) -> Any:
        request.http_request.headers["Authorization"] = self._credential.authorization()
        return self.next.send(request)


def _redacting_network_trace_policy(**kwargs: Any) -> Any:
    """azure-core's ``NetworkTraceLoggingPolicy`` (what ``logging_enable=True`` logs: every request's headers),
    with the Authorization header shown as ``REDACTED``: the server's token does not expire as Azure's do."""
    from azure.core.pipeline.policies import NetworkTraceLoggingPolicy

    class RedactingNetworkTraceLoggingPolicy(NetworkTraceLoggingPolicy):
        def on_request(self, request: Any) -> None:
            headers = request.http_request.headers
            token = headers.get("Authorization")
            if token is None:
                return super().on_request(request)
            headers["Authorization"] = "REDACTED"
            try:
                super().on_request(request)
            finally:
                headers["Authorization"] = token

    return RedactingNetworkTraceLoggingPolicy(**kwargs)


def connection(home: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Connection:
    """The server the CLI would talk to: ``Connection(endpoint, token, subscription)``.

    ``home`` is the batchai home to read ``config.json``/``credentials.json`` from (default
    ``$BATCHAI_HOME``, else ``~/.batchai``); ``environ`` defaults to ``os.environ``.
    Raises ``NotConfigured`` when no endpoint or token is found.
    """
    try:
        return _cli_connection(str(home) if home is not None else None, os.environ if environ is None else environ)
    except CliError as exc:
        raise NotConfigured(exc.message) from None


def credentials(home: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """The server's token as a credential object both SDK generations accept (see ``BatchaiCredential``).

    Note that an azure-core client given only this credential still refuses plain-http endpoints; build it
    with ``make_client`` (which also sets the endpoint), or pass it ``authentication_policy`` yourself.
    """
    return BatchaiCredential(connection(home, environ).token)


def _generation(client_class: type) -> str:
    """``"core"`` for azure-core clients (first parameter ``credential``), ``"msrest"`` for the older ones
    (``credentials``)."""
    try:
        parameters = list(inspect.signature(client_class).parameters)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot tell how to build {client_class!r}: its signature is unknown") from exc
    if "credential" in parameters:
        return "core"
    if "credentials" in parameters:
        return "msrest"
    raise TypeError(f"{client_class.__name__} takes neither 'credential' nor 'credentials': not an Azure client")


def make_client(
    client_class: type,
    *,
    home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    subscription_id: str | None = None,
    polling_interval: float = DEFAULT_POLLING_INTERVAL,
    **kwargs: Any,
) -> Any:
    """An instance of an Azure management client class (either generation) configured for batchai.

    - endpoint: the server's (``base_url``); token: the server's admin token; ``subscription_id``: the one
      given, else ``$BATCHAI_SUBSCRIPTION`` or the configured one, else the CLI's default (all zeros).
    - azure-core clients get ``authentication_policy=`` a bearer-header policy (so http endpoints work),
      ``polling_interval`` seconds between polls of long-running operations (Azure's default is 30), and a
      ``logging_policy`` that logs requests as azure-core's does under ``logging_enable=True`` but with the
      token redacted (it never expires, unlike Azure's).
    - msrest clients get the token through ``BatchaiCredential.signed_session`` and the same polling
      interval (``config.long_running_operation_timeout``).
    - ``kwargs`` go to the client's constructor (e.g. ``logging_enable=True``, ``api_version=``); an
      ``authentication_policy`` or ``base_url`` given there wins.

    Raises ``NotConfigured`` when no server is configured, ``TypeError`` for a class that is not an Azure
    management client.
    """
    conn = connection(home, environ)
    credential = BatchaiCredential(conn.token)
    subscription = subscription_id or conn.subscription
    kwargs.setdefault("base_url", conn.endpoint)
    if _generation(client_class) == "core":
        kwargs.setdefault("authentication_policy", _BearerHeaderPolicy(credential))
        kwargs.setdefault("polling_interval", polling_interval)
        if "logging_policy" not in kwargs:  # (built with the same arguments as the client would build it)
            kwargs["logging_policy"] = _redacting_network_trace_policy(**kwargs)
        return client_class(credential=credential, subscription_id=subscription, **kwargs)
    made = client_class(credentials=credential, subscription_id=subscription, **kwargs)
    config = getattr(made, "config", None) or getattr(made, "_config", None)
    if config is not None and hasattr(config, "long_running_operation_timeout"):
        config.long_running_operation_timeout = polling_interval
    return made


def client(
    *,
    home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    subscription_id: str | None = None,
    **kwargs: Any,
) -> Any:
    """The Batch AI management client of the installed ``azure-mgmt-batchai``, configured for batchai.

    ``azure.mgmt.batchai.BatchAI`` with azure-mgmt-batchai 7.0.0 (operations ``begin_create``...);
    ``azure.mgmt.batchai.BatchAIManagementClient`` with 2.x (operations ``create``... returning pollers).
    Arguments as for ``make_client``. Raises ``ImportError`` (with what to install) when azure-mgmt-batchai
    is missing, ``NotConfigured`` when no server is configured.
    """
    try:
        import azure.mgmt.batchai as module
    except ImportError as exc:
        raise ImportError(
            "batchai.sdk.client() needs the Azure Batch AI SDK: pip install 'azure-mgmt-batchai==7.0.0' msrest "
            f"(or 'azure-mgmt-batchai==2.0.0') ({exc})"
        ) from exc
    # 7.0.0 names it BatchAI; 2.x (and 1.x) BatchAIManagementClient.
    client_class = next(c for c in (getattr(module, n, None) for n in ("BatchAI", "BatchAIManagementClient")) if c)
    return make_client(client_class, home=home, environ=environ, subscription_id=subscription_id, **kwargs)


def resource_client(
    *,
    home: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    subscription_id: str | None = None,
    **kwargs: Any,
) -> Any:
    """``azure.mgmt.resource.ResourceManagementClient`` configured for batchai (its resource groups).

    Either generation of azure-mgmt-resource (up to 10.x msrest based, 15.0 and later azure-core based).
    Arguments as for ``make_client``. Raises ``ImportError`` when azure-mgmt-resource is missing.
    """
    try:
        from azure.mgmt.resource import ResourceManagementClient
    except ImportError as exc:
        raise ImportError(f"batchai.sdk.resource_client() needs azure-mgmt-resource ({exc})") from exc
    return make_client(ResourceManagementClient, home=home, environ=environ, subscription_id=subscription_id, **kwargs)
