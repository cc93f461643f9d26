"""The hub's ``vo`` service: one address for TAP, ObsCore and DataLink, two audiences behind it.

Clients (pyvo, TOPCAT, Aladin) reach ``<hub>/services/vo/tap`` and so on. The
gateway decides who asks and forwards the request, unchanged, to the data centre
of that audience (:mod:`musewise.vo.publish`):

* no ``Authorization`` header: the public data centre;
* ``Authorization: token <hub token>`` (or ``Bearer``): the hub says whose token it
  is (:class:`jupyterhub.services.auth.HubAuth`); a consortium member (or an archive
  administrator) gets the consortium data centre, anyone else the public one;
* a token the hub does not know, or one without access to this service: 403,
  with the reason. A client that sent a token never silently gets less.

Identity is never taken from the request itself: no header other than the hub token
is read, and the gateway drops ``Authorization`` and cookies before forwarding, so
a data centre never sees a credential. Both data centres write the same public URL
in their links (capabilities, job URLs, DataLink), so a client that keeps sending its
token keeps talking to the same data centre, and an asynchronous job made with a
token cannot be read without it (the public data centre has no such job).

Responses are streamed: a 3 GB cube passes through without being held in memory.
"""

from __future__ import annotations

import logging

from tornado import httpclient, web

log = logging.getLogger(__name__)

#: Request headers passed on to a data centre (credentials and hop-by-hop headers are not).
FORWARD_REQUEST = ("Accept", "Accept-Encoding", "Content-Type", "Range", "If-Modified-Since",
                   "If-None-Match", "User-Agent")
#: Response headers not passed back (hop-by-hop; tornado frames the body itself).
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "server", "date", "content-length"}


class VOGatewayHandler(web.RequestHandler):
    """Forwards every request under the service's prefix to an audience's data centre."""

    SUPPORTED_METHODS = ("GET", "POST", "HEAD", "DELETE")

    async def audience(self) -> str:
        """``public`` or ``consortium``, from the request's hub token (403 for a bad token)."""
        header = self.request.headers.get("Authorization", "")
        if not header:
            return "public"
        kind, _, token = header.partition(" ")
        if kind.lower() not in ("token", "bearer") or not token.strip():
            raise web.HTTPError(403, "Authorization must be 'token <hub API token>' or 'Bearer <hub API token>'")
        auth = self.settings["hub_auth"]
        model = await auth.user_for_token(token.strip(), use_cache=True, sync=False)
        if model is None:
            raise web.HTTPError(403, "the hub does not know this token (expired or revoked?)")
        if auth.access_scopes and not auth.check_scopes(auth.access_scopes, model):
            raise web.HTTPError(403, f"this token may not use the {auth.oauth_client_id or 'vo'} service "
                                     f"(scope {sorted(auth.access_scopes)[0]})")
        name = model.get("name")
        if not name or model.get("kind", "user") != "user":
            return "public"
        return "consortium" if self.settings["is_member"](name) else "public"

    async def _forward(self, path: str) -> None:
        audience = await self.audience()
        target = self.settings["targets"][audience] + "/" + path
        if self.request.query:
            target += "?" + self.request.query
        headers = {k: v for k, v in self.request.headers.items() if k in FORWARD_REQUEST}
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        self._started = False

        def on_header(line: str) -> None:
            line = line.rstrip("\r\n")
            if line.startswith("HTTP/"):
                self._status = int(line.split(" ", 2)[1])
                self._headers_in = []
            elif ":" in line:
                k, v = line.split(":", 1)
                self._headers_in.append((k.strip(), v.strip()))

        def on_chunk(chunk: bytes) -> None:
            self._begin()
            self.write(chunk)
            self.flush()

        request = httpclient.HTTPRequest(
            target, method=self.request.method, headers=headers,
            body=self.request.body if self.request.method == "POST" else None,
            allow_nonstandard_methods=True, follow_redirects=False, decompress_response=False,
            header_callback=on_header, streaming_callback=on_chunk,
            connect_timeout=30, request_timeout=self.settings["request_timeout"])
        try:
            await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as exc:
            raise web.HTTPError(502, f"the {audience} VO server does not answer ({exc})") from None
        self._begin()
        self.finish()

    def _begin(self) -> None:
        if self._started:
            return
        self._started = True
        self.set_status(self._status)
        self.clear_header("Content-Type")
        for k, v in self._headers_in:
            if k.lower() not in DROP_RESPONSE:
                self.add_header(k, v)

    get = post = delete = _forward

    async def head(self, path: str) -> None:
        await self._forward(path)

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish(f"{status_code}: {reason}\n")


def make_app(targets: dict[str, str], *, prefix: str, hub_auth, is_member,
             request_timeout: float = 3600.0) -> web.Application:
    """The gateway as a tornado application.

    Parameters
    ----------
    targets : dict
        Audience -> address of its data centre (``http://127.0.0.1:port``).
    prefix : str
        URL prefix the hub routes to the service (``/services/vo/``).
    hub_auth : HubAuth
        Resolves tokens (configured from the service's environment).
    is_member : callable
        ``is_member(hub user name) -> bool``: may this user see consortium data?
    request_timeout : float
        Longest a forwarded request may take (s): a cube download.
    """
    prefix = "/" + prefix.strip("/") + "/"
    return web.Application([(prefix + "(.*)", VOGatewayHandler)], targets=targets, hub_auth=hub_auth,
                           is_member=is_member, request_timeout=float(request_timeout))
