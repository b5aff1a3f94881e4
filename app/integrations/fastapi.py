"""FastAPI wiring: a lifespan that owns the DataLayer, Unit-of-Work dependencies, error mapping.

```python
app = FastAPI(lifespan=data_layer_lifespan())
install_error_handlers(app)

@app.post("/projects")
async def create(body: ProjectIn, uow: WriteUoW) -> Project:
    return await uow.projects.add(Project(title=body.title))   # committed after the handler
```
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from app.bootstrap import DataLayer, bootstrap
from app.config import Settings
from app.errors import (
    BackendUnavailableError,
    ConflictError,
    DataLayerError,
    InvalidInputError,
    NotFoundError,
    UnsupportedFeatureError,
)
from app.uow.sqlalchemy import SqlAlchemyUnitOfWork

_STATUS = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
    UnsupportedFeatureError: 501,
    BackendUnavailableError: 503,
}


def data_layer_lifespan(
    settings: Settings | None = None, *, migrate: bool = False
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that builds the DataLayer at start-up (optionally migrating) and closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        layer = bootstrap(settings)
        if migrate:
            await layer.migrate()  # replays the vector outbox too
        else:
            await layer.start()
        app.state.data_layer = layer
        try:
            yield
        finally:
            await layer.aclose()

    return lifespan


def get_data_layer(request: Request) -> DataLayer:
    """The application's DataLayer (set by ``data_layer_lifespan``)."""
    layer = getattr(request.app.state, "data_layer", None)
    if layer is None:
        raise RuntimeError("no DataLayer on app.state: use FastAPI(lifespan=data_layer_lifespan())")
    assert isinstance(layer, DataLayer)
    return layer


ACTOR_HEADER = "X-Archon-Actor"


def request_actor(request: Request) -> str | None:
    """Who the audit log names for this request's writes: ``request.state.actor`` when the
    application's authentication set it (it wins: a header is whatever the client sent), else
    the ``X-Archon-Actor`` header, else nobody (the layer records ``system``)."""
    actor = getattr(request.state, "actor", None)
    if actor is None:
        actor = request.headers.get(ACTOR_HEADER)
    return None if actor is None else str(actor)


async def get_uow(
    layer: Annotated[DataLayer, Depends(get_data_layer)],
    actor: Annotated[str | None, Depends(request_actor)],
) -> AsyncIterator[SqlAlchemyUnitOfWork]:
    """A Unit of Work that commits when the handler returns and rolls back when it raises;
    its writes are audited as the request's actor (``request_actor``)."""
    async with layer.uow(actor=actor) as uow:
        yield uow
        await uow.commit()


async def get_read_uow(
    layer: Annotated[DataLayer, Depends(get_data_layer)],
) -> AsyncIterator[SqlAlchemyUnitOfWork]:
    """A read-only Unit of Work (may be served by a read replica)."""
    async with layer.uow(read_only=True) as uow:
        yield uow


# scope="function": commit before the response is sent, so a failed commit becomes an error
# response instead of a 200 for data that was never written.
WriteUoW = Annotated[SqlAlchemyUnitOfWork, Depends(get_uow, scope="function")]
ReadUoW = Annotated[SqlAlchemyUnitOfWork, Depends(get_read_uow, scope="function")]


def install_error_handlers(app: FastAPI) -> None:
    """Map the data layer's errors to HTTP statuses (404, 409, 422, 501, 503, 500)."""

    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 500)
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        return JSONResponse(status_code=status, content=body)

    app.add_exception_handler(DataLayerError, handle)
