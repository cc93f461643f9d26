"""The hub's configuration and hooks, without starting a hub (fast; ``test_hub.py`` starts one)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from traitlets.config import Config

pytest.importorskip("jupyterhub")

from musewise import hubcli  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    for var in list(os.environ):
        if var.startswith("MUSEWISE_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("MUSEWISE_ROOT", str(tmp_path / "root"))
    return tmp_path


def test_defaults(hub_env):
    c = Config()
    hub = hubcli.configure(c)
    assert (c.JupyterHub.ip, c.JupyterHub.port) == ("127.0.0.1", 8000)
    assert c.JupyterHub.db_url == f"sqlite:///{hub_env / 'root' / 'hub' / 'jupyterhub.sqlite'}"
    assert c.JupyterHub.authenticator_class == "shared-password"
    assert c.Spawner.ip == "127.0.0.1" and "--MultiKernelManager.default_kernel_name=musewise" in c.Spawner.args
    assert c.MusewiseSpawner.archive_env["MUSEWISE_ROOT"] == str(hub_env / "root")
    assert c.MusewiseSpawner.archive_env["MUSEWISE_DB_URL"].endswith("root/archive.sqlite")
    service = c.JupyterHub.services[0]
    assert service["name"] == "archive" and service["url"].startswith("http://127.0.0.1:")
    assert service["environment"]["MUSEWISE_DB_URL"] == c.MusewiseSpawner.archive_env["MUSEWISE_DB_URL"]
    if (REPO / "node_modules").exists():
        assert c.ConfigurableHTTPProxy.command[0].endswith("node_modules/.bin/configurable-http-proxy")
    assert "demo" in hubcli.demo_banner(hub) and "8000" in hubcli.demo_banner(hub)


def test_command_line_overrides_config_file(hub_env, tmp_path):
    """`musewise hub --port 9100 --auth native` reaches configure() through jupyterhub's command line."""
    from jupyterhub.app import JupyterHub

    c = Config()
    c.MusewiseHub.port = 9000
    c.MusewiseHub.authenticator = "shared-password"
    c.MusewiseHub.service_port = 10500
    app = JupyterHub.instance()  # what `jupyterhub -f <config> --MusewiseHub...` runs the config file in
    try:
        app.parse_command_line(["--MusewiseHub.port=9100", "--MusewiseHub.authenticator=native",
                                f"--MusewiseHub.copy_into_home=examples={tmp_path}"])
        hub = hubcli.configure(c)
    finally:
        JupyterHub.clear_instance()
    assert c.JupyterHub.port == 9100 and hub.service_port == 10500  # the file's value where none was given
    assert c.JupyterHub.authenticator_class == "native"
    assert c.NativeAuthenticator.open_signup is False
    assert any("nativeauthenticator" in p for p in c.JupyterHub.template_paths)
    assert c.MusewiseSpawner.copy_into_home == {"examples": str(tmp_path)}


def test_secrets_come_from_the_environment(hub_env, monkeypatch):
    monkeypatch.setenv("MUSEWISE_HUB_ADMIN_TOKEN", "t0ken")
    c = Config()
    hubcli.configure(c)
    assert {"name": "musewise-admin", "api_token": "t0ken"} in c.JupyterHub.services


def test_the_kernel_is_the_configured_one(hub_env, tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "musewise_config.py").write_text("c.MusewiseConfig.kernel_name = 'muse-site'\n")
    c = Config()
    hubcli.configure(c)
    assert "--MultiKernelManager.default_kernel_name=muse-site" in c.Spawner.args
    assert c.MusewiseSpawner.kernel_name == "muse-site"


def test_the_repository_config_file_loads(hub_env):
    c = Config()
    ns = {"get_config": lambda: c, "__file__": str(REPO / "hub" / "jupyterhub_config.py")}
    exec(compile((REPO / "hub" / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec"), ns)
    assert c.JupyterHub.services[0]["name"] == "archive"
    assert c.JupyterHub.spawner_class.__name__ == "MusewiseSpawner"


def test_prepare_home_copies_examples_and_keeps_user_edits(tmp_path):
    src = tmp_path / "nb"
    (src / "sub").mkdir(parents=True)
    (src / "a.ipynb").write_text("original")
    (src / "sub" / "b.ipynb").write_text("b")
    home = tmp_path / "home" / "alice"
    hubcli.prepare_home(home, "alice", {"examples": str(src)}, str(tmp_path / "scratch"))
    assert (home / "examples" / "sub" / "b.ipynb").read_text() == "b"
    assert (home / "scratch").resolve() == (tmp_path / "scratch" / "alice").resolve()
    (home / "examples" / "a.ipynb").write_text("edited by alice")
    (src / "c.ipynb").write_text("new example")
    hubcli.prepare_home(home, "alice", {"examples": str(src)}, str(tmp_path / "scratch"))
    assert (home / "examples" / "a.ipynb").read_text() == "edited by alice"
    assert (home / "examples" / "c.ipynb").read_text() == "new example"


def test_login_hook_registers_consortium_members(archive, monkeypatch):
    for key, value in hubcli.archive_environment(archive.config).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(hubcli, "_archives", {})
    request_close = hubcli._archives
    hook = hubcli.register_in_archive("admin")
    try:
        _check_hook(hook, archive)
    finally:
        for arch in request_close.values():
            arch.close()


def _check_hook(hook, archive):
    assert asyncio.run(hook(None, None, {"name": "frank"})) == {"name": "frank"}
    frank = next(u for u in archive.users() if u["name"] == "frank")
    assert frank["is_member"] and not frank["is_admin"] and frank["projects"] == {}
    asyncio.run(hook(None, None, {"name": "alice"}))  # known users are left alone
    alice = next(u for u in archive.users() if u["name"] == "alice")
    assert alice["projects"] == {"galaxies": "reviewer"}
    assert asyncio.run(hook(None, None, None)) is None  # a failed login registers nobody
    assert len(archive.users()) == 6


def test_members_servers_get_their_own_role_on_the_hubs_postgresql_only(hub_env, monkeypatch):
    """The hub's own server (musewise.hubdb): a role per user; a site's PostgreSQL or SQLite: as configured."""
    from musewise import hubdb

    root = hub_env / "root"
    managed = f"postgresql+psycopg://musewise@/musewise?host={hubdb.server_dir(root) / 'sock'}&port=5432"
    cases = {managed: os.geteuid() == 0,  # system users (root): each server its own role
             "postgresql+psycopg://musewise@db.example.org/musewise": False,
             f"sqlite:///{root / 'archive.sqlite'}": False}
    for url, roles in cases.items():
        monkeypatch.setenv("MUSEWISE_DB_URL", url)
        c = Config()
        hubcli.configure(c)
        assert c.MusewiseSpawner.database_roles is roles, url
        assert c.MusewiseSpawner.archive_env["MUSEWISE_DB_URL"] == url
    assert hubdb.is_managed(managed, root) and not hubdb.is_managed(managed, hub_env / "elsewhere")
