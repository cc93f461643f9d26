"""The archive's tables a VO data centre serves (musewise.vo.tables), without DaCHS: what each audience gets.

The data centres themselves, with ADQL over these tables, are tested in ``test_vo``.
"""

from __future__ import annotations

import json

import pytest

from test_web import populate


@pytest.fixture
def tables(archive, tmp_path):
    from musewise.vo.publish import audience_archive
    from musewise.vo.tables import archive_tables

    ids = populate(archive, tmp_path / "work")
    return ids, {a: archive_tables(audience_archive(archive, a)) for a in ("public", "consortium")}


def test_each_audience_gets_the_rows_its_reader_may_see(archive, tables):
    ids, t = tables
    public = {r["dataset_id"]: r for r in t["public"]["datasets"]}
    member = {r["dataset_id"]: r for r in t["consortium"]["datasets"]}
    assert set(public) == {ids["cube"]} and public[ids["cube"]]["privilege"] == "public"
    assert {ids["master"], ids["cube"], ids["notebook"], *ids["raw"]} <= set(member)
    assert ids["private"] not in member  # bob's private master bias
    assert {r["privilege"] for r in member.values()} <= {"public", "consortium"}
    raw = member[ids["raw"][0]]
    assert raw["kind"] == "raw" and raw["category"] == "BIAS" and raw["is_valid"] and raw["usable"]
    assert raw["sha256"] == archive.get(ids["raw"][0]).sha256
    # Runs: the public sees the cube's run but not its consortium input; nobody sees bob's run.
    runs = {a: {r["run_id"]: r for r in t[a]["runs"]} for a in t}
    assert ids["private_run"] not in runs["consortium"]
    bias = runs["consortium"][ids["run"]]
    assert bias["recipe"] == "muse_bias" and json.loads(bias["parameters"]) == {"nlow": 1, "combine": "sigclip"}
    assert bias["notebook_id"] == ids["notebook"]
    inputs = {a: {(i["run_id"], i["dataset_id"]) for i in t[a]["run_inputs"]} for a in t}
    cube_run = archive.get(ids["cube"]).run_id
    assert (cube_run, ids["master"]) in inputs["consortium"]
    assert not {d for _, d in inputs["public"]} - set(public)
    assert {(ids["run"], r) for r in ids["raw"]} <= inputs["consortium"]
    assert not any(i["dataset_id"] == ids["private"] for a in t for i in t[a]["run_inputs"])


def test_a_verdict_or_a_qc_number_changes_the_digest(archive, tables):
    from musewise.vo.publish import audience_archive
    from musewise.vo.tables import archive_tables, digest

    ids, t = tables
    reader = audience_archive(archive, "consortium")
    before = digest(t["consortium"])
    assert digest(archive_tables(reader)) == before  # nothing changed, nothing to import
    archive.set_validity(ids["raw"][2], 1, flag="warning", comment="hot column in IFU 1")
    flagged = archive_tables(reader)
    assert digest(flagged) != before
    (state,) = [s for s in flagged["dataset_ifus"] if s["dataset_id"] == ids["raw"][2] and s["ifu"] == 1]
    assert state["flag"] == "warning" and state["comment"] == "hot column in IFU 1"
    archive.add_qc(ids["master"], {"median": 1000.2}, ifu=1, units={"median": "adu"})
    measured = archive_tables(reader)
    assert digest(measured) != digest(flagged)
    assert {"dataset_id": ids["master"], "ifu": 1, "name": "median", "qc_value": 1000.2, "unit": "adu",
            "run_id": None} in measured["qc"]
    # The public's tables did not change: neither dataset is public.
    assert digest(archive_tables(audience_archive(archive, "public"))) == digest(t["public"])


def test_a_table_the_descriptor_does_not_declare_is_refused(tmp_path):
    from musewise.exceptions import InvalidArgumentError
    from musewise.vo.dachs import DachsServer, dachs_available

    if not dachs_available():
        pytest.skip("GAVO DaCHS missing")
    server = DachsServer(tmp_path, name="public", postgres=None, port=1, public_url="http://127.0.0.1:1/vo")
    server.resdir.mkdir(parents=True)
    with pytest.raises(InvalidArgumentError, match="users"):
        server.write_tables({"users": [{"name": "admin"}]})
    assert not any(server.resdir.iterdir())
