"""The ``musewise`` command: sub-commands of every layer, optional packages, the demo's printed commands."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from musewise import cli


@pytest.fixture
def no_user_env(monkeypatch):
    for var in ("MUSEWISE_USER", "MUSEWISE_CONFIG", "MUSEWISE_ROOT", "MUSEWISE_DB_URL", "JUPYTERHUB_USER"):
        monkeypatch.delenv(var, raising=False)


def test_every_layer_adds_its_sub_commands():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    assert {"run", "make", "qc", "release", "hub"} <= set(sub.choices)


def test_a_missing_optional_package_is_named_with_its_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "jupyterhub", None)  # as if the 'hub' extra were not installed
    assert cli.main(["--root", str(tmp_path), "hub"]) == 2
    err = capsys.readouterr().err
    assert "musewise hub needs jupyterhub" in err and "pip install 'musewise[hub]'" in err
    assert not (tmp_path / "hub").exists()  # refused before doing anything


def test_a_broken_layer_is_not_hidden(monkeypatch, tmp_path):
    (tmp_path / "broken_layer.py").write_text("import musewise_no_such_module\n\ndef add(sub):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "PLUGINS", (*cli.PLUGINS, ("broken_layer", "add")))
    with pytest.raises(ModuleNotFoundError, match="musewise_no_such_module"):
        cli.build_parser()


def test_the_commands_the_demo_prints_work_as_printed(tmp_path, no_user_env, capsys):
    from musewise.archive import Archive
    from musewise.demo import DEMO_ADMIN, musewise_command, write_demo_config

    root = tmp_path / "demo"
    Archive.open(root=str(root), user=DEMO_ADMIN).close()  # the first user is the administrator
    printed = ["--root", str(root), "ls", "--kind", "science"]
    assert cli.main(printed) == 2  # the login name is no archive user...
    assert "not registered" in capsys.readouterr().err
    write_demo_config(root)
    assert cli.main(printed) == 0  # ...but in the demo's data root the demo's administrator acts
    assert "0 of 0 datasets" in capsys.readouterr().out
    assert cli.main(["--root", str(root), "--user", "alice", "ls"]) == 2  # --user still decides
    # typed into a shell as printed (the console script of this environment), as another login
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSEWISE_")}
    r = subprocess.run(f"{musewise_command()} --root {root} ls --kind science", shell=True, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "0 of 0 datasets" in r.stdout, r.stderr
