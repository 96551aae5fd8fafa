"""The API docs at ``/docs``: Swagger UI 5 from the files the installed ``fastapi-offline``
package ships (its assets only, not its app class), never a CDN, so the docs work offline.
The page has no inline script: its start-up code is a static file of ours, so the docs live
under the same strict script policy as every other page."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
SWAGGER_UI = Path(str(resources.files("fastapi_offline") / "static"))
ASSETS = "/docs/assets"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenMVNO API</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
<link rel="icon" type="image/png" href="{ASSETS}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="/openapi.json"></div>
<script src="{ASSETS}/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""


def install(app: FastAPI) -> None:
    """Serve ``/docs`` (build the app with ``docs_url=None``) and its assets."""

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/docs/start.js", include_in_schema=False)
    async def api_docs_start() -> FileResponse:
        return FileResponse(STATIC / "start.js", media_type="text/javascript")

    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI), name="docs-assets")
