"""The HTTP shell: one route table (built in `app.py` from the faces' routes) served by one front
door in plain ASGI (`front.py`), with FastAPI kept for the OpenAPI document, its pages and the
lifespan. The faces (`livepeer/`, `openai/`) contribute routes and word errors; this package owns
the rest: token checks, body limits, refusal lines, request metrics."""
