"""The handler base class: who the hub says the user is, and their view of the archive."""

from __future__ import annotations

import json

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web
from tornado.ioloop import IOLoop

from ..exceptions import (
    AlreadyClaimedError,
    InvalidArgumentError,
    NotFoundError,
    ParameterError,
    PermissionDeniedError,
    QueryError,
)

#: HTTP status of the errors that refuse a request (the user can change the request).
#: Anything else a handler raises - a ValueError from deep inside included - is a
#: failure of the service: a logged 500 whose page says nothing of the cause.
STATUS = ((NotFoundError, 404), (PermissionDeniedError, 403), (QueryError, 400), (ParameterError, 400),
          (InvalidArgumentError, 400), (AlreadyClaimedError, 409))

#: Largest ID of a registry row (a signed 64-bit integer).
MAX_ID = 2**63 - 1
#: Digits of an ID in a URL: a longer one names no row (a 404, not a database error).
ID_PATTERN = r"([0-9]{1,18})"

#: What a 500 page says (the cause and traceback are in the service's log, not on the page).
INTERNAL_ERROR = "internal error of the archive web view; it has been logged for the administrators"


class ArchiveHandler(HubOAuthenticated, web.RequestHandler):
    """Base of every page and API handler.

    Subclasses implement ``get`` (decorated with :func:`tornado.web.authenticated`)
    and read the archive through :attr:`arch`, which is the service's archive
    seen by the logged-in user, so privileges apply to everything shown.
    Errors raised by the archive become 404 (not found *or* not visible: the
    two are indistinguishable on purpose), 403 or 400 (see :data:`STATUS`);
    handlers turn bad request arguments into :class:`~musewise.exceptions.QueryError`.
    Any other exception is a 500, logged with its traceback.
    """

    #: True for JSON handlers: errors are JSON and unauthenticated requests get 403, not a login redirect.
    is_api = False

    @property
    def hub_auth(self):
        # One HubOAuth per application (not per class), so several apps can live in one process.
        return self.settings["hub_auth"]

    async def prepare(self):
        # Ask the hub who this is without blocking the event loop (HubAuth's synchronous
        # path would wait on a thread); get_current_user then finds the answer cached.
        await self.hub_auth.get_user(self, sync=False)

    @property
    def user_name(self) -> str:
        return self.current_user["name"]

    @property
    def arch(self):
        """The archive as seen by the logged-in user."""
        if not hasattr(self, "_arch"):
            self._arch = self.settings["archive"].as_user(self.user_name)
        return self._arch

    def url(self, path: str = "") -> str:
        """Absolute URL path of a page of this service (``path`` relative to its prefix)."""
        return self.settings["prefix"] + path.lstrip("/")

    def get_template_namespace(self):
        ns = super().get_template_namespace()
        ns.update(url=self.url, user=self.current_user, hub_prefix=self.settings.get("hub_prefix", "/hub/"),
                  human_size=human_size)
        return ns

    def get_login_url(self):
        if self.is_api:
            raise web.HTTPError(403, "send a hub API token: Authorization: token <token>")
        return super().get_login_url()

    async def blocking(self, fn, *args):
        """Run slow work (images, notebooks, SQL) off the event loop."""
        return await IOLoop.current().run_in_executor(None, fn, *args)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = self._reason
        for cls, code in STATUS:
            if isinstance(exc, cls):
                status_code = code
                self.set_status(code)
                message = str(exc)
                break
        else:
            if isinstance(exc, web.HTTPError) and exc.log_message and status_code < 500:
                message = exc.log_message % exc.args if exc.args else exc.log_message
            elif status_code >= 500:
                # The message of an unexpected exception may hold paths, SQL or data the
                # user may not see: the page says only that it failed.
                message = INTERNAL_ERROR
        self.clear_header("Content-Disposition")
        if self.is_api:
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "message": message}))
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        try:
            self.render("error.html", status=status_code, message=message)
        except Exception:  # noqa: BLE001 - never fail while reporting a failure
            self.finish(f"<h1>{status_code}</h1>")

    def log_exception(self, typ, value, tb):
        # Expected refusals are not server errors: keep the log for real failures.
        if isinstance(value, tuple(cls for cls, _ in STATUS)):
            return
        super().log_exception(typ, value, tb)


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """Completes the hub's OAuth login (at ``<prefix>oauth_callback``)."""

    @property
    def hub_auth(self):
        return self.settings["hub_auth"]


def whole_number(handler, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """Request argument ``name`` as a whole number from ``lo`` to ``hi`` (``default`` if absent).

    Raises
    ------
    QueryError
        If it is not a whole number in that range (HTTP 400 with that message): a huge
        number would otherwise reach the database and fail there (HTTP 500).
    """
    raw = handler.get_argument(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise QueryError(f"{name} must be from {lo} to {hi}, not {raw[:40]}")
    return value


def human_size(n: int) -> str:
    """A file size in bytes as text (``12.3 MB``)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def jsonable(obj):
    """Turn records (dataclasses with datetimes, enums) into JSON-ready values."""
    return json.loads(json.dumps(obj, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))
