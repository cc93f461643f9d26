"""The one rule deciding who sees what.

Every read path - the Python API, the widgets, the web view, the SQL page - goes
through :func:`visible_datasets` / :func:`visible_runs`, so no path can show a
row another would hide.
"""

from __future__ import annotations

from sqlalchemy import and_, false, or_, select, true

from ..vocabulary import Privilege
from .schema import Dataset, Membership, Run, User


def _rule(table, owner_col, user: User | None):
    if user is None:
        return table.privilege == int(Privilege.PUBLIC)
    if user.is_admin:
        return true()
    conds = [table.privilege == int(Privilege.PUBLIC), owner_col == user.id]
    if user.is_member:
        my_projects = select(Membership.project_id).where(Membership.user_id == user.id)
        conds.append(table.privilege == int(Privilege.CONSORTIUM))
        conds.append(and_(table.privilege == int(Privilege.PROJECT), table.project_id.in_(my_projects)))
    return or_(*conds)


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


REVIEW_ROLES = ("reviewer", "manager")


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


__all__ = ["visible_datasets", "visible_runs", "can_see", "can_review", "can_add_to_project", "false"]
