"""QC review in the web view: a product's 24-IFU grid and the reviewers' verdicts.

* ``GET datasets/<id>/review[?ifu=k]``: the grid of the product's IFUs
  (:func:`musewise.qc.grid.ifu_grid`; MUSE-WISE's DBView "Is_Valid - click IFU to edit"):
  a tile per IFU coloured by its flag, struck through when invalid, with its QC numbers
  and a thumbnail; a click on a tile opens it below, where a reviewer claims the product
  and records validity, flag and comment. Others see the same page without the forms.
  The products marked affected by the product's invalid IFUs are listed, and the audit
  trail of claims, verdicts and validity changes (:func:`musewise.qc.review.review_history`);
* ``POST datasets/<id>/review``: those forms (``action`` = ``claim``, ``unclaim`` or
  ``verdict``; ``ifu``, ``valid`` yes/no, ``flag``, ``comment``, ``_xsrf``), checked against
  the hub login's XSRF token and recorded through :mod:`musewise.qc.review` as the
  user the hub logged in (no form field names the user), whose refusal is the answer:
  403 for a user who may not review, 409 for a product claimed by someone else, 400 for
  a verdict without a comment;
* ``GET datasets/<id>/thumb.png[?ifu=k]``: a tile's thumbnail.

QC trends are in :mod:`musewise.web.qctrends`; a click on a point there opens this page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from tornado import web

from ..exceptions import NotFoundError, QueryError
from ..qc.grid import ifu_grid
from ..qc.review import claim, review, review_history, unclaim
from ..vocabulary import N_IFU, QualityFlag
from .base import ArchiveHandler, whole_number
from .quicklook import thumbnail_png

__all__ = ["ACTIONS", "FLAG_COLOURS", "ReviewHandler", "ThumbnailHandler"]

#: Tile colour of each quality flag (those of the QC widget).
FLAG_COLOURS = {"unchecked": "#9e9e9e", "good": "#2e7d32", "warning": "#ef6c00", "bad": "#c62828"}
#: What the review form may ask for, and what the page says once it is done.
ACTIONS = {"claim": "Claimed: others cannot record a verdict until you release it or it expires.",
           "unclaim": "Claim released.", "verdict": "Verdict recorded."}
#: Tiles per row (4 rows of 6 = the 24 IFUs, as the widget draws them).
COLUMNS = 6
#: Most audit events listed.
MAX_EVENTS = 300


class ReviewHandler(ArchiveHandler):
    """The grid page of a product (GET) and its reviewers' forms (POST)."""

    @web.authenticated
    def get(self, dataset_id):
        arch = self.arch
        grid = ifu_grid(arch, int(dataset_id))
        selected = whole_number(self, "ifu", 0, N_IFU)
        tile = grid.tile(selected) if selected is not None else None
        if selected is not None and tile is None:
            raise NotFoundError(f"IFU {selected} is not in this product's grid")
        events, affected = [], []
        for did in grid.dataset_ids:
            events += [{**e, "dataset_id": did} for e in review_history(arch, did)]
            affected += [(did, a) for a in arch.affected(did)]
        events.sort(key=lambda e: (e["at"], e["dataset_id"]), reverse=True)
        self.render("review.html", grid=grid, tile=tile, selected=selected, columns=COLUMNS, n_ifu=N_IFU,
                    colours=FLAG_COLOURS, flags=[f.value for f in QualityFlag], events=events[:MAX_EVENTS],
                    affected=affected, done=ACTIONS.get(self.get_argument("done", ""), ""), urlencode=urlencode)

    @web.authenticated
    def post(self, dataset_id):
        # The hub login's XSRF check (a no-op for API-token requests, which a page cannot forge).
        self.check_xsrf_cookie()
        did = int(dataset_id)
        action = self.get_argument("action", "")
        ifu = whole_number(self, "ifu", 0, N_IFU, 0)
        if action == "claim":
            claim(self.arch, did)
        elif action == "unclaim":
            unclaim(self.arch, did)
        elif action == "verdict":
            valid = self.get_argument("valid", "")
            if valid not in ("yes", "no"):
                raise QueryError("valid must be 'yes' or 'no'")
            flag = self.get_argument("flag", "")
            if flag not in {f.value for f in QualityFlag}:
                raise QueryError(f"flag must be one of {', '.join(f.value for f in QualityFlag)}")
            # IFU 0 is the tile of a product of all IFUs: the verdict is on the product.
            review(self.arch, did, ifu or None, valid == "yes", flag, self.get_argument("comment", ""))
        else:
            raise QueryError(f"action must be one of {', '.join(ACTIONS)}")
        self.redirect(self.url(f"datasets/{did}/review") + "?" + urlencode({"ifu": ifu, "done": action})
                      + "#editor")


class ThumbnailHandler(ArchiveHandler):
    """``datasets/<id>/thumb.png[?ifu=k]``: a small image of a tile."""

    @web.authenticated
    async def get(self, dataset_id):
        ifu = whole_number(self, "ifu", 1, N_IFU)
        png = await self.blocking(thumbnail_png, self.arch, int(dataset_id), self.settings["cache_dir"] / "quicklook",
                                  ifu)
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "private, max-age=86400")
        self.finish(png)
