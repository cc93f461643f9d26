"""The archive's web view: a JupyterHub service at ``/services/archive/``.

Pages (HTML, for logged-in hub users) and a JSON API (for scripts, with a hub
API token in ``Authorization: token ...``), both showing exactly what
:mod:`musewise.archive.privileges` lets the user see.

Modules, one per concept:

``app``         the tornado application and the service's entry point (``python -m musewise.web``)
``base``        the handler base class: hub login, the per-user archive, errors
``pages``       HTML pages: versions, dataset tables, product page, run page, SQL page, download
``api``         the JSON API under ``api/``
``sqlpage``     :func:`run_readonly_sql`, the read-only SQL sandbox (no web dependency)
``quicklook``   quick-look PNG images of FITS files, cached
``provenance``  the provenance graph as HTML (Graphviz drawing and list)
``notebook``    executed notebooks as HTML (nbconvert)
``timeline``    the calibration timeline, certifications and the reviewers' certify form
``review``      QC review: a product's 24-IFU grid with the reviewers' forms, tile thumbnails
``qctrends``    QC trend plots (a click opens the product's grid)
"""

from .sqlpage import run_readonly_sql

__all__ = ["run_readonly_sql"]
