"""Provenance as a graph: every dataset and run that led to a product, each once.

A product's history is a directed acyclic graph, not a tree: one master bias
feeds the flats, arcs, twilights and science frames of its IFU, and a raw
bias frame (24 IFUs in one file) feeds 24 master biases. :func:`build_provenance`
walks that graph breadth-first from a product, one batched query per level
(``IN`` lists of ids), loading each dataset and each run once, and stops at a
node cap so time and memory stay bounded whatever the archive holds.

The result, :class:`ProvenanceGraph`, is plain data (frozen dataclasses) with
exports:

* :meth:`ProvenanceGraph.to_prov` - a W3C PROV document (``prov`` package), also
  as PROV-JSON (:meth:`~ProvenanceGraph.to_prov_json`) and PROV-N
  (:meth:`~ProvenanceGraph.to_provn`);
* :meth:`ProvenanceGraph.to_dot` / :meth:`~ProvenanceGraph.to_svg` - a Graphviz
  drawing whose run nodes link to their executed notebook;
* :meth:`ProvenanceGraph.to_text` - readable text, each node once;
* :meth:`ProvenanceGraph.to_dict` - JSON-ready data.

Datasets and runs the user may not see are nodes ``#id (not visible to you)``
with no detail, and the walk does not go through them.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

from sqlalchemy import and_, exists, select

from ..exceptions import ConfigurationError, NotFoundError
from .privileges import visible_datasets, visible_runs
from .schema import Collection, Dataset, DatasetIfu, Run, RunInput, StoredFile, User

__all__ = ["DatasetNode", "Generated", "ProvenanceGraph", "RunNode", "Used", "build_provenance",
           "DEFAULT_MAX_NODES", "DRAW_LIMIT"]

#: Most dataset + run nodes a graph holds; beyond it the graph is marked truncated.
DEFAULT_MAX_NODES = 20_000
#: Ids per ``IN (...)`` list: well below SQLite's bound-parameter limit.
_CHUNK = 5000
#: Most nodes :meth:`ProvenanceGraph.to_dot` draws one by one; larger graphs are drawn condensed.
DRAW_LIMIT = 150
#: PROV namespace of musewise's identifiers and attributes.
PROV_NAMESPACE = ("mw", "urn:musewise:")


@dataclass(frozen=True)
class DatasetNode:
    """A dataset (a PROV entity). Only ``id`` is set when the user may not see it."""

    id: int
    visible: bool = True
    category: str | None = None
    kind: str | None = None
    ifu: int | None = None
    night: str | None = None
    filename: str | None = None
    is_valid: bool | None = None
    collection: str | None = None
    #: The invalid dataset it was made from (directly or not), if any.
    affected_by: int | None = None

    def label(self) -> str:
        """One line: ``#12 MASTER_BIAS IFU 03 2026-11-20 file.fits [INVALID]``."""
        if not self.visible:
            return f"#{self.id} (not visible to you)"
        ifu = f" IFU {self.ifu:02d}" if self.ifu else ""
        night = f" {self.night}" if self.night else ""
        bad = "  [INVALID]" if self.is_valid is False else (
            f"  [AFFECTED by #{self.affected_by}]" if self.affected_by is not None else "")
        return f"#{self.id} {self.category}{ifu}{night} {self.filename}{bad}"


@dataclass(frozen=True)
class RunNode:
    """A recipe run (a PROV activity). Only ``id`` is set when the user may not see it.

    ``notebook_id`` is the run's executed notebook, None when there is none or the
    user may not see it.
    """

    id: int
    visible: bool = True
    recipe: str | None = None
    status: str | None = None
    pipeline_version: str | None = None
    parameters: dict = field(default_factory=dict, compare=False)
    notebook_id: int | None = None
    user: str | None = None
    night: str | None = None

    def label(self) -> str:
        """One line: ``run 7 muse_bias [succeeded, muse-2.8.7] by alice``."""
        if not self.visible:
            return f"run {self.id} (not visible to you)"
        return (f"run {self.id} {self.recipe} [{self.status}, {self.pipeline_version or 'n/a'}]"
                f" by {self.user}")

    def parameter_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.parameters.items()))


