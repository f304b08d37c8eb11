"""Prints the HTTP API (payload 2.0) event `sam local start-api` hands a
function for one request, built by the SAM CLI's own event constructor (the
project venv's aws-sam-cli), so tests feed the functions exactly what SAM
local sends: no authorizer block, the Authorization header as it came.

Usage: python sam/sam_local_event.py METHOD PATH ROUTE_PATH [HEADERS_JSON [BODY]]
  ROUTE_PATH is the template's route path, e.g. /api/v1/credentials/{provider}.
"""

import json
import re
import sys

from flask import Flask
from samcli.local.apigw.event_constructor import construct_v2_event_http

PORT = 3000


def main() -> None:
    method, path, route_path = sys.argv[1:4]
    headers = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    body = sys.argv[5] if len(sys.argv) > 5 else None
    # Flask's path parameters, as SAM's route for ROUTE_PATH would bind them.
    pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", route_path) + "/?$"
    match = re.match(pattern, path)
    view_args = match.groupdict() if match else {}
    app = Flask("sam-local-event")
    with app.test_request_context(path, method=method, headers=headers, data=body, base_url=f"http://127.0.0.1:{PORT}"):
        from flask import request

        request.view_args = view_args
        event = construct_v2_event_http(
            flask_request=request,
            port=PORT,
            binary_types=[],
            stage_name="$default",
            stage_variables=None,
            route_key=f"{method} {route_path}",
        )
    print(json.dumps(event))


if __name__ == "__main__":
    main()
