"""The archive web view as a tornado application and a JupyterHub service.

The hub starts it (see :func:`musewise.hubcli.configure`) as a managed service
named ``archive``, which gives it, in the environment, its address
(``JUPYTERHUB_SERVICE_URL``), URL prefix (``JUPYTERHUB_SERVICE_PREFIX``) and its
OAuth client credentials; the archive comes from the usual ``MUSEWISE_*``
settings. Run by hand for debugging with ``python -m musewise.web``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import urlparse

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from . import api, pages, qctrends, review, timeline
from .base import ID_PATTERN, OAuthCallbackHandler

HERE = Path(__file__).parent


def make_app(archive, *, prefix: str = "/services/archive/", hub_auth=None, cache_dir=None,
             sql_limit: int = 1000, hub_prefix: str = "/hub/", debug: bool = False) -> web.Application:
    """Build the web view.

    Parameters
    ----------
    archive : Archive
        The archive; each request sees it as the logged-in hub user (``as_user``).
    prefix : str
        URL prefix of the service (the hub routes ``/services/archive/`` to it).
    hub_auth : HubOAuth, optional
        How users are identified (default: configured from the service's environment).
    cache_dir : path-like, optional
        Quick-look images and rendered notebooks (default ``<root>/cache/web``).
    sql_limit : int
        Most rows a SQL query returns.
    """
    from jupyterhub.services.auth import HubOAuth

    prefix = "/" + prefix.strip("/") + "/"
    if hub_auth is None:
        hub_auth = HubOAuth(cache_max_age=60)
    cache = Path(cache_dir) if cache_dir else Path(archive.config.root) / "cache" / "web"
    ident = ID_PATTERN
    routes = [
        ("", pages.HomeHandler),
        ("oauth_callback", OAuthCallbackHandler),
        ("versions", pages.VersionsHandler),
        ("datasets", pages.TableHandler),
        (r"datasets/([a-z]+)", pages.TableHandler),
        (f"datasets/{ident}", pages.DatasetHandler),
        (f"datasets/{ident}/quicklook.png", pages.QuicklookHandler),
        (f"datasets/{ident}/sources/{ident}/(spectrum|image)\\.png", pages.SourceHandler),
        (f"datasets/{ident}/notebook.html", pages.NotebookHandler),
        (f"datasets/{ident}/file", pages.DownloadHandler),
        (f"datasets/{ident}/provenance\\.(json|provn|svg)", pages.ProvenanceHandler),
        (f"runs/{ident}", pages.RunHandler),
        ("sql", pages.SQLPageHandler),
        ("calibrations", timeline.CalibrationsHandler),
        (f"datasets/{ident}/certify", timeline.CertifyHandler),
        ("api/certifications", timeline.CertificationsAPI),
        (f"datasets/{ident}/review", review.ReviewHandler),
        (f"datasets/{ident}/thumb\\.png", review.ThumbnailHandler),
        ("trends", qctrends.TrendsHandler),
        ("api/datasets", api.DatasetsAPI),
        (f"api/datasets/{ident}", api.DatasetAPI),
        (f"api/datasets/{ident}/file", api.FileAPI),
        (f"api/runs/{ident}", api.RunAPI),
        (f"api/provenance/{ident}", api.ProvenanceAPI),
        ("api/sql", api.SQLAPI),
    ]
    from bokeh.util.paths import bokehjs_path

    handlers = [(prefix + path + "$", handler) for path, handler in routes]
    # BokehJS of the installed bokeh for the trend plots, served here: analysis nodes are often offline.
    handlers.append((prefix + "bokehjs/(.*)", web.StaticFileHandler, {"path": str(Path(bokehjs_path()) / "js")}))
    return web.Application(
        handlers,
        archive=archive, hub_auth=hub_auth, prefix=prefix, hub_prefix=hub_prefix, cache_dir=cache, sql_limit=int(sql_limit),
        template_path=str(HERE / "templates"), static_path=str(HERE / "static"),
        static_url_prefix=prefix + "static/", cookie_secret=os.urandom(32),
        # Forms that change the archive check the hub login's XSRF token themselves
        # (CertifyHandler, ReviewHandler): a global check would run before the API token is read.
        # Besides, HubOAuth accepts no login cookie on a POST without the token.
        xsrf_cookies=False, ui_modules={"Certifications": timeline.CertificationsModule},
        debug=debug, autoreload=False,
    )


def main(argv=None) -> None:
    """Serve the web view as the hub's ``archive`` service."""
    import argparse

    from ..archive import Archive

    p = argparse.ArgumentParser(prog="python -m musewise.web", description=__doc__.splitlines()[0])
    p.add_argument("--sql-limit", type=int, default=1000)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="[%(levelname).1s %(asctime)s archive-web] %(message)s")
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/archive/")
    archive = Archive.open()
    app = make_app(archive, prefix=prefix, sql_limit=args.sql_limit, debug=args.debug,
                   hub_prefix=os.environ.get("JUPYTERHUB_BASE_URL", "/").rstrip("/") + "/hub/")
    server = HTTPServer(app, xheaders=True)
    server.listen(url.port or 80, url.hostname or "127.0.0.1")
    logging.info("archive web view for %s at %s%s", archive, url.geturl().rstrip("/"), prefix)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
