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
  about 20 ms), and sends each call to its own server over HTTP. Clients are
  thread-safe: one per region, service and endpoint, answered in-process by
  moto's dispatcher (the same request parsing and backends, no socket).
- Start: moto's Step Functions parser imports ``moto.batch.utils`` for one enum, and
  ``moto.batch``'s package imports EC2's models (region tables built from botocore's
  JSON): 0.9 s of every emulator start, for services the pipeline never calls.
  ``moto.batch`` is registered unexecuted; its first attribute lookup (moto's
  backend registry asking for ``batch_backends``) executes it (:func:`defer_batch_import`).
- First requests: a REST service's router is built once, not once per concurrent
  first request (:func:`lock_routers`).

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


def lock_routers() -> None:
    """moto builds a REST service's operation router on its first request (``get_service_router``, a
    ``functools.cache``, then ``ServiceOperationRouter._get_router``, a dict: neither stops two threads computing
    the same entry; about 0.1 s for Lambda): a deploy's four concurrent first Lambda calls built it four times,
    one after another under the GIL. Built once now, the others waiting for it (idempotent)."""
    from moto.core import responses, routing

    original = routing.get_service_router
    if getattr(original, _MARK, False):
        return
    building = threading.RLock()  # a router's build may ask for another service's
    built: dict[str, Any] = {}

    def get_service_router(service_name: str) -> Any:
        router = built.get(service_name)
        if router is None:
            with building:
                router = built.get(service_name) or original(service_name)
                built[service_name] = router
        return router

    def _get_router(self: Any, protocol: str, _lazy: Any = routing.ServiceOperationRouter._get_router) -> Any:
        router = self._routers.get(protocol)
        if router is None:
            with building:
                router = _lazy(self, protocol)  # builds only if no other thread did meanwhile
        return router

    setattr(get_service_router, _MARK, True)
    routing.get_service_router = get_service_router
    responses.get_service_router = get_service_router  # imported by name there
    routing.ServiceOperationRouter._get_router = _get_router  # one router per service and protocol, also lazily


def defer_batch_import() -> None:
    """Register ``moto.batch`` without running its ``__init__`` (idempotent; call before Step Functions' parser
    is imported): its submodules import as usual, and any attribute of the package itself loads it whole."""
    import importlib.util
    import sys

    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)
    loading = threading.Lock()

    def __getattr__(name: str) -> Any:
        with loading:
            if package.__dict__.pop("__getattr__", None) is not None:
                spec.loader.exec_module(package)  # type: ignore[union-attr]
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'moto.batch' has no attribute {name!r}") from None

    package.__getattr__ = __getattr__  # type: ignore[attr-defined]
    sys.modules["moto.batch"] = package
    sys.modules["moto"].batch = package  # what an import of a submodule sets on its parent


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
    """moto's client, its requests answered in this process: botocore serializes each call and moto's own
    dispatcher (its ``BotocoreStubber``, what ``mock_aws`` uses) parses and answers it, as its server would, without
    the socket, the server's thread and HTTP parsing (werkzeug closes every connection: a Task's Invoke paid a new
    connection and thread). The endpoint is AWS's (an ``AWS_ENDPOINT_URL`` of the host's is ignored), never reached:
    the stubber answers every AWS URL."""
    from moto.core.botocore_stubber import BotocoreStubber

    def build(region: str, service: str, port: int, intercepting: bool) -> Any:
        client = original(region, service)
        config = client.meta.config.merge(Config(max_pool_connections=_POOL_CONNECTIONS, ignore_configured_endpoint_urls=True))
        shared = boto3.client(service, region_name=region, aws_access_key_id="ak", aws_secret_access_key="sk", config=config)
        if not intercepting:  # under mock_aws, moto's own stubber already answers every client
            in_process = BotocoreStubber()
            in_process.enabled = True
            shared.meta.events.register("before-send", in_process)
        return shared

    return build


def _rebind(original: Any, replacement: Any) -> None:
    """Modules that did ``from ... import boto_client_for`` hold the old function: point them at the new one."""
    import sys

    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("moto.stepfunctions") and getattr(module, "boto_client_for", None) is original:
            module.boto_client_for = replacement
