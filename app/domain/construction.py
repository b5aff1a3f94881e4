"""Building table models: SQLModel's outcome without its per-field detours.

SQLModel builds a table model by assigning every field, defaults included, through its
``__setattr__``: an instrumentation lookup, SQLAlchemy's attribute set, then pydantic's
``__setattr__``; and pydantic inspects a default factory's signature on every call. For a chunk
that is ~35 us, the largest per-row cost of an ingest. ``Construction`` works out once per model
what does not change (the field order, the defaults, each attribute's SQLAlchemy implementation)
and then does the same work per entity, ~9 us:

- SQLAlchemy's part: what each attribute's ``set`` does to a state nobody has touched (the key's
  committed value is NO_VALUE, there was none; the state becomes modified), done once for all
  the fields; or, when anyone listens to "set" events, each attribute's ``set`` itself.
- pydantic's part, for a plain field: the value in ``__dict__`` (a "set" listener's replacement
  does not stay, with SQLModel either) and the name in ``__pydantic_fields_set__``, which SQLModel
  then replaces by the names given; that set is made directly.

A model needing more (aliases, extra fields, private attributes, relationships, validated or
frozen assignment) and an instance built a second time are left to SQLModel.
``tests/test_domain_construction.py`` compares every model's instances with SQLModel's own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import partial
from types import NoneType
from typing import Any

from pydantic.fields import FieldInfo
from sqlalchemy.orm import instrumentation
from sqlalchemy.orm.base import NO_VALUE

# Defaults pydantic hands out as they are (its smart_deepcopy copies anything else).
_SHARED_DEFAULTS = (NoneType, bool, int, float, str, bytes)


class Construction:
    """How to build instances of one table model (``None`` from ``for_model``: SQLModel's way)."""

    def __init__(self, model: type[Any]) -> None:
        manager = instrumentation.manager_of_class(model)
        fields: dict[str, FieldInfo] = model.model_fields
        self.order = tuple(fields)
        self.impls = {name: manager[name].impl for name in fields}
        self.dispatches = tuple(manager[name].dispatch for name in fields)
        self.tracked = all(getattr(i, "send_modified_events", False) for i in self.impls.values())
        # (name, is a factory, default or factory), in field order, as SQLModel fills them in.
        self.defaults = tuple(
            (name, *_default(field)) for name, field in fields.items() if not field.is_required()
        )

    @classmethod
    def for_model(cls, model: type[Any]) -> Construction | None:
        """The construction of ``model``, or None when SQLModel must build it."""
        config = model.model_config
        if (
            config.get("extra") == "allow"
            or config.get("validate_assignment")
            or config.get("frozen")
            or model.__pydantic_post_init__
            or model.__sqlmodel_relationships__
            or any(f.alias or f.frozen for f in model.model_fields.values())
        ):
            return None
        manager = instrumentation.manager_of_class(model)
        if manager is None or any(name not in manager for name in model.model_fields):
            return None
        return cls(model)

    def _unobserved(self, state: Any) -> bool:
        """A state nothing has touched yet, of attributes nobody listens to ("set" events)."""
        return (
            self.tracked
            and not state.committed_state
            and not state.modified
            and state._last_known_values is None
            and not any(dispatch.set for dispatch in self.dispatches)
        )

    @property
    def ready(self) -> bool:
        """Whether the mappers are configured (each attribute has its implementation)."""
        return all(impl is not None for impl in self.impls.values())

    def build(self, instance: Any, data: dict[str, Any]) -> bool:
        """Set ``data`` and the defaults on a new ``instance``; False if it is not new."""
        state_dict = instance.__dict__
        if len(state_dict) != 1:  # only _sa_instance_state: anything else is a second __init__
            return False
        state = state_dict["_sa_instance_state"]
        values = {name: data[name] for name in self.order if name in data}
        given = set(values)
        for name, is_factory, default in self.defaults:
            if name not in given:
                values[name] = default() if is_factory else default
        if self._unobserved(state):
            # What each attribute's ``set`` does to a new state, done once for all: no value
            # before, so every key's committed value is NO_VALUE; the state becomes modified.
            state.committed_state.update(dict.fromkeys(values, NO_VALUE))
            state._modified_event(state_dict, None, NO_VALUE)
        else:
            impls = self.impls
            for name, value in values.items():
                impls[name].set(state, state_dict, value, None)
        state_dict.update(values)  # pydantic's part: the value given, whatever a listener made
        object.__setattr__(instance, "__pydantic_fields_set__", given)
        object.__setattr__(instance, "__pydantic_extra__", None)
        object.__setattr__(instance, "__pydantic_private__", None)
        return True


def _default(field: FieldInfo) -> tuple[bool, Any]:
    """(is a factory, default or factory): what ``field.get_default(call_default_factory=True)``
    returns, with its checks done now rather than on every call."""
    factory = field.default_factory
    if factory is not None:
        if field.default_factory_takes_validated_data:
            return True, partial(field.get_default, call_default_factory=True)
        return True, factory
    default = field.default
    if type(default) in _SHARED_DEFAULTS or isinstance(default, enum.Enum):
        return False, default
    get: Callable[[], Any] = partial(field.get_default, call_default_factory=True)
    return True, get