@dataclass(frozen=True)
class Used:
    """Run ``run_id`` read dataset ``dataset_id`` as set-of-frames ``tag``, chosen for ``reason``."""

    run_id: int
    dataset_id: int
    tag: str
    reason: str = ""


@dataclass(frozen=True)
class Generated:
    """Dataset ``dataset_id`` was made by run ``run_id`` (PROV ``wasGeneratedBy``)."""

    dataset_id: int
    run_id: int


@dataclass(frozen=True)
class ProvenanceGraph:
    """The datasets and runs a product came from, each once, in breadth-first order.

    Attributes
    ----------
    root_id : int
        The product.
    datasets, runs : dict of int to node
        In the order the walk met them (the product first). Treat as read-only.
    used, generated : tuple of edges
    truncated : bool
        The walk stopped at ``max_nodes`` nodes: older history is missing.
    max_nodes : int
    """

    root_id: int
    datasets: dict[int, DatasetNode]
    runs: dict[int, RunNode]
    used: tuple[Used, ...]
    generated: tuple[Generated, ...]
    truncated: bool = False
    max_nodes: int = DEFAULT_MAX_NODES

    # ------------------------------------------------------------ navigation
    @property
    def root(self) -> DatasetNode:
        return self.datasets[self.root_id]

    def producer(self, dataset_id: int) -> RunNode | None:
        """The run that made a dataset (None for raw frames and static calibrations)."""
        rid = self._made_by.get(int(dataset_id))
        return None if rid is None else self.runs[rid]

    def inputs(self, run_id: int) -> list[tuple[Used, DatasetNode]]:
        """The inputs of a run, with their tag and reason."""
        return [(u, self.datasets[u.dataset_id]) for u in self._inputs.get(int(run_id), ())]

    def inputs_by_tag(self, run_id: int) -> dict[str, list[tuple[Used, DatasetNode]]]:
        """The inputs of a run grouped by set-of-frames tag (in tag order)."""
        groups: dict[str, list[tuple[Used, DatasetNode]]] = {}
        for u, d in self.inputs(run_id):
            groups.setdefault(u.tag, []).append((u, d))
        return groups

    def consumers(self, dataset_id: int) -> list[RunNode]:
        """The runs (in this graph) that read a dataset."""
        return [self.runs[r] for r in self._consumers.get(int(dataset_id), ())]

    def outputs(self, run_id: int) -> list[DatasetNode]:
        """The datasets (in this graph) a run made."""
        return [self.datasets[d] for d in self._outputs.get(int(run_id), ())]

    def walk(self) -> Iterator[DatasetNode | RunNode]:
        """Every node once, breadth-first from the product: datasets and runs interleaved."""
        seen: set[tuple[str, int]] = set()
        queue = deque([("d", self.root_id)])
        while queue:
            key = queue.popleft()
            if key in seen:
                continue
            seen.add(key)
            kind, i = key
            if kind == "d":
                yield self.datasets[i]
                if i in self._made_by:
                    queue.append(("r", self._made_by[i]))
            else:
                yield self.runs[i]
                queue.extend(("d", u.dataset_id) for u in self._inputs.get(i, ()))

    def ancestors(self, dataset_id: int | None = None) -> list[DatasetNode]:
        """Datasets a dataset (default: the product) was made from, directly or not, each once."""
        start = self.root_id if dataset_id is None else int(dataset_id)
        out, seen, queue = [], {start}, deque([start])
        while queue:
            rid = self._made_by.get(queue.popleft())
            for u in self._inputs.get(rid, ()) if rid is not None else ():
                if u.dataset_id not in seen:
                    seen.add(u.dataset_id)
                    out.append(self.datasets[u.dataset_id])
                    queue.append(u.dataset_id)
        return out

    @property
    def _made_by(self) -> dict[int, int]:
        return self._index()[0]

    @property
    def _inputs(self) -> dict[int, list[Used]]:
        return self._index()[1]

    @property
    def _consumers(self) -> dict[int, list[int]]:
        return self._index()[2]

    @property
    def _outputs(self) -> dict[int, list[int]]:
        return self._index()[3]

    def _index(self):
        # Built once on first use; the dataclass is frozen, so cache through __dict__.
        idx = self.__dict__.get("_idx")
        if idx is None:
            made_by = {g.dataset_id: g.run_id for g in self.generated}
            inputs, consumers, outputs = defaultdict(list), defaultdict(list), defaultdict(list)
            for u in self.used:
                inputs[u.run_id].append(u)
                consumers[u.dataset_id].append(u.run_id)
            for g in self.generated:
                outputs[g.run_id].append(g.dataset_id)
            idx = (made_by, dict(inputs), dict(consumers), dict(outputs))
            object.__setattr__(self, "_idx", idx)
        return idx

    # ------------------------------------------------------------ exports
    def to_dict(self) -> dict:
        """JSON-ready: ``root``, ``truncated``, ``datasets``, ``runs``, ``used``, ``generated``."""
        return {
            "root": self.root_id, "truncated": self.truncated,
            "datasets": [asdict(d) for d in self.datasets.values()],
            "runs": [asdict(r) for r in self.runs.values()],
            "used": [asdict(u) for u in self.used],
            "generated": [asdict(g) for g in self.generated],
        }

    def to_text(self) -> str:
        """Readable text: the product, then each dataset once with the run that made it.

        A run is described once (recipe, status, pipeline, user, notebook,
        parameters, inputs grouped by tag); inputs are referenced by id, so a
        master bias read by many runs is described once.
        """
        lines = [f"provenance of {self.root.label()}: {len(self.datasets)} datasets, {len(self.runs)} runs"
                 + (f" (TRUNCATED at {self.max_nodes} nodes)" if self.truncated else "")]
        described: set[int] = set()
        for node in self.walk():
            if not isinstance(node, DatasetNode):
                continue
            lines.append(node.label())
            run = self.producer(node.id)
            if run is None:  # a raw frame, a static calibration, or hidden
                continue
            if run.id in described:
                lines.append(f"  <- {run.label().split(' [')[0]} (above)")
                continue
            described.add(run.id)
            lines.append(f"  <- {run.label()}" + (f", notebook #{run.notebook_id}" if run.notebook_id else ""))
            if run.parameters:
                lines.append(f"       parameters: {run.parameter_text()}")
            for tag, group in self.inputs_by_tag(run.id).items():
                reasons = {u.reason for u, _ in group}
                if len(reasons) == 1:
                    why = next(iter(reasons))
                    refs = ", ".join(f"#{d.id}" for _, d in group)
                    lines.append(f"       {tag}: {refs}" + (f" - {why}" if why else ""))
                else:
                    lines.append(f"       {tag}: " + ", ".join(
                        f"#{d.id}" + (f" ({u.reason})" if u.reason else "") for u, d in group))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    def to_prov(self):
        """The graph as a W3C PROV document.

        Datasets are entities ``mw:dataset-<id>``, runs activities ``mw:run-<id>``
        associated with the agent of their user, with ``used`` (carrying the
        set-of-frames tag and reason) and ``wasGeneratedBy`` relations.

        Returns
        -------
        prov.model.ProvDocument
        """
        from prov.model import PROV_LABEL, PROV_TYPE, ProvDocument

        doc = ProvDocument()
        doc.add_namespace(*PROV_NAMESPACE)
        for d in self.datasets.values():
            attrs = {PROV_LABEL: d.label()}
            if d.visible:
                attrs.update({PROV_TYPE: f"mw:{d.kind}", "mw:category": d.category, "mw:kind": d.kind,
                              "mw:filename": d.filename, "mw:is_valid": bool(d.is_valid)})
                attrs.update({f"mw:{k}": v for k, v in (("ifu", d.ifu), ("night", d.night)) if v is not None})
            doc.entity(f"mw:dataset-{d.id}", attrs)
        agents = set()
        for r in self.runs.values():
            attrs = {PROV_LABEL: r.label()}
            if r.visible:
                attrs.update({PROV_TYPE: "mw:recipe-run", "mw:recipe": r.recipe, "mw:status": r.status,
                              "mw:pipeline_version": r.pipeline_version or "",
                              "mw:parameters": json.dumps(r.parameters, sort_keys=True, default=str)})
                if r.notebook_id is not None:
                    attrs["mw:notebook"] = f"mw:dataset-{r.notebook_id}"
            doc.activity(f"mw:run-{r.id}", other_attributes=attrs)
            if r.visible and r.user:
                agent = f"mw:user-{r.user}"
                if agent not in agents:
                    agents.add(agent)
                    doc.agent(agent, {PROV_TYPE: "prov:Person", PROV_LABEL: r.user})
                doc.wasAssociatedWith(f"mw:run-{r.id}", agent)
        for u in self.used:
            doc.used(f"mw:run-{u.run_id}", f"mw:dataset-{u.dataset_id}",
                     other_attributes={"mw:tag": u.tag, "mw:reason": u.reason})
        for g in self.generated:
            doc.wasGeneratedBy(f"mw:dataset-{g.dataset_id}", f"mw:run-{g.run_id}")
        return doc

    def to_prov_json(self, indent: int | None = None) -> str:
        """The PROV document serialised as PROV-JSON."""
        return self.to_prov().serialize(format="json", indent=indent)

    def to_provn(self) -> str:
        """The PROV document in PROV-N notation."""
        return self.to_prov().get_provn()

    def to_dot(self, run_url: Callable[[RunNode], str | None] | None = None,
               dataset_url: Callable[[DatasetNode], str | None] | None = None, *,
               max_drawn: int | None = DRAW_LIMIT) -> str:
        """Graphviz source of the graph: the product on top, raw frames at the bottom.

        A graph of more than ``max_drawn`` nodes is drawn condensed: datasets of
        the same category and night made by the same recipe (the 24 master biases
        of a night) become one node ``24 x MASTER_BIAS``, and so do runs of the
        same recipe and night; a drawing of every node would take ``dot`` seconds
        and be unreadable. Nodes alone in their group keep their own link.

        Parameters
        ----------
        run_url : callable, optional
            URL of a run node (e.g. its executed notebook's page); None: no link.
        dataset_url : callable, optional
            URL of a dataset node.
        max_drawn : int or None
            Most nodes drawn one by one (None: always every node).

        Returns
        -------
        str
            DOT text (PROV's conventions: entities are ellipses, activities boxes).
        """
        out = ['digraph provenance {',
               '  graph [rankdir=TB, ranksep=0.45, nodesep=0.15, fontname="Helvetica", fontsize=10];',
               '  node [fontname="Helvetica", fontsize=9, style=filled, margin="0.06,0.03"];',
               '  edge [color="#7a8691", arrowsize=0.5, fontname="Helvetica", fontsize=7];']
        condensed = max_drawn is not None and len(self.datasets) + len(self.runs) > max_drawn
        name: dict[tuple[str, int], str] = {}
        if not condensed:
            groups = [[("d", i)] for i in self.datasets] + [[("r", i)] for i in self.runs]
        else:  # by night, or, for a history of many nights, by category and recipe alone
            groups = self._groups(by_night=True)
            if len(groups) > max_drawn:
                groups = self._groups(by_night=False)
        for n, members in enumerate(groups):
            kind, first = members[0]
            if len(members) == 1:
                node_name = f"{kind}{first}"
                attrs = (self._dataset_attrs(self.datasets[first], dataset_url) if kind == "d"
                         else self._run_attrs(self.runs[first], run_url))
            else:
                node_name = f"g{n}"
                attrs = self._group_attrs(kind, [i for _, i in members])
            name.update({m: node_name for m in members})
            out.append(f"  {node_name} [{_dot_attrs(attrs)}];")
        edges: dict[tuple[str, str, str], list[str]] = {}
        for g in self.generated:
            edges.setdefault(("generated", name["d", g.dataset_id], name["r", g.run_id]), []).append("")
        for u in self.used:
            edges.setdefault(("used", name["r", u.run_id], name["d", u.dataset_id]), []).append(u.tag)
        for (relation, a, b), tags in edges.items():
            attrs = ({"color": "#c9b458", "tooltip": "wasGeneratedBy"} if relation == "generated"
                     else {"tooltip": "used as " + ", ".join(sorted(set(tags)))})
            if len(tags) > 1:
                attrs.update(label=f"x{len(tags)}", penwidth=f"{min(4.0, 1 + len(tags) / 24):.1f}")
            out.append(f"  {a} -> {b} [{_dot_attrs(attrs)}];")
        out.append("}")
        return "\n".join(out) + "\n"

    def _groups(self, by_night: bool) -> list[list[tuple[str, int]]]:
        # The product stays alone; hidden nodes share one group of each kind.
        by_key: dict[tuple, list[tuple[str, int]]] = {}
        for d in self.datasets.values():
            if d.id == self.root_id:
                key = ("root",)
            elif not d.visible:
                key = ("d-hidden",)
            else:
                p = self.producer(d.id)
                key = ("d", d.category, d.night if by_night else "", p.recipe if p is not None and p.visible else "")
            by_key.setdefault(key, []).append(("d", d.id))
        for r in self.runs.values():
            key = ("r", r.recipe, r.night if by_night else "") if r.visible else ("r-hidden",)
            by_key.setdefault(key, []).append(("r", r.id))
        return list(by_key.values())

    def _dataset_attrs(self, d: DatasetNode, dataset_url) -> dict:
        attrs = {"shape": "ellipse", "id": f"dataset_{d.id}", "tooltip": d.label()}
        if not d.visible:
            attrs.update(label=d.label(), fillcolor="#eeeeee", fontcolor="#777777", style="dashed,filled")
            return attrs
        ifu = f" IFU {d.ifu:02d}" if d.ifu else ""
        attrs.update(label=f"#{d.id} {d.category}{ifu}\n{d.night or ''}",
                     fillcolor="#fde0dc" if d.is_valid is False else "#fffbe6",
                     color="#b71c1c" if d.is_valid is False else "#c9b458")
        if d.id == self.root_id:
            attrs.update(penwidth="2.5", fillcolor="#ffe9a8")
        url = dataset_url(d) if dataset_url else None
        if url:
            attrs.update(URL=url, target="_top")
        return attrs

    def _run_attrs(self, r: RunNode, run_url) -> dict:
        attrs = {"shape": "box", "id": f"run_{r.id}", "tooltip": r.label()}
        if not r.visible:
            attrs.update(label=r.label(), fillcolor="#eeeeee", fontcolor="#777777", style="dashed,filled")
            return attrs
        colour = {"failed": "#f7c6c0", "running": "#fbe3b3"}.get(r.status or "", "#dbe7f7")
        attrs.update(label=f"run {r.id} {r.recipe}\n{r.user}" + (" | notebook" if r.notebook_id else ""),
                     fillcolor=colour, color="#5b7fa8")
        url = run_url(r) if run_url else None
        if url:
            attrs.update(URL=url, target="_top")
        return attrs

    def _group_attrs(self, kind: str, ids: list[int]) -> dict:
        listed = ", ".join(f"#{i}" for i in ids[:40]) + (", ..." if len(ids) > 40 else "")
        if kind == "d":
            nodes = [self.datasets[i] for i in ids]
            d = nodes[0]
            if not d.visible:
                return {"shape": "ellipse", "label": f"{len(ids)} datasets not visible to you", "tooltip": listed,
                        "fillcolor": "#eeeeee", "fontcolor": "#777777", "style": "dashed,filled"}
            ifus = sorted({n.ifu for n in nodes if n.ifu})
            bad = sum(n.is_valid is False for n in nodes)
            nights = sorted({n.night for n in nodes if n.night})
            label = (f"{len(ids)} x {d.category}\n{_span(nights)}" + (f" IFU {_ranges(ifus)}" if ifus else "")
                     + (f"\n{bad} INVALID" if bad else ""))
            return {"shape": "ellipse", "peripheries": "2", "label": label, "tooltip": listed,
                    "fillcolor": "#fde0dc" if bad else "#fffbe6", "color": "#b71c1c" if bad else "#c9b458"}
        nodes = [self.runs[i] for i in ids]
        r = nodes[0]
        if not r.visible:
            return {"shape": "box", "label": f"{len(ids)} runs not visible to you", "tooltip": listed,
                    "fillcolor": "#eeeeee", "fontcolor": "#777777", "style": "dashed,filled"}
        failed = sum(n.status == "failed" for n in nodes)
        nights = sorted({n.night for n in nodes if n.night})
        label = f"{len(ids)} x run {r.recipe}\n{_span(nights)}" + (f"\n{failed} failed" if failed else "")
        return {"shape": "box", "peripheries": "2", "label": label, "tooltip": "runs " + listed,
                "fillcolor": "#f7c6c0" if failed else "#dbe7f7", "color": "#5b7fa8"}

    def to_svg(self, run_url=None, dataset_url=None, *, max_drawn: int | None = DRAW_LIMIT) -> str:
        """The graph drawn by Graphviz's ``dot`` as SVG (arguments as :meth:`to_dot`).

        Raises
        ------
        ConfigurationError
            If Graphviz's ``dot`` program is not installed.
        """
        import graphviz

        try:
            svg = graphviz.pipe("dot", "svg", self.to_dot(run_url, dataset_url, max_drawn=max_drawn).encode())
        except graphviz.ExecutableNotFound as exc:
            raise ConfigurationError("drawing provenance needs Graphviz's dot program: "
                                     "apt-get install graphviz") from exc
        text = svg.decode()
        return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the SVG is embedded in pages


