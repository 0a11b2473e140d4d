# llm-runner: the Livepeer `llm` runner (and live runner app) in front of Ollama.
# hadolint passes with no finding, and tests/test_operator_files.py runs this file's install RUN lines and
# its two CMDs in a clean venv, so keep every install step in a RUN line here (not in a script).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The unprivileged user the service runs as (numeric below, so that the host can resolve it).
RUN useradd --create-home --uid 10001 runner

WORKDIR /app

# Dependencies in their own layer, pinned: requirements.lock (scripts/lock writes it from pyproject.toml).
COPY requirements.lock ./
RUN pip install --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY llm_runner ./llm_runner
# --no-deps and pip check: a lock that misses a dependency, or pins one pyproject.toml no longer accepts,
# fails the build instead of pulling an unpinned version.
RUN pip install --no-deps . \
    && pip check

USER 10001
EXPOSE 8000
ENV LLM_RUNNER_BACKEND=ollama \
    OLLAMA_HOST=http://ollama:11434

# Healthy while the runner answers OK or LOADING (a model still being pulled); ERROR is unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["llm-runner", "healthcheck"]

CMD ["llm-runner", "serve", "--host", "0.0.0.0", "--port", "8000"]
