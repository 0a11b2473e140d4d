"""The HTTP shell: one route table (`table.py`) served by one front door (`front.py`) in plain
ASGI, with FastAPI kept for the OpenAPI document and its pages (`app.py`). The faces
(`livepeer/`, `openai/`) contribute routes and word errors; this package owns the rest."""
