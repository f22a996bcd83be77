"""``/swagger.json``: an OpenAPI 2.0 document for the scoring routes."""

from __future__ import annotations

from typing import Any

from tidal import __version__
from tidal.scoring.entry import EntryScript

_OBJECT = {"type": "object"}


def swagger_document(script: EntryScript, prefix: str = "") -> dict[str, Any]:
    """Built from the ``inference_schema`` schemas when ``run`` has them, else minimal."""
    schema = script.schema or {}
    inputs = schema.get("input") or _OBJECT
    outputs = schema.get("output") or _OBJECT
    error = {"type": "object", "properties": {"message": {"type": "string"}}}
    return {
        "swagger": "2.0",
        "info": {
            "title": "tidal scoring service",
            "description": "An entry script served by tidal",
            "version": __version__,
        },
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": "Simple health check endpoint",
                    "responses": {"200": {"description": "Healthy", "schema": {"type": "string"}}},
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": "Run the entry script's run() on the request",
                    "parameters": [{"name": "serviceInputPayload", "in": "body", "schema": inputs}],
                    "responses": {
                        "200": {"description": "Success", "schema": outputs},
                        "default": {"description": "Failure", "schema": error},
                    },
                }
            },
        },
    }
