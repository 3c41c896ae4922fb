"""Who may do what with a session: the pluggable access policy.

The policy turns a user into a SQL expression that gives, for each session row, an
:class:`~kernel_status.choices.AccessLevel`. Because it is an expression and not a Python
callback, the status endpoint checks access and derives the state in one query.

A host platform with its own membership model subclasses :class:`AccessPolicy`, implements
:meth:`AccessPolicy.access_level_expression`, and points ``KERNEL_STATUS_ACCESS_POLICY`` at it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, Value, When
from django.db.models.lookups import Exact
from django.utils.module_loading import import_string

from kernel_status.choices import AccessLevel, AccessRole
from kernel_status.conf import conf
from kernel_status.queries import mirror_model

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
    from django.db.models import Expression, Model

    User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class TokenUser:
    """The user of an API token, not yet known in Python: columns of the user row that the
    status query joins to the token it looks up (see
    :meth:`AccessPolicy.token_access_level_expression`).

    ``model`` is the user model; :meth:`field` gives a column of that user for use in an
    expression over ``Session`` rows.
    """

    model: type[Model]

    def has_field(self, name: str) -> bool:
        """Whether the user model has this concrete field (custom users may lack
        ``is_superuser`` or ``is_active``)."""
        try:
            field = self.model._meta.get_field(name)
        except FieldDoesNotExist:
            return False
        return bool(getattr(field, "concrete", False))

    def field(self, name: str, *, depth: int = 1) -> OuterRef:
        """The user's column ``name`` (``"pk"`` for its primary key), seen from a ``Session``
        row (``depth=1``) or from a subquery nested ``depth - 1`` levels below one (an
        ``Exists`` over the session's grants is ``depth=2``)."""
        # The query's outer row is the token, which holds the user's key as ``user_id``.
        ref: Any = "user_id" if name == "pk" else f"user__{name}"
        for _ in range(depth):
            ref = OuterRef(ref)
        return ref  # type: ignore[no-any-return]


class AccessPolicy:
    """Base class of access policies. Subclasses implement :meth:`access_level_expression`."""

    def access_level_expression(self, user: User) -> Expression:
        """An integer expression over ``Session`` rows: the user's :class:`AccessLevel`.

        It is evaluated inside ``Session.objects.annotate(...)``, so it may use ``OuterRef("pk")``
        subqueries and lookups through the session's to-one relations. Many-valued relations
        belong inside ``Exists(...)``: a join over them would duplicate session rows. It must
        not run queries itself.
        """
        raise NotImplementedError

    def compiled_query_key(self, user: User) -> Hashable | None:
        """Opt in to the status endpoint's compiled SQL: the user's kind, or ``None``.

        Return a small hashable value (such as ``"member"``) such that, for all users with equal
        values, :meth:`access_level_expression` builds the same SQL, differing at most in
        parameters equal to ``user.pk``. The endpoint then compiles its query once per value
        and binds each request's user, session and time into it. The access check still runs
        in that query on every request; only the SQL text is reused.

        The default, ``None``, builds the query with the ORM on every request: always correct,
        several times slower. Return ``None`` for users whose expression depends on anything
        else about them (names, groups, flags not covered by the key).
        """
        return None

    def token_access_level_expression(self, user: TokenUser) -> Expression | None:
        """Opt in to the status endpoint's one-statement token path: the access level of a
        token's user whose row is not loaded yet, or ``None``.

        Return the expression :meth:`access_level_expression` would build for the token's
        user, written over the user's columns (``user.field("pk")``, ``user.field("is_active")``,
        ...) instead of a loaded user, so that the token lookup, the user's flags, the access
        level and the state come back from one SQL statement. It must agree with
        :meth:`access_level_expression` for every user: inactive users included, though the
        endpoint refuses them before it looks at the level. The expression is compiled once and
        reused (only the token key, the session id and the time are bound per request), so it
        may depend on the user through those columns only.

        The default, ``None``, keeps DRF's token authentication (its own query) in front of the
        compiled status query: two queries, the same answers.
        """
        return None

    def get_access_level(self, user: User, session: Model) -> AccessLevel:
        """The user's access level on one session (one query), for code outside a queryset."""
        level = (
            mirror_model("Session")
            ._default_manager.filter(pk=session.pk)
            .annotate(level=self.access_level_expression(user))
            .values_list("level", flat=True)
            .first()
        )
        return AccessLevel(level or AccessLevel.NONE)


class DefaultAccessPolicy(AccessPolicy):
    """Access from the session's owner and its :class:`~kernel_status.models.SessionAccess` rows.

    - the owner, and users with an ``edit`` grant, may edit;
    - users with a ``view`` grant may view;
    - active superusers may edit every session (they can already change anything in the admin);
    - anonymous and inactive users have no access.
    """

    def access_level_expression(self, user: User) -> Expression:
        if not user.is_authenticated or not user.is_active:
            return Value(AccessLevel.NONE.value, output_field=IntegerField())
        if getattr(user, "is_superuser", False):
            return Value(AccessLevel.EDIT.value, output_field=IntegerField())
        return self._member_expression(user.pk, user.pk)

    def _member_expression(self, user_pk: Any, user_pk_in_grants: Any) -> Case:
        """An active, non-superuser member's level: owner or edit grant, view grant, none.
        ``user_pk`` as seen from the session row, ``user_pk_in_grants`` from the grants'
        subquery (the same value for a loaded user; two depths of ``OuterRef`` for a token's)."""
        grants = mirror_model("SessionAccess")._default_manager

        def granted(role: AccessRole) -> Exists:
            return Exists(
                grants.filter(session_id=OuterRef("pk"), user_id=user_pk_in_grants, role=role)
            )

        return Case(
            When(
                Q(owner_id=user_pk) | granted(AccessRole.EDIT), then=Value(AccessLevel.EDIT.value)
            ),
            When(granted(AccessRole.VIEW), then=Value(AccessLevel.VIEW.value)),
            default=Value(AccessLevel.NONE.value),
            output_field=IntegerField(),
        )

    def token_access_level_expression(self, user: TokenUser) -> Expression | None:
        # A subclass with its own rules opts in by overriding this method (and may then build
        # on super()'s expression); otherwise the default rules no longer describe it.
        overridden = (
            type(self).token_access_level_expression
            is not DefaultAccessPolicy.token_access_level_expression
        )
        if not (overridden or self._is_default()):
            return None
        # The same three cases as access_level_expression(), decided by the joined row.
        cases = []
        if user.has_field("is_active"):
            cases.append(
                When(Exact(user.field("is_active"), False), then=Value(AccessLevel.NONE.value))
            )
        if user.has_field("is_superuser"):
            cases.append(
                When(Exact(user.field("is_superuser"), True), then=Value(AccessLevel.EDIT.value))
            )
        return Case(
            *cases,
            default=self._member_expression(user.field("pk"), user.field("pk", depth=2)),
            output_field=IntegerField(),
        )

    def _is_default(self) -> bool:
        # A subclass with its own rules must opt in for itself.
        return type(self).access_level_expression is DefaultAccessPolicy.access_level_expression

    def compiled_query_key(self, user: User) -> Hashable | None:
        if not self._is_default():
            return None
        if not user.is_authenticated or not user.is_active:
            return "none"
        if getattr(user, "is_superuser", False):
            return "superuser"
        return "member"


@cache
def _load_policy(path: str) -> AccessPolicy:
    policy_class = import_string(path)
    return policy_class()  # type: ignore[no-any-return]


def get_access_policy() -> AccessPolicy:
    """The policy named by ``KERNEL_STATUS_ACCESS_POLICY`` (instances are cached per path)."""
    return _load_policy(conf.KERNEL_STATUS_ACCESS_POLICY)
