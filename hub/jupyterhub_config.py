# JupyterHub configuration of the musewise data-reduction server.
#
# Start it with `musewise hub` (options: `musewise hub --help`), which runs
#     jupyterhub -f hub/jupyterhub_config.py
# with the archive settings (MUSEWISE_ROOT, MUSEWISE_DB_URL, MUSEWISE_DATASTORE)
# in the environment and its options as command-line settings (--MusewiseHub.port=8000,
# which musewise.hubcli.configure() gives precedence over this file). The proxy comes from
# ./node_modules (`npm ci` at the repository root installs it).
#
# Defaults (see musewise.hubcli.configure):
#   - the hub on http://127.0.0.1:8000, its state (database, cookie secret,
#     users' homes) in <MUSEWISE_ROOT>/hub;
#   - logins with a shared demo password (demos and tests only!), or with
#     c.MusewiseHub.authenticator = "native": sign-up with administrator approval;
#   - every user who logs in is registered in the archive as a consortium member;
#   - single-user servers as local processes, each under its user's own unix
#     account (created at the first start, home 0700; never root), with the
#     "musewise" kernel, the archive configured, example notebooks and templates
#     in their home; the archive identity is the account (musewise.identity);
#   - the hub's state 0700, the archive's SQLite file and datastore read-only to
#     users (set up by `musewise hub`; see hub/README.md for what each deployment protects);
#   - the archive web view at /services/archive/ (service "archive").
#
# Site secrets (OAuth client secret, passwords, tokens) come from the environment,
# never from this file.

import os  # noqa: F401 - used by the commented examples

from musewise.hubcli import configure

c = get_config()  # noqa: F821 - provided by JupyterHub

# ---------------------------------------------------------------- musewise settings
# Options of `musewise hub` (and `musewise hub -- --MusewiseHub.<name>=...`) override these.
# c.MusewiseHub.ip = "127.0.0.1"
# c.MusewiseHub.port = 8000
# c.MusewiseHub.authenticator = "native"          # sign-up + approval at /hub/authorize
# c.MusewiseHub.admin_users = {"admin"}
# c.MusewiseHub.state_dir = "/data/musewise/hub"
# c.MusewiseHub.copy_into_home = {"examples": "/opt/musewise/notebooks", "templates": "/opt/musewise/templates"}

hub = configure(c)

# ---------------------------------------------------------------- the consortium's OAuth provider
# pip install oauthenticator; run `musewise hub --auth config` so the lines below decide.
#
# c.JupyterHub.authenticator_class = "generic-oauth"
# c.GenericOAuthenticator.client_id = os.environ["MUSEWISE_OAUTH_CLIENT_ID"]
# c.GenericOAuthenticator.client_secret = os.environ["MUSEWISE_OAUTH_CLIENT_SECRET"]
# c.GenericOAuthenticator.oauth_callback_url = "https://muse-hub.example.org/hub/oauth_callback"
# c.GenericOAuthenticator.authorize_url = "https://login.example.org/oauth2/authorize"
# c.GenericOAuthenticator.token_url = "https://login.example.org/oauth2/token"
# c.GenericOAuthenticator.userdata_url = "https://login.example.org/oauth2/userinfo"
# c.GenericOAuthenticator.scope = ["openid", "profile", "email", "groups"]
# c.GenericOAuthenticator.username_claim = "preferred_username"
# c.GenericOAuthenticator.allowed_groups = {"muse-consortium"}
# c.GenericOAuthenticator.admin_groups = {"muse-archive-admins"}
# c.GenericOAuthenticator.manage_groups = True
# (the post-auth hook that registers users in the archive stays in place:
#  configure() set it on c.Authenticator, which GenericOAuthenticator inherits)

# ---------------------------------------------------------------- spawners for a real site
# Each user's server as a systemd unit running as their own unix account
# (pip install jupyterhub-systemdspawner; accounts from the site's directory, or
# created by musewise.hubaccounts.ensure_account in the pre_spawn_hook):
#
# c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
# c.SystemdSpawner.default_shell = "/bin/bash"
# c.SystemdSpawner.mem_limit = "16G"
# c.SystemdSpawner.cpu_limit = 4.0
# c.SystemdSpawner.readonly_paths = [os.environ["MUSEWISE_DATASTORE"]]   # archive data: read-only
# c.SystemdSpawner.readwrite_paths = ["/data/musewise/scratch/{USERNAME}"]  # the user's scratch
# c.SystemdSpawner.environment = hub_archive_env   # no MUSEWISE_USER: the account is the identity
# c.Spawner.pre_spawn_hook = lambda spawner: __import__("musewise.hubcli").hubcli.prepare_home_as(
#     __import__("pwd").getpwnam(spawner.user.name), hub.copy_into_home, "/data/musewise/scratch")
#
# On a cluster, each server as a batch job (pip install batchspawner), e.g. Slurm:
#
# c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
# c.JupyterHub.hub_ip = "0.0.0.0"              # compute nodes must reach the hub
# c.SlurmSpawner.req_partition = "interactive"
# c.SlurmSpawner.req_runtime = "8:00:00"
# c.SlurmSpawner.req_memory = "32G"
# c.SlurmSpawner.req_nprocs = "8"
# c.SlurmSpawner.batch_script = """#!/bin/bash
# #SBATCH --partition={partition} --time={runtime} --mem={memory} --cpus-per-task={nprocs}
# #SBATCH --output={homedir}/jupyterhub_slurmspawner_%j.log --export={keepvars}
# {cmd}
# """
# c.SlurmSpawner.environment = hub_archive_env
hub_archive_env = c.MusewiseSpawner.archive_env  # for the commented examples above
