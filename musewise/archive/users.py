"""Users, projects and project roles of the archive.

Roles in a project: ``member`` (sees the project's data), ``reviewer`` (also sets
validity, flags and certified ranges of its data), ``manager`` (also changes the
project's reference chain). Administrators may do everything.
"""

from __future__ import annotations

from sqlalchemy import select

from ..exceptions import DuplicateError, InvalidArgumentError, NotFoundError
from .schema import Membership, Project, User

ROLES = ("member", "reviewer", "manager")


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgumentError(f"unknown project role {role!r}; choose one of {ROLES}")
    return role


def add_user(arch, name: str, *, admin: bool, member: bool, full_name: str, email: str, projects) -> None:
    """Register a user (administrators only); see :meth:`Archive.add_user`."""
    if isinstance(projects, (list, tuple)):
        projects = {p: "member" for p in projects}
    with arch.transaction() as tx:
        arch.require_admin(tx.session)
        if tx.session.scalar(select(User).where(User.name == name)) is not None:
            raise DuplicateError(f"user {name!r} already exists")
        u = User(name=name, is_admin=admin, is_member=member, full_name=full_name, email=email)
        tx.session.add(u)
        tx.session.flush()
        for pname, role in projects.items():
            p = arch.project_row(tx.session, pname)
            tx.session.add(Membership(user_id=u.id, project_id=p.id, role=_check_role(role)))
    ensure_database_role(arch, name)


def ensure_database_role(arch, name: str) -> bool:
    """Give archive user ``name`` their PostgreSQL role, on a PostgreSQL archive opened by the service.

    Returns False where there is no role to make: SQLite, a user's own connection, or a
    name that cannot be a unix account and role (that user then reaches the archive only
    through the service: the web view).
    """
    from .pgserver import check_role_name, ensure_user_role

    if arch.engine.dialect.name != "postgresql" or arch.db_role is not None:
        return False
    try:
        check_role_name(name)
    except InvalidArgumentError:
        return False
    ensure_user_role(arch.engine, name)
    return True


def add_project(arch, name: str, description: str) -> None:
    """Create a project (administrators only)."""
    with arch.transaction() as tx:
        arch.require_admin(tx.session)
        if tx.session.scalar(select(Project).where(Project.name == name)) is not None:
            raise DuplicateError(f"project {name!r} already exists")
        tx.session.add(Project(name=name, description=description))


def add_member(arch, user: str, project: str, role: str) -> None:
    """Add a user to a project, or change their role (administrators only)."""
    with arch.transaction() as tx:
        arch.require_admin(tx.session)
        u, p = arch.acting_user(tx.session, user), arch.project_row(tx.session, project)
        m = tx.session.get(Membership, (u.id, p.id))
        if m is None:
            tx.session.add(Membership(user_id=u.id, project_id=p.id, role=_check_role(role)))
        else:
            m.role = _check_role(role)


def list_users(arch) -> list[dict]:
    """Registered users with their projects and roles."""
    with arch.session() as s:
        roles = s.execute(select(Membership.user_id, Project.name, Membership.role).join(Project)).all()
        return [{"name": u.name, "is_admin": u.is_admin, "is_member": u.is_member,
                 "projects": {p: r for uid, p, r in roles if uid == u.id}}
                for u in s.scalars(select(User).order_by(User.name))]


def find_user(s, name: str) -> User:
    """The user row called ``name``.

    Raises
    ------
    PermissionDeniedError
        If no such user is registered (an unregistered name has no rights at all).
    """
    from ..exceptions import PermissionDeniedError

    u = s.scalar(select(User).where(User.name == name))
    if u is None:
        raise PermissionDeniedError(
            f"user {name!r} is not registered in the archive; an administrator adds them "
            f"with `musewise user add {name}`")
    return u


def find_project(s, name: str) -> Project:
    """The project row called ``name``.

    Raises
    ------
    NotFoundError
    """
    p = s.scalar(select(Project).where(Project.name == name))
    if p is None:
        raise NotFoundError(f"no project named {name!r}")
    return p


def roles_of(s, user: User) -> dict[int, str]:
    """``{project id: role}`` of a user."""
    return dict(s.execute(select(Membership.project_id, Membership.role).where(Membership.user_id == user.id)).all())


__all__ = ["ROLES", "add_member", "add_project", "add_user", "ensure_database_role", "find_project", "find_user", "list_users", "roles_of"]
