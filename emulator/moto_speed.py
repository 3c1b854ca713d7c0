"""Two per-request costs of moto's server, removed (behaviour unchanged; each pinned by a contract test).

- Routing: for every request moto lists its own package folder on disk
  (``moto.backends.list_of_moto_modules``: ~150 ``isdir`` calls, under the
  dispatcher's global lock). The folder does not change while it runs: listed once.
- Step Functions' JSONPath: moto parses each path (ResultPath, InputPath, ...) afresh
  at every state of every iteration, and ``jsonpath_ng`` builds its parser tables on
  each parse (a fifth of the interpreter's time in a Map). Parsed paths are immutable
  (``find``/``update`` change the data, not the expression): each parsed once.
- Step Functions' Lambda and S3 calls: moto's interpreter builds a new boto3
  client for every task (``boto_client_for``: loading service models from JSON,
  about 20 ms). Clients are thread-safe: one per region, service and endpoint.

Measured with ``benchmarks/scale.py`` (per-rank overhead; see the README).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import boto3
from botocore.config import Config

_MARK = "_cosmicai_fast"
_POOL_CONNECTIONS = 64
_LOCK = threading.Lock()


def speed_up_moto() -> None:
    """Install both (idempotent)."""
    import moto.backends as backends

    if not getattr(backends.list_of_moto_modules, _MARK, False):
        listed = tuple(backends.list_of_moto_modules())

        def list_of_moto_modules() -> tuple[str, ...]:
            return listed

        setattr(list_of_moto_modules, _MARK, True)
        backends.list_of_moto_modules = list_of_moto_modules

    _cache_json_paths()
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for
    if getattr(original, _MARK, False):
        return
    cached = functools.lru_cache(maxsize=64)(_shared_client(original))

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        with _LOCK:  # building a client is not thread-safe; using one is
            return cached(region, service, moto_server_port(), botocore_stubber.enabled)

    setattr(boto_client_for, _MARK, True)
    boto_client._cosmicai_original = original  # type: ignore[attr-defined]
    boto_client.boto_client_for = boto_client_for
    _rebind(original, boto_client_for)


def _cache_json_paths() -> None:
    """moto's two JSONPath parse sites, memoised per path string."""
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    for module in (result_path, json_path):
        if not getattr(module.parse, _MARK, False):
            cached = functools.lru_cache(maxsize=1024)(module.parse)
            setattr(cached, _MARK, True)
            module.parse = cached


def _shared_client(original: Any) -> Any:
    """moto's client, with a connection pool as wide as a Map's concurrency (its default of 10 would
    drop and reopen connections when more ranks than that share the client)."""

    def build(region: str, service: str, port: int, intercepting: bool) -> Any:
        client = original(region, service)
        config = client.meta.config.merge(Config(max_pool_connections=_POOL_CONNECTIONS))
        return boto3.client(
            service,
            region_name=region,
            aws_access_key_id="ak",
            aws_secret_access_key="sk",
            endpoint_url=None if intercepting else client.meta.endpoint_url,
            config=config,
        )

    return build


def _rebind(original: Any, replacement: Any) -> None:
    """Modules that did ``from ... import boto_client_for`` hold the old function: point them at the new one."""
    import sys

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = replacement
