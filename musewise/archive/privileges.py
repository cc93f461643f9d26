"""The one rule deciding who sees what.

Every read path - the Python API, the widgets, the web view, the SQL page - goes
through :func:`visible_datasets` / :func:`visible_runs`, so no path can show a
row another would hide.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, false, func, literal_column, or_, select, true

from ..vocabulary import Privilege
from .schema import Dataset, Membership, Run, User

REVIEW_ROLES = ("reviewer", "manager")
MANAGE_ROLES = ("manager",)


@dataclass(frozen=True)
class Viewer:
    """Who asks, as SQL expressions: the rule below is written once over these.

    :func:`viewer_of` gives the values of a loaded user (the Python API's filters);
    :func:`current_role_viewer` gives subqueries on the database role of the session,
    from which :mod:`musewise.archive.rls` builds the row-level security policies.
    So the filter and the policies cannot drift apart.
    """

    id: object
    is_admin: object
    is_member: object
    #: SELECT of the IDs of projects the viewer belongs to (any role).
    projects: object
    #: SELECT of the IDs of projects the viewer reviews (reviewer or manager).
    reviews: object
    #: SELECT of the IDs of projects the viewer manages (changes their reference chain).
    manages: object


def _projects(user_id, roles=None):
    q = select(Membership.project_id).where(Membership.user_id == user_id)
    return q if roles is None else q.where(Membership.role.in_(roles))


def viewer_of(user: User) -> Viewer:
    """The :class:`Viewer` of a loaded user row (booleans as SQL literals, so the rule simplifies)."""
    return Viewer(user.id, true() if user.is_admin else false(), true() if user.is_member else false(),
                  _projects(user.id), _projects(user.id, REVIEW_ROLES), _projects(user.id, MANAGE_ROLES))


def current_role_viewer(role: str = "current_user") -> Viewer:
    """The :class:`Viewer` of the database role running the statement (``current_user``).

    A role with no archive user row has no ID, and sees only public data. ``role``:
    ``"session_user"`` in a SECURITY DEFINER function (where ``current_user`` is its
    owner), the role that logged in.
    """
    me = User.name == literal_column(role)
    uid = select(User.id).where(me).scalar_subquery()
    admin = func.coalesce(select(User.is_admin).where(me).scalar_subquery(), false())
    member = func.coalesce(select(User.is_member).where(me).scalar_subquery(), false())
    return Viewer(uid, admin, member, _projects(uid), _projects(uid, REVIEW_ROLES), _projects(uid, MANAGE_ROLES))


def visibility(privilege, owner_id, project_id, v: Viewer):
    """The one privilege rule: what a viewer may see, as an SQL condition over a row's columns.

    Public: everyone; consortium: consortium members; project: the project's members;
    private: the owner. Administrators see everything.
    """
    return or_(v.is_admin, privilege == int(Privilege.PUBLIC), owner_id == v.id,
               and_(v.is_member, privilege == int(Privilege.CONSORTIUM)),
               and_(v.is_member, privilege == int(Privilege.PROJECT), project_id.in_(v.projects)))


def review_right(owner_id, project_id, v: Viewer):
    """Who may change validity, flags, QC values and certified ranges of a row (see :func:`can_review`)."""
    return and_(v.is_member, or_(v.is_admin, owner_id == v.id, project_id.in_(v.reviews)))


def manage_right(project_id, v: Viewer):
    """Who may change a project's reference chain: its managers and administrators."""
    return or_(v.is_admin, and_(project_id.isnot(None), project_id.in_(v.manages)))


def _rule(table, owner_col, user: User | None):
    if user is None:
        return table.privilege == int(Privilege.PUBLIC)
    return visibility(table.privilege, owner_col, table.project_id, viewer_of(user))


def visible_datasets(user: User | None):
    """SQL condition on :class:`Dataset` true for rows ``user`` may see (None: anonymous)."""
    return _rule(Dataset, Dataset.owner_id, user)


def visible_runs(user: User | None):
    """SQL condition on :class:`Run` true for runs ``user`` may see."""
    return _rule(Run, Run.user_id, user)


def can_see(user: User | None, privilege: int, owner_id: int, project_id: int | None, member_of: set[int]) -> bool:
    """The same rule in Python, for objects already loaded."""
    if privilege == Privilege.PUBLIC:
        return True
    if user is None:
        return False
    if user.is_admin or owner_id == user.id:
        return True
    if not user.is_member:
        return False
    if privilege == Privilege.CONSORTIUM:
        return True
    return privilege == Privilege.PROJECT and project_id in member_of


def can_review(user: User | None, owner_id: int, project_id: int | None, roles: dict[int, str]) -> bool:
    """May ``user`` change ``is_valid`` and quality flags of a dataset?

    Administrators, the dataset's owner, and reviewers or managers of its project may.
    """
    if user is None or not user.is_member:
        return False
    if user.is_admin or owner_id == user.id:
        return True
    return project_id is not None and roles.get(project_id) in REVIEW_ROLES


def can_add_to_project(user: User | None, project_id: int | None, roles: dict[int, str]) -> bool:
    """May ``user`` put datasets into a project (ingest into it, publish into it)?

    Administrators, and the project's members (any role), may; nobody outside the consortium.
    """
    if user is None or not user.is_member:
        return False
    return user.is_admin or (project_id is not None and project_id in roles)


__all__ = ["MANAGE_ROLES", "REVIEW_ROLES", "Viewer", "can_add_to_project", "can_review", "can_see",
           "current_role_viewer", "false", "manage_right", "review_right", "viewer_of", "visibility",
           "visible_datasets", "visible_runs"]
