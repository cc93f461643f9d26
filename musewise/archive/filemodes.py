"""Unix ownership and modes of datastore files: the privilege rule applied to the bytes.

Users' servers run under their own unix accounts (one per hub user), so what a
kernel can read in the datastore is what the file's owner, group and mode allow. The
archive service (root) owns every stored file, and no file is ever writable by a user
(nor by the service: the store is write-once). Who may read is the union of the
audiences of the datasets over the file (several datasets may share one file):

============================  ========================================  ======
datasets over the file        group                                      mode
============================  ========================================  ======
any public                    root                                       0444
any consortium                ``<prefix>`` (every consortium member)     0440
all of one project            ``<prefix>-<project>`` (its members)       0440
all private, of one owner     the owner's personal group (their name)    0440
several of the two above      root, and each group by an access ACL      0440
no dataset                    root (read through the service only)       0400
============================  ========================================  ======

``<prefix>`` is :attr:`MusewiseConfig.unix_group_prefix`. A group that does not exist
is left out (never wider than the rule; none left gives 0400): :func:`sync_unix_groups`
creates the groups and their members from the registry. Several groups (identical bytes
archived privately by two members, or in two projects) are granted by a POSIX access
ACL, so each keeps reading the bytes of their own dataset. New files are written 0600 until their
transaction commits, then get their final mode. Only root can change a file's owner
and group: a process of another account (an astronomer alone) only drops the write
bits and keeps non-public files to itself (0400).
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import struct
import subprocess
from dataclasses import dataclass

from sqlalchemy import select

from ..vocabulary import Privilege
from .schema import Dataset, Membership, Project, StoredFile, User


@dataclass(frozen=True)
class FileAccess:
    """Who may read a stored file: a unix group (None: root only), a mode, and further groups by ACL."""

    group: str | None
    mode: int
    #: Groups that read the file through its access ACL (when one group is not enough).
    acl_groups: tuple[str, ...] = ()


def plan(audiences, prefix: str) -> FileAccess:
    """The :class:`FileAccess` of a file read by ``audiences``.

    Parameters
    ----------
    audiences : iterable of (int, str, str or None)
        ``(privilege, owner name, project name)`` of each dataset over the file.
    prefix : str
        Name of the consortium's group, and prefix of the projects' groups.
    """
    audiences = list(audiences)
    privileges = {Privilege(int(p)) for p, _, _ in audiences}
    if Privilege.PUBLIC in privileges:
        return FileAccess(None, 0o444)
    if Privilege.CONSORTIUM in privileges:
        return FileAccess(prefix, 0o440)
    groups = {f"{prefix}-{proj}" if Privilege(int(p)) == Privilege.PROJECT else owner
              for p, owner, proj in audiences}
    groups.discard(None)
    groups.discard(f"{prefix}-None")
    if len(groups) == 1:
        return FileAccess(groups.pop(), 0o440)
    if groups:
        return FileAccess(None, 0o440, tuple(sorted(groups)))
    return FileAccess(None, 0o400)


def _gid(name: str | None) -> int | None:
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


#: The extended attribute of a file's POSIX access ACL (Linux), and its binary layout:
#: a version word, then (tag, permissions, id) entries sorted by tag and id.
_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION, _USER_OBJ, _GROUP, _GROUP_OBJ, _MASK, _OTHER = 2, 0x01, 0x08, 0x04, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF


def _acl_blob(gids) -> bytes:
    """A read-only access ACL: the owner and the groups ``gids`` read, nobody else does."""
    entries = [(_USER_OBJ, 4, _UNDEFINED_ID), (_GROUP_OBJ, 0, _UNDEFINED_ID)]
    entries += [(_GROUP, 4, g) for g in sorted(set(gids))]
    entries += [(_MASK, 4, _UNDEFINED_ID), (_OTHER, 0, _UNDEFINED_ID)]
    entries.sort(key=lambda e: (e[0], e[2]))
    return struct.pack("<I", _ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


def _drop_acl(path: str) -> None:
    try:
        os.removexattr(path, _ACL_XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP):
            raise


def apply(path: str, access: FileAccess) -> None:
    """Give the local file ``path`` the owner, group, mode and ACL of ``access`` (see the module's table)."""
    if os.geteuid() != 0:
        os.chmod(path, 0o444 if access.mode == 0o444 else 0o400)
        return
    if access.mode == 0o444:
        gids = []
    else:
        # Groups that do not exist are left out: never wider than the rule.
        named = ((access.group,) if access.group is not None else ()) + access.acl_groups
        gids = [g for g in map(_gid, named) if g is not None]
    os.chown(path, 0, gids[0] if len(gids) == 1 else 0)
    if len(gids) > 1:
        try:
            os.setxattr(path, _ACL_XATTR, _acl_blob(gids))  # the mode bits follow it (0440)
            return
        except OSError:
            gids = []  # a filesystem without ACLs: the service only
    _drop_acl(path)
    os.chmod(path, 0o444 if access.mode == 0o444 else 0o440 if gids else 0o400)


def protect(arch, s, *, file_ids=None, dataset_ids=None) -> int:
    """Apply :func:`plan` to stored files named by ID or by a dataset over them (default: every file).

    Run by the service (its session sees every dataset over a file). Returns the
    number of files set. Does nothing on a datastore that is not a local folder.
    """
    if not arch.datastore.is_local:
        return 0
    q = select(StoredFile.id, StoredFile.path)
    if file_ids is not None:
        q = q.where(StoredFile.id.in_([int(i) for i in file_ids]))
    if dataset_ids is not None:
        q = q.where(StoredFile.id.in_(select(Dataset.file_id).where(Dataset.id.in_([int(i) for i in dataset_ids]))))
    files = dict(s.execute(q).all())
    if not files:
        return 0
    rows = s.execute(select(Dataset.file_id, Dataset.privilege, User.name, Project.name)
                     .join(User, User.id == Dataset.owner_id).outerjoin(Project, Project.id == Dataset.project_id)
                     .where(Dataset.file_id.in_(list(files)))).all()
    audiences: dict[int, list] = {}
    for fid, priv, owner, proj in rows:
        audiences.setdefault(fid, []).append((priv, owner, proj))
    prefix = arch.config.unix_group_prefix
    n = 0
    for fid, relpath in files.items():
        local = arch.datastore.location(relpath)  # a local folder: the stored file itself
        if os.path.exists(local):
            apply(local, plan(audiences.get(fid, []), prefix))
            n += 1
    return n


def sync_unix_groups(arch) -> dict[str, list[str]]:
    """Create the consortium's and projects' unix groups and put the registry's users in them (root only).

    Users without a unix account of their name are left out. Members are added, never
    removed (remove them with ``gpasswd -d`` when taking a role away). Returns
    ``{group: [members added]}``.

    Raises
    ------
    PermissionDeniedError
        If not run as root.
    """
    from ..exceptions import PermissionDeniedError

    if os.geteuid() != 0:
        raise PermissionDeniedError("only root creates unix groups and changes their members")
    prefix = arch.config.unix_group_prefix
    with arch.session() as s:
        users = {u.id: u for u in s.scalars(select(User))}
        wanted: dict[str, set[str]] = {prefix: {u.name for u in users.values() if u.is_member}}
        for uid, pname in s.execute(select(Membership.user_id, Project.name).join(Project)):
            wanted.setdefault(f"{prefix}-{pname}", set()).add(users[uid].name)
        for p in s.scalars(select(Project.name)):
            wanted.setdefault(f"{prefix}-{p}", set())
    added: dict[str, list[str]] = {}
    for group, names in sorted(wanted.items()):
        if _gid(group) is None:
            subprocess.run(["groupadd", group], check=True, capture_output=True)
        current = set(grp.getgrnam(group).gr_mem)
        added[group] = []
        for name in sorted(names - current):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            subprocess.run(["gpasswd", "-a", name, group], check=True, capture_output=True)
            added[group].append(name)
    return added


__all__ = ["FileAccess", "apply", "plan", "protect", "sync_unix_groups"]
