"""Paginators, chosen by name: where a page's records are and how to ask for the next page.

Each paginator is a pure function of the response body and the request that produced it, so
it is tested without a server. The client owns the loop (and its safety checks: a repeated
next link, a link to another host).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from integration_platform.connectors.auth import dig
from integration_platform.settings import ConfigError


@dataclass(frozen=True)
class PageRequest:
    """What to fetch: a URL with its query parameters and extra headers. Next links from a
    server already hold their query string, so ``params`` is empty for them. RPC-style APIs
    (Fiix) read with a POST whose JSON body carries the paging state."""

    url: str
    params: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "GET"
    json: Any = None


class PaginatorError(ValueError):
    """The body lacks what the paginator needs; the client reports it as ``BadResponse``."""


@dataclass(frozen=True)
class Paginator:
    """Base: where records are (``records_path``) and how to get the next request."""

    name: ClassVar[str] = ""
    records_path: str = ""

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        return request

    def records(self, body: Any) -> list[dict[str, Any]]:
        found = dig(body, self.records_path) if self.records_path else body
        if not isinstance(found, list):
            raise PaginatorError(
                f"expected a list of records at {self.records_path or 'the top level'!r}, "
                f"found {type(found).__name__}"
            )
        return found

    def next(
        self, request: PageRequest, body: Any, records: list[dict[str, Any]]
    ) -> PageRequest | None:
        raise NotImplementedError


@dataclass(frozen=True)
class _NextLink(Paginator):
    """Follow a link the server puts in the body (the server keeps the paging state)."""

    next_path: str = ""
    page_size_param: str | None = None

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        if page_size and self.page_size_param:
            return replace(request, params={**request.params, self.page_size_param: page_size})
        return request

    def next(
        self, request: PageRequest, body: Any, records: list[dict[str, Any]]
    ) -> PageRequest | None:
        link = dig(body, self.next_path)
        if not link:
            return None
        if not isinstance(link, str):
            raise PaginatorError(f"the next-page link at {self.next_path!r} is not text")
        return PageRequest(
            url=link, params={}, headers=request.headers, method=request.method, json=request.json
        )


@dataclass(frozen=True)
class MaximoNextPage(_NextLink):
    """Maximo OSLC: ``member[]`` and ``responseInfo.nextPage.href``; size via
    ``oslc.pageSize``."""

    name: ClassVar[str] = "maximo"
    records_path: str = "member"
    next_path: str = "responseInfo/nextPage/href"
    page_size_param: str | None = "oslc.pageSize"


@dataclass(frozen=True)
class ODataV2Next(_NextLink):
    """OData V2 (SAP Gateway): ``d.results`` and ``d.__next`` (with a ``$skiptoken``). The
    server picks the page size; ``$top`` would limit the whole result, not a page."""

    name: ClassVar[str] = "odata_v2"
    records_path: str = "d/results"
    next_path: str = "d/__next"


@dataclass(frozen=True)
class ODataV4Next(_NextLink):
    """OData V4 (Dataverse, SAP V4): ``value`` and ``@odata.nextLink``; the page size is a
    preference header (``Prefer: odata.maxpagesize=N``), since ``$skip`` is not supported."""

    name: ClassVar[str] = "odata_v4"
    records_path: str = "value"
    next_path: str = "@odata.nextLink"

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        if not page_size:
            return request
        prefer = [p for p in (request.headers.get("Prefer"),) if p]
        prefer.append(f"odata.maxpagesize={page_size}")
        return replace(request, headers={**request.headers, "Prefer": ",".join(prefer)})


@dataclass(frozen=True)
class OffsetLimit(Paginator):
    """``limit``/``offset`` query parameters (UpKeep, Oracle Fusion). Stops when ``hasMore``
    is false where the system sends it, else on a short or empty page."""

    name: ClassVar[str] = "offset"
    records_path: str = "items"
    limit_param: str = "limit"
    offset_param: str = "offset"
    has_more_path: str | None = "hasMore"
    default_page_size: int = 100

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        size = page_size or self.default_page_size
        params = {**request.params, self.limit_param: size, self.offset_param: 0}
        return replace(request, params=params)

    def next(
        self, request: PageRequest, body: Any, records: list[dict[str, Any]]
    ) -> PageRequest | None:
        limit = int(request.params[self.limit_param])
        offset = int(request.params[self.offset_param])
        has_more = dig(body, self.has_more_path) if self.has_more_path else None
        if has_more is False or not records:
            return None
        if has_more is None and len(records) < limit:
            return None
        params = {**request.params, self.offset_param: offset + len(records)}
        return replace(request, params=params)


@dataclass(frozen=True)
class CursorToken(Paginator):
    """An opaque token from the body sent back as a query parameter (``next_cursor``)."""

    name: ClassVar[str] = "cursor"
    records_path: str = "data"
    token_path: str = "next_cursor"
    token_param: str = "cursor"
    page_size_param: str | None = "limit"

    def first(self, request: PageRequest, page_size: int | None) -> PageRequest:
        if page_size and self.page_size_param:
            return replace(request, params={**request.params, self.page_size_param: page_size})
        return request

    def next(
        self, request: PageRequest, body: Any, records: list[dict[str, Any]]
    ) -> PageRequest | None:
        token = dig(body, self.token_path)
        if token in (None, "") or not records:
            return None
        return replace(request, params={**request.params, self.token_param: token})


PAGINATORS: dict[str, Callable[..., Paginator]] = {
    cls.name: cls for cls in (MaximoNextPage, ODataV2Next, ODataV4Next, OffsetLimit, CursorToken)
}


def build_paginator(name: str, **options: Any) -> Paginator:
    """A paginator by its name, e.g. ``build_paginator("offset", records_path="results")``."""
    try:
        factory = PAGINATORS[name]
    except KeyError:
        known = ", ".join(sorted(PAGINATORS))
        raise ConfigError(f"unknown paginator {name!r}; use one of: {known}") from None
    return factory(**options)
