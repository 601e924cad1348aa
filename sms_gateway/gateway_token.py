"""Who may call the gateway webhooks: whoever holds the gateway token.

`/ussd` always demands it, `/sms/twilio` and `/sms/twilio/status` when TWILIO_AUTH_TOKEN is
unset (otherwise Twilio's signature stands for it). The token is USSD_GATEWAY_TOKEN, or the one
generated at first start into DATA_DIR/gateway_token (`Settings.resolved_gateway_token`). The
gateway sends it as header `X-Gateway-Token` or query parameter `?token=`; it is compared in
constant time, before the body is read, and a refusal says nothing about the request.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

from settings import Settings

HEADER = "X-Gateway-Token"
QUERY = "token"
REFUSAL = "missing or wrong gateway token"


def given_token(request: Request) -> str:
    return request.headers.get(HEADER) or request.query_params.get(QUERY) or ""


def require_gateway_token(settings: Settings, request: Request) -> None:
    """403 unless the request carries the gateway token."""
    expected = settings.resolved_gateway_token.encode()
    if not hmac.compare_digest(given_token(request).encode(), expected):
        raise HTTPException(403, REFUSAL)
