"""A REST connector declared entirely in configuration, for systems without their own.

Everything a vendor module declares in code is a field here: the auth scheme by name with its
credentials (``dg.EnvVar``), the paginator by name with its options, the path and where the
records are, the key, the cursor field and how to send the mark, the page size. A user adds
an unknown system in YAML:

.. code-block:: yaml

    type: generic_rest
    attributes:
      system_name: acme_cmms
      base_url: {env: ACME_BASE_URL}
      auth: session_token
      username: {env: ACME_USERNAME}
      password: {env: ACME_PASSWORD}
      auth_options: {login_path: /auth, token_path: result/sessionToken, header: Session-Token}
      path: /work-orders
      paginator: offset
      paginator_options: {records_path: results, has_more_path: null}
      key: [id]
      cursor_field: updatedAt

Unless the system is declared to filter and order by the cursor field (``cursor_param`` and
``server_ordered``), reads scan the collection and keep what the cursor does not cover, in
cursor order: slower, but exact for any API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field
from typing_extensions import override

from integration_platform.connectors.auth import Auth, build_auth
from integration_platform.connectors.base import Page, resolve_secret
from integration_platform.connectors.cursor import Cursor
from integration_platform.connectors.rest import RestConnector, RestStream
from integration_platform.settings import ConfigError

SECRET_FIELDS = {
    "api_key": {"key": "api_key"},
    "basic": {"username": "username", "password": "password"},
    "oauth2_client_credentials": {"client_id": "client_id", "client_secret": "client_secret"},
    "session_token": {"username": "username", "password": "password"},
    "none": {},
}


class GenericRestConnector(RestConnector):
    """Any JSON REST API, declared by fields; reads only."""

    system: ClassVar[str] = "rest"

    system_name: str = Field(default="rest", description="Name of the system in messages.")
    auth: Literal["none", "api_key", "basic", "oauth2_client_credentials", "session_token"] = Field(
        default="none", description="Auth scheme by name (connectors/auth.py)."
    )
    api_key: str | None = Field(default=None, description="Key for auth api_key; dg.EnvVar.")
    username: str | None = Field(default=None, description="User/email; use dg.EnvVar.")
    password: str | None = Field(default=None, description="Password; use dg.EnvVar.")
    client_id: str | None = Field(default=None, description="OAuth2 client id; dg.EnvVar.")
    client_secret: str | None = Field(default=None, description="OAuth2 secret; dg.EnvVar.")
    auth_options: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret options of the scheme (header, token_url, login_path...).",
    )
    path: str = Field(description="Path of the collection under base_url.")
    paginator: str = Field(default="offset", description="Paginator by name (pagination.py).")
    paginator_options: dict[str, Any] = Field(
        default_factory=dict, description="Options of the paginator (records_path...)."
    )
    key: list[str] = Field(description="Fields that identify a record.")
    cursor_field: str | None = Field(default=None, description="Change timestamp or number.")
    cursor_kind: str | None = Field(
        default=None, description="timestamp, number or epoch_ms; None guesses from the values."
    )
    version_field: str | None = Field(default=None, description="Row version, if any.")
    cursor_param: str | None = Field(
        default=None, description="Query parameter that asks for rows changed at or after."
    )
    server_ordered: bool = Field(
        default=False,
        description="True only if the API returns rows ordered by cursor_field (with "
        "cursor_param filtering): reads then stream instead of scanning.",
    )
    fields: list[str] = Field(default_factory=list, description="Columns always present.")
    params: dict[str, str] = Field(default_factory=dict, description="Fixed query parameters.")
    headers: dict[str, str] = Field(default_factory=dict, description="Fixed request headers.")
    health_path_override: str | None = Field(
        default=None, description="Path for health checks (default: the collection)."
    )
    page_size: int = Field(default=100, ge=1, description="Records per page.")

    def stream(self) -> RestStream:
        if self.cursor_kind not in (None, "timestamp", "number", "epoch_ms"):
            raise ConfigError(
                f"{self.system_name}: cursor_kind {self.cursor_kind!r} is not one of "
                "timestamp, number, epoch_ms"
            )
        return RestStream(
            name=self.system_name,
            path=self.path,
            primary_key=tuple(self.key),
            replication_key=self.cursor_field,
            replication_kind=self.cursor_kind,  # type: ignore[arg-type]
            version_key=self.version_field,
            fields=tuple(self.fields),
            paginator=self.paginator,
            paginator_options=self.paginator_options,
            params=self.params,
            headers=self.headers,
            server_ordered=self.server_ordered,
        )

    @override
    def build_auth(self) -> Auth:
        options: dict[str, Any] = dict(self.auth_options)
        for option, name in SECRET_FIELDS[self.auth].items():
            options[option] = resolve_secret(
                getattr(self, name), field=name, system=self.system_name
            )
        if self.auth == "oauth2_client_credentials" and "://" not in options.get(
            "token_url", "://"
        ):
            options["token_url"] = f"{self.root_url()}{options['token_url']}"
        return build_auth(self.auth, **options)

    @override
    def auth_hint(self) -> str:
        fields = ", ".join(SECRET_FIELDS[self.auth].values()) or "the auth settings"
        return f"check {fields} of connection {self.system_name} (their environment variables)"

    @override
    def stream_params(
        self, stream: RestStream, *, since: Cursor | None, page_size: int | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = dict(stream.params)
        if since is not None and self.cursor_param:
            mark = since.high_water_mark
            params[self.cursor_param] = mark.isoformat() if hasattr(mark, "isoformat") else mark
        return params

    @override
    def probe(self) -> Any:
        path = self.health_path_override or self.path
        response = self.client.request("GET", path, retry=False)
        return self.client.json(response)

    @override
    def system_label(self) -> str:
        return self.system_name

    @override
    def describe_health(self, body: Any) -> str:
        return f"{self.system_name} answered at {self.api_url()}"

    def read_records(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """Records changed at or after ``since`` (all when None), page by page."""
        return self.read_stream(self.stream(), since=since, page_size=page_size or self.page_size)

    def read_work_orders(
        self, *, since: Cursor | None = None, page_size: int | None = None
    ) -> Iterator[Page]:
        """The same as ``read_records``, for a collection of work orders."""
        return self.read_records(since=since, page_size=page_size)
