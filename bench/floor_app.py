"""The floor: a bare FastAPI app that only reads and parses the hook body and answers
``{"cards": []}``, served by the same uvicorn with the same options as the service, and
with the same garbage-collector set-up (``tune_gc``: start-up heap frozen, first
threshold raised, exactly as ``cds-service serve`` and the service's factory do; without
it the floor spent about a third of its time in full collections, issue 11).

Its latency is what the web framework and the JSON parser cost for the same request; the
service's latency divided by it is the figure the benchmark tracks (issue 6), since
absolute times vary by machine. It parses the body the way the service does (the whole
body read, then ``orjson.loads``) so the only difference left is the service's own work.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

_EMPTY = orjson.dumps({"cards": []})


def create_floor_app() -> FastAPI:
    """uvicorn factory: ``uvicorn bench.floor_app:create_floor_app --factory``."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    async def hook(request: Request) -> Response:
        body = await request.body()
        parsed = orjson.loads(body)
        if not isinstance(parsed, dict):  # the service's first check of the envelope
            return Response(status_code=400)
        return Response(_EMPTY, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"status":"ready"}', media_type="application/json")

    app.add_api_route("/cds-services/{service_id}", hook, methods=["POST"])
    app.add_api_route("/readyz", ready, methods=["GET"])
    from cds_service.api.app import tune_gc  # the service's own function, so the two cannot drift

    tune_gc()
    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.floor_app --port P [--workers N]``: served the way ``cds-service
    serve`` serves the service (one worker: ``uvicorn.run`` in the process; N workers: a
    listening socket per worker, ``SO_REUSEPORT``), with the same uvicorn options."""
    import argparse

    import uvicorn

    from cds_service.commands._workers import reuseport_supported, run_workers

    p = argparse.ArgumentParser(prog="python -m bench.floor_app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    options = {"log_config": None, "access_log": False, "server_header": False}
    if args.workers > 1 and reuseport_supported():
        run_workers(create_floor_app, args.workers, args.host, args.port, **options)
    else:
        uvicorn.run(create_floor_app(), host=args.host, port=args.port, **options)


if __name__ == "__main__":
    main()
