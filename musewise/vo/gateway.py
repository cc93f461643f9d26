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

Responses are streamed with back-pressure: the gateway reads the data centre's answer one
block at a time and reads the next only when the client has taken the last, so a 3 GB
cube to a slow client never sits in the gateway's memory.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import quote, urlsplit

from tornado import gen, web
from tornado.iostream import StreamClosedError
from tornado.tcpclient import TCPClient

log = logging.getLogger(__name__)

#: Request headers passed on to a data centre (credentials and hop-by-hop headers are not).
FORWARD_REQUEST = ("Accept", "Accept-Encoding", "Content-Type", "Range", "If-Modified-Since",
                   "If-None-Match", "User-Agent")
#: Bytes read from a data centre before they are passed on (and flushed).
CHUNK = 1 << 20
#: Longest response header accepted from a data centre (bytes).
MAX_HEADER = 1 << 16
#: Characters left as they are in a forwarded path and query (the rest is percent-encoded:
#: no raw space or line break can reach the data centre's request line).
SAFE_TARGET = "/?&=%:+,;@!$'()*~-._"
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
        if audience not in self.settings["targets"]:
            if not path:  # the service's own page (which the hub polls at its start): up, and saying why not ready
                self.set_header("Content-Type", "text/plain; charset=UTF-8")
                self.finish(f"musewise VO service: {self.settings['unavailable']()}\n")
                return
            raise web.HTTPError(503, self.settings["unavailable"]())
        url = urlsplit(self.settings["targets"][audience])
        target = "/" + path + ("?" + self.request.query if self.request.query else "")
        body = self.request.body if self.request.method == "POST" else b""
        head = [f"{self.request.method} {quote(target, safe=SAFE_TARGET)} HTTP/1.0", f"Host: {url.netloc}",
                f"X-Forwarded-For: {self.request.remote_ip or ''}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in self.request.headers.get_all() if k in FORWARD_REQUEST]
        if body:
            head.append(f"Content-Length: {len(body)}")
        try:
            upstream = await gen.with_timeout(timedelta(seconds=30), TCPClient().connect(url.hostname, url.port))
        except (OSError, gen.TimeoutError) as exc:
            raise web.HTTPError(502, f"the {audience} VO server does not answer ({exc or 'timeout'})") from None
        try:
            await upstream.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            raw = await gen.with_timeout(timedelta(seconds=self.settings["request_timeout"]),
                                         upstream.read_until_regex(b"\r?\n\r?\n", max_bytes=MAX_HEADER))
            self._relay_header(raw.decode("latin-1"), audience)
            if self.request.method == "HEAD":
                self.finish()
                return
            # HTTP/1.0 with Connection: close - the body is everything until the server closes.
            # Each block is flushed to the client before the next is read: a slow client slows
            # the read instead of filling the gateway's memory with a 3 GB cube.
            while True:
                try:
                    chunk = await upstream.read_bytes(CHUNK, partial=True)
                except StreamClosedError:
                    break
                self.write(chunk)
                await self.flush()
            self.finish()
        except (StreamClosedError, gen.TimeoutError) as exc:
            if not self._headers_written:
                raise web.HTTPError(502, f"the {audience} VO server broke off ({exc or 'timeout'})") from None
            self.request.connection.close()  # a truncated body must not look complete
        finally:
            upstream.close()

    def _relay_header(self, text: str, audience: str) -> None:
        lines = text.strip().splitlines()
        try:
            self.set_status(int(lines[0].split(" ", 2)[1]))
        except (IndexError, ValueError):
            raise web.HTTPError(502, f"the {audience} VO server answered something that is not HTTP") from None
        self.clear_header("Content-Type")
        for line in lines[1:]:
            k, _, v = line.partition(":")
            name = k.strip().lower()
            if name == "content-length" and self.request.method != "HEAD":
                self.set_header("Content-Length", v.strip())  # clients see the size of a download
            elif name not in DROP_RESPONSE:
                self.add_header(k.strip(), v.strip())

    get = post = delete = _forward

    async def head(self, path: str) -> None:
        await self._forward(path)

    def write_error(self, status_code, **kwargs):
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        if status_code == 503:  # starting: clients that honour it come back by themselves
            self.set_header("Retry-After", "30")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish(f"{status_code}: {reason}\n")


def make_app(targets: dict[str, str], *, prefix: str, hub_auth, is_member,
             request_timeout: float = 3600.0, unavailable=None) -> web.Application:
    """The gateway as a tornado application.

    Parameters
    ----------
    targets : dict
        Audience -> address of its data centre (``http://127.0.0.1:port``); read at each
        request, so the caller fills it in once the data centres are up.
    prefix : str
        URL prefix the hub routes to the service (``/services/vo/``).
    hub_auth : HubAuth
        Resolves tokens (configured from the service's environment).
    is_member : callable
        ``is_member(hub user name) -> bool``: may this user see consortium data?
    request_timeout : float
        Longest a forwarded request may take (s): a cube download.
    unavailable : callable, optional
        ``unavailable() -> str``: why an audience missing from ``targets`` cannot be served
        (the answer is a 503 with that reason and ``Retry-After``).
    """
    prefix = "/" + prefix.strip("/") + "/"
    return web.Application([(prefix + "(.*)", VOGatewayHandler)], targets=targets, hub_auth=hub_auth,
                           is_member=is_member, request_timeout=float(request_timeout),
                           unavailable=unavailable or (lambda: "the VO data centres are not ready"))
