"""The front door's HTTP side: security headers on every response, the session cookie's
flags, and the client's address (behind a trusted proxy only if one is configured)."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from sandbox.config import Settings

# Pages load their scripts and styles from /static alone: no inline script or style
# (an injected one will not run), no plugin, no framing, forms post only here.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "object-src 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # A response is what its Content-Type says: a CSV result is never run as a script.
    "X-Content-Type-Options": "nosniff",
    # No framing, for browsers older than frame-ancestors: no clickjacking of a review.
    "X-Frame-Options": "DENY",
    # A page's address (which may name a job or a dataset) stays on this site.
    "Referrer-Policy": "same-origin",
}
# Behind TLS, browsers keep to HTTPS for a year after the first visit.
STRICT_TRANSPORT_SECURITY = "max-age=31536000"


def init_app(app: Flask, settings: Settings) -> None:
    app.config.update(
        # Script on a page cannot read the session cookie.
        SESSION_COOKIE_HTTPONLY=True,
        # Not sent with another site's POST (and its forms carry a CSRF token besides);
        # Lax, not Strict, so a link to a page from elsewhere finds the reader logged in.
        SESSION_COOKIE_SAMESITE="Lax",
        # Behind TLS the cookie never travels over plain HTTP.
        SESSION_COOKIE_SECURE=settings.tls,
    )
    if settings.trusted_proxies:
        # Only that many proxies' X-Forwarded-For / -Proto are believed: the address the
        # login throttle counts is the one the outermost trusted proxy saw.
        count = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)  # type: ignore[method-assign]

    @app.after_request
    def _security_headers(response: Response) -> Response:
        # after_request also runs for error pages and /static: every response has them.
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if settings.tls:
            response.headers.setdefault("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY)
        return response


def client_address() -> str:
    """The address the login throttle counts: the connection's, or the one a trusted
    proxy forwarded (ProxyFix has set ``remote_addr`` then)."""
    return request.remote_addr or "unknown"
