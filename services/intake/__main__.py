"""`python -m services.intake`: the HTTP API and the AMQP command consumer."""

import uvicorn

from services.intake.app import create_app
from shared.runtime import logs, tracing
from shared.runtime.process import adapters
from shared.runtime.startup import settings_for

DEFAULT_PORT = 8080


def main() -> None:
    settings = settings_for("intake", redemption_ids=True, code_secret=True)
    logs.configure(settings.log_level, settings.log_format)
    tracing.configure("intake")
    app = create_app(settings, adapters)
    proxies = settings.trusted_proxies()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.port_for(DEFAULT_PORT),
        # X-Forwarded-For names the client (counted by the failure budget) only when
        # one of REDEEM_FORWARDED_ALLOW_IPS sent it; uvicorn's default trusts loopback.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than callers and load balancers keep idle connections, so that
        # the server is never the one closing a connection a caller reuses.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
