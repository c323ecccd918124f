"""The one way every cutout route runs, and the one helper that registers a route's GET and POST.

A route is its request model (:mod:`app.params`) and a :class:`Planner`: what the request costs
(worked out from the typed parameters, on the event loop, before anything is read) and how it is
planned (on the worker pool; :mod:`app.planning`). :func:`serve` then does, for every route:

1. check the cost and admit it to the server-wide budget (:class:`app.budget.Budget`): 413 when it
   can never fit, a wait (bounded) when the budget is in use;
2. plan on the worker pool; a small zip is built in the same worker job when the budget has room
   (:func:`app.streaming.planned`);
3. record what was cut for the access log and metrics;
4. send the answer (:func:`app.streaming.send`): JSON, one file, a small zip, or a zip streamed
   member by member under its own admitted share. The planning share is given back once the
   answer no longer needs it: at once for an answer made later (a zip, a streamed file), once sent
   for a file already in memory (the share that made it covers it while a client reads it).

:func:`get_and_post` registers one route for both methods (GET with a query string, POST with a
form or a JSON body), which is how TESScut, Zcut and Hapcut take every route. TiTiler's
``BaseFactory.register_routes`` is the model.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, File, Form, Query, Request, UploadFile

from app.dependencies import Services
from app.observability import record_cutout
from app.params.values import MAX_EPHEMERIS_CHARS
from app.planning.answers import Planner
from app.streaming import planned, send

__all__ = ["client_gone", "get_and_post", "serve"]


async def serve(request: Request, planner: Planner, params: Any, **extra: Any) -> Any:
    """Run ``planner`` for ``params`` (see the module docstring); ``extra`` goes to ``plan``."""
    services: Services = request.app.state.services
    ctx = services.context()
    cost = planner.cost(ctx, params, **extra)
    # every wait for room ends as soon as the client disconnects: its queue slot is given back
    budget = services.budget.for_request(lambda: client_gone(request.receive))
    ticket = None
    if cost.memory or cost.disk:
        ticket = await budget.admit(cost.memory, cost.disk, field=cost.field)
    try:
        answer = await services.pool.run(planned, services.pool, budget, planner.plan, ctx, params, **extra)
    except BaseException:
        if ticket is not None:
            ticket.release()
        raise
    stats = getattr(answer, "stats", None)
    if stats is not None:
        record_cutout(request, stats)
    # an answer made in memory keeps the share that made it until it has been sent
    return await send(answer, pool=services.pool, budget=budget, held=ticket)


async def client_gone(receive: Callable[[], Awaitable[Any]]) -> None:
    """Return when the client has disconnected (the request's body has been read already: what
    the ASGI channel says from now on is only that)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


#: longest form field, bytes as sent: the longest value a parameter takes (an ephemeris of
#: :data:`app.params.values.MAX_EPHEMERIS_CHARS` characters) URL-encoded (at most three bytes a
#: character), so the parameter's own bound, naming it, decides; the body cap bounds the rest
MAX_FORM_FIELD_BYTES = 3 * MAX_EPHEMERIS_CHARS + 64 * 1024
#: largest body without files (a form or JSON, parsed on the event loop): its longest field and
#: the others (the body-size middleware applies it; files may take ``max_upload_bytes``)
MAX_FORM_BODY_BYTES = MAX_FORM_FIELD_BYTES + 1024 * 1024

#: uploaded files of an image route's POST (multipart)
Uploads = Annotated[list[UploadFile] | None, File(description="FITS files to cut (multipart).")]

Handler = Callable[..., Awaitable[Any]]


def get_and_post(
    router: APIRouter,
    path: str,
    model: type,
    run: Planner | Handler,
    *,
    name: str,
    description: str,
    post: Literal["form", "json"] = "form",
    uploads: bool = False,
    post_description: str | None = None,
    get_only: bool = False,
    **route: Any,
) -> None:
    """Register ``path`` for GET (``model`` from the query string) and POST (from a form, or a JSON
    body), both answered by ``run``: a :class:`Planner` (run by :func:`serve`) or an
    ``async run(request, params, **extra)``. With ``uploads``, the POST also takes multipart files,
    passed to ``run`` as ``files``. With ``get_only``, POST is not registered (the page's images)."""
    handler: Handler = (lambda request, params, **kw: serve(request, run, params, **kw)) \
        if isinstance(run, Planner) else run
    body = Body() if post == "json" else Form()

    async def get_route(request: Request, params: Annotated[model, Query()]) -> Any:  # type: ignore[valid-type]
        return await handler(request, params)

    if uploads:
        async def post_route(request: Request, params: Annotated[model, body],  # type: ignore[valid-type]
                             files: Uploads = None) -> Any:
            return await handler(request, params, files=files or [])
    else:
        async def post_route(request: Request, params: Annotated[model, body]) -> Any:  # type: ignore[valid-type]
            return await handler(request, params)

    router.add_api_route(path, get_route, methods=["GET"], name=f"{name}_get", description=description, **route)
    if get_only:
        return
    how = "a JSON body" if post == "json" else "a form body"
    router.add_api_route(path, post_route, methods=["POST"], name=f"{name}_post",
                         description=post_description or f"As GET, with {how}.",
                         form_limits={"max_part_size": MAX_FORM_FIELD_BYTES}, **route)