def _span(nights: list[str]) -> str:
    """``2026-11-20`` or ``2026-11-20 .. 2026-12-03 (9 nights)``."""
    if len(nights) <= 1:
        return nights[0] if nights else ""
    return f"{nights[0]} .. {nights[-1]} ({len(nights)} nights)"


def _ranges(values: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``01-03,05``."""
    out, start, prev = [], None, None
    for v in values + [None]:
        if start is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            out.append(f"{start:02d}" if start == prev else f"{start:02d}-{prev:02d}")
        start = prev = v
    return ",".join(out)


def _dot_attrs(attrs: dict) -> str:
    return ", ".join(f'{k}="{_dot_escape(str(v))}"' for k, v in attrs.items())


def _dot_escape(s: str) -> str:
    # DOT strings: escape backslashes and quotes, keep our "\n" line breaks as DOT's centred breaks.
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---------------------------------------------------------------- the walk


def _chunks(ids):
    ids = list(ids)
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def build_provenance(session, user: User | None, dataset_id: int, *,
                     max_nodes: int = DEFAULT_MAX_NODES) -> ProvenanceGraph:
    """Walk the history of a dataset breadth-first, one batched query per level.

    Parameters
    ----------
    session : sqlalchemy.orm.Session
        An open (read-only) session of the archive's registry.
    user : User or None
        Whose view (``visible_datasets`` / ``visible_runs``); None: anonymous.
    dataset_id : int
        The product.
    max_nodes : int
        Most dataset + run nodes; the graph is ``truncated`` beyond it.

    Returns
    -------
    ProvenanceGraph

    Raises
    ------
    NotFoundError
        If the dataset does not exist or the user may not see it.
    """
    vis_d, vis_r = visible_datasets(user), visible_runs(user)
    root = int(dataset_id)
    datasets: dict[int, DatasetNode] = {}
    runs: dict[int, RunNode] = {}
    used: list[Used] = []
    generated: list[Generated] = []
    truncated = False
    has_invalid = exists().where(and_(DatasetIfu.dataset_id == Dataset.id, DatasetIfu.is_valid.is_(False)))

    def room() -> int:
        return max_nodes - len(datasets) - len(runs)

    frontier = [root]
    while frontier:
        # 1. The datasets of this level, each once (hidden ones as bare ids).
        made_by: dict[int, int] = {}
        found = {}
        for ids in _chunks(frontier):
            q = (select(Dataset.id, Dataset.category, Dataset.kind, Dataset.ifu, Dataset.night,
                        StoredFile.original_name, and_(Dataset.is_valid, ~has_invalid), Dataset.run_id,
                        Collection.name, Dataset.affected_by)
                 .join(StoredFile, Dataset.file_id == StoredFile.id)
                 .join(Collection, Dataset.collection_id == Collection.id)
                 .where(Dataset.id.in_(ids), vis_d))
            for did, cat, kind, ifu, night, fname, valid, run_id, coll, affected in session.execute(q):
                found[did] = DatasetNode(did, True, cat, kind, ifu, night, fname, bool(valid), coll, affected)
                if run_id is not None:
                    made_by[did] = run_id
        if root not in datasets and root not in found:
            raise NotFoundError(f"no dataset {root} visible to user {user.name if user else 'anonymous'!r}")
        for did in frontier:
            datasets[did] = found.get(did) or DatasetNode(did, visible=False)

        # 2. The runs that made them, each once (hidden runs are not walked through).
        new_runs = []
        for did, rid in made_by.items():
            if rid not in runs and rid not in new_runs:
                if room() - len(new_runs) <= 0:
                    truncated = True
                    continue
                new_runs.append(rid)
            if rid in runs or rid in new_runs:
                generated.append(Generated(did, rid))
        visible = {}
        for ids in _chunks(new_runs):
            q = (select(Run.id, Run.recipe, Run.status, Run.pipeline_version, Run.parameters, Run.notebook_id,
                        User.name, Run.night)
                 .join(User, Run.user_id == User.id).where(Run.id.in_(ids), vis_r))
            visible.update({row[0]: row for row in session.execute(q)})
        notebooks = {row[5] for row in visible.values() if row[5] is not None}
        seen_notebooks = set()
        for ids in _chunks(notebooks):
            seen_notebooks.update(session.scalars(select(Dataset.id).where(Dataset.id.in_(ids), vis_d)))
        for rid in new_runs:
            row = visible.get(rid)
            if row is None:
                runs[rid] = RunNode(rid, visible=False)
            else:
                _, recipe, status, pv, params, nb, uname, night = row
                runs[rid] = RunNode(rid, True, recipe, status, pv, dict(params or {}),
                                    nb if nb in seen_notebooks else None, uname, night)

        # 3. Their inputs: the next level (datasets not met before).
        nxt: list[int] = []
        queued: set[int] = set()
        for ids in _chunks([r for r in new_runs if r in visible]):
            q = (select(RunInput.run_id, RunInput.dataset_id, RunInput.tag, RunInput.reason)
                 .where(RunInput.run_id.in_(ids)).order_by(RunInput.run_id, RunInput.tag, RunInput.dataset_id))
            for rid, did, tag, reason in session.execute(q):
                if did not in datasets and did not in queued:
                    if room() - len(nxt) <= 0:
                        truncated = True
                        continue
                    queued.add(did)
                    nxt.append(did)
                used.append(Used(rid, did, tag or "", reason or ""))
        frontier = nxt
    return ProvenanceGraph(root, datasets, runs, tuple(used), tuple(generated), truncated, max_nodes)
