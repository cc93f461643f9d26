"""The JSON API: ``/services/archive/api/...`` for scripts at the consortium's sites.

Authenticate with a JupyterHub API token (made on the hub's token page,
``/hub/token``)::

    curl -H "Authorization: token $TOKEN" https://hub.example.org/services/archive/api/datasets?category=MASTER_BIAS

Endpoints (all read-only, all limited to what the token's user may see):

``GET api/datasets``               query: the table filters, ``kind``, ``sort``, ``desc=1``, ``page``, ``per_page``
``GET api/datasets/<id>``          one dataset with its header and per-IFU state
``GET api/datasets/<id>/file``     the file, streamed (header ``X-Checksum-SHA256``)
``GET api/runs/<id>``              one run: recipe, parameters, inputs, outputs, notebook
``GET api/provenance/<id>``        the provenance graph of a dataset: ``datasets``, ``runs``, ``used``, ``generated``
``GET|POST api/sql``               ``q=<SELECT ...>`` or JSON ``{"q": ...}``: read-only SQL
``GET api/certifications``         ``category``, ``ifu``, ``collection``, ``mjd_from``, ``mjd_to``: certified
                                   ranges of calibrations (see :mod:`musewise.web.timeline`)

The table filters include ``collection``: a RUN collection, or a search path ``a, b``.
"""

from __future__ import annotations

import json

from tornado import web

from ..exceptions import QueryError
from ..vocabulary import DatasetKind
from .base import ArchiveHandler, jsonable
from .pages import dataset_filters, paging, stream_file
from .sqlpage import run_readonly_sql


class APIHandler(ArchiveHandler):
    is_api = True

    def send(self, obj) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(jsonable(obj)))


class DatasetsAPI(APIHandler):
    @web.authenticated
    def get(self):
        filters = dataset_filters(self)
        kinds = self.get_arguments("kind")
        for k in kinds:
            try:
                DatasetKind(k)
            except ValueError as exc:
                raise QueryError(f"unknown kind {k!r}; one of {[x.value for x in DatasetKind]}") from exc
        if kinds:
            filters["kind"] = kinds
        sort, desc, page, per_page = paging(self)
        total = self.arch.count(**filters)
        recs = self.arch.query(order_by=sort, descending=desc, limit=per_page, offset=(page - 1) * per_page,
                               **filters)
        self.send({"total": total, "page": page, "per_page": per_page,
                   "datasets": [_dataset(r, self.url) for r in recs]})


class DatasetAPI(APIHandler):
    @web.authenticated
    def get(self, dataset_id):
        rec = self.arch.get(int(dataset_id))
        self.send({**_dataset(rec, self.url), "header": rec.header, "qc": self.arch.qc(rec.id)})


class FileAPI(APIHandler):
    @web.authenticated
    async def get(self, dataset_id):
        await stream_file(self, int(dataset_id))


class RunAPI(APIHandler):
    @web.authenticated
    def get(self, run_id):
        self.send(self.arch.get_run(int(run_id)).as_dict())


class ProvenanceAPI(APIHandler):
    @web.authenticated
    async def get(self, dataset_id):
        graph = await self.blocking(self.arch.provenance, int(dataset_id))
        self.send(graph.to_dict())


class SQLAPI(APIHandler):
    @web.authenticated
    async def get(self):
        await self._run(self.get_argument("q", ""))

    @web.authenticated
    async def post(self):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            raise QueryError("send JSON: {\"q\": \"SELECT ...\"}") from exc
        await self._run(str(body.get("q", "")), body.get("limit"))

    async def _run(self, sql, limit=None):
        try:
            limit = min(int(limit or self.settings["sql_limit"]), self.settings["sql_limit"])
        except (TypeError, ValueError) as exc:
            raise QueryError(f"limit must be a whole number, not {limit!r}") from exc
        columns, rows = await self.blocking(run_readonly_sql, self.arch, sql, limit)
        self.send({"columns": columns, "rows": rows, "truncated": len(rows) >= limit})


def _dataset(rec, url) -> dict:
    d = rec.as_dict()
    d.pop("header", None)
    d.pop("storage_path", None)
    d["privilege"] = rec.privilege.name.lower()
    d["url"] = url(f"datasets/{rec.id}")
    d["file_url"] = url(f"api/datasets/{rec.id}/file")
    return d
