"""``GET /openapi.json`` (OpenAPI 3.1) and ``GET /docs``, generated from the app itself.

- ``schemas.py``: the Structs each success's ``data`` is, and the envelopes;
- ``operations.py``: what each route takes and answers (:data:`OPERATIONS`);
- ``document.py``: the document, from the app's route table and those declarations;
- ``page.py``: serving it, and ``/docs``, the document as a page.
"""

from switchboard.server.api.openapi.document import REF, document, routes_of
from switchboard.server.api.openapi.operations import OPERATIONS, PATH_PARAMS, Operation, Query
from switchboard.server.api.openapi.page import render_page, setup
from switchboard.server.api.openapi.schemas import Empty, ErrorEnvelope, Ok, ok_type

__all__ = [
    "OPERATIONS",
    "PATH_PARAMS",
    "REF",
    "Empty",
    "ErrorEnvelope",
    "Ok",
    "Operation",
    "Query",
    "document",
    "ok_type",
    "render_page",
    "routes_of",
    "setup",
]
