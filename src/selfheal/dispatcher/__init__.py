"""The dispatcher (`selfheal serve`): alert intake over HTTP, the policy-gated remediation
pipeline, and a worker pool running runbooks through ansible-runner. See docs/dispatcher.md.

    from selfheal.dispatcher import Dispatcher, build_app, load_config

    dispatcher = Dispatcher(load_config("dispatcher.yml"))
    app = build_app(dispatcher)          # an ASGI 3 app; serve() runs it under uvicorn
"""

from __future__ import annotations

from selfheal.dispatcher.app import API
from selfheal.dispatcher.config import DispatcherConfig, config_from_data, load_config
from selfheal.dispatcher.core import Dispatcher


def build_app(dispatcher: Dispatcher, *, manage_lifecycle: bool = True) -> API:
    return API(dispatcher, manage_lifecycle=manage_lifecycle)


def serve(config: DispatcherConfig) -> None:
    """Run the dispatcher under uvicorn until SIGINT/SIGTERM; SIGHUP reloads the policy."""
    import signal
    import threading

    import uvicorn

    from selfheal.dispatcher.http_timeouts import header_timeout_protocol
    from selfheal.dispatcher.logs import setup_logging

    setup_logging(config.log_level)
    dispatcher = Dispatcher(config)
    host, port = config.host_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(dispatcher),
            host=host,
            port=port,
            lifespan="on",
            access_log=False,
            log_config=None,
            backlog=4096,
            timeout_keep_alive=30,
            # httptools (the C parser: about twice the pure-Python h11 rate), with a header
            # timeout: a connection must complete its request headers in header_timeout_s
            http=header_timeout_protocol(config.header_timeout_s),
            proxy_headers=False,  # nothing here reads the client address; saves a layer
        )
    )
    if hasattr(signal, "SIGHUP"):  # reload the policy; off the signal handler (it may wait)
        signal.signal(
            signal.SIGHUP,
            lambda *_: threading.Thread(
                target=dispatcher.reload_on_signal, name="selfheal-reload", daemon=True
            ).start(),
        )
    server.run()


__all__ = [
    "API",
    "Dispatcher",
    "DispatcherConfig",
    "build_app",
    "config_from_data",
    "load_config",
    "serve",
]
