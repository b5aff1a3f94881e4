"""The Unit of Work: one session, one transaction, explicit commit."""

from app.uow.port import UnitOfWork
from app.uow.sqlalchemy import SqlAlchemyUnitOfWork, run_in_transaction

__all__ = ["SqlAlchemyUnitOfWork", "UnitOfWork", "run_in_transaction"]
