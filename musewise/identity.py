"""Who a process is in the archive: its unix account, unless it is trusted.

In the hub every user's server runs under that user's own unix account
(:mod:`musewise.hubaccounts`), so the account is the one identity the user's
code cannot choose. :func:`acting_identity` is the single rule that the
configuration, the command line and the archive apply to a requested user name:

* a *trusted* process (root, one of the archive's service accounts, or the
  owner of the archive's database file - an astronomer's own archive on their
  own machine)
  acts as whoever it asks for: it can rewrite the database file anyway, so a
  check in Python would protect nothing;
* any other process acts as its unix account, and asking for another name is
  refused with :class:`~musewise.exceptions.IdentityError`.

This is a rule of the Python API, not a wall: code in a kernel can skip the API
and open the database itself. What the kernel cannot skip is what the operating
system and the database enforce (unix file modes, PostgreSQL roles with peer
authentication); see ``hub/README.md`` for what each deployment protects.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

from .exceptions import IdentityError


def process_account() -> str:
    """The name of the unix account this process runs as (its real user ID)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return str(uid)


def is_trusted(service_accounts: Iterable[str] = (), archive_path: str | os.PathLike | None = None) -> bool:
    """Whether this process may act in the archive as any user.

    Parameters
    ----------
    service_accounts : iterable of str
        Unix accounts that run the archive itself (the reference reduction, the web view),
        from a source users cannot write: never from a user's own config file or environment.
    archive_path : path, optional
        The archive's SQLite database file, or its data root for a database server: the
        owner of these bytes is trusted (an astronomer's own archive). A path that does
        not exist yet will belong to whoever creates it, so it trusts too.
    """
    uid = os.getuid()
    if uid == 0 or process_account() in set(service_accounts):
        return True
    if archive_path is not None:
        try:
            return os.stat(archive_path).st_uid == uid
        except FileNotFoundError:
            return True
        except OSError:  # a folder on the way is closed to us: not ours
            return False
    return False


def acting_identity(requested: str | None = None, *, service_accounts: Iterable[str] = (),
                    archive_path: str | os.PathLike | None = None) -> str | None:
    """The archive user this process acts as when it asks for ``requested``.

    Parameters
    ----------
    requested : str, optional
        The user name asked for (``Archive.open(user=...)``, ``MUSEWISE_USER``, ``--user``).
    service_accounts, archive_path
        See :func:`is_trusted`.

    Returns
    -------
    str or None
        ``requested`` for a trusted process (None if it asked for nobody: the caller's
        default applies); otherwise the unix account's name.

    Raises
    ------
    IdentityError
        If an untrusted process asked for a name other than its unix account's.
    """
    if is_trusted(service_accounts, archive_path):
        return requested
    account = process_account()
    if requested and requested != account:
        raise IdentityError(
            f"this process runs as unix account {account!r}, so it acts in the archive as {account!r}; "
            f"it may not act as {requested!r}. Administrative actions go through an administrator's "
            "hub login (or the hub's admin service token), or run as the archive's service account.")
    return account
