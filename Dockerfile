# Inactive Case Review worker image.
# ICR_ENVIRONMENT=production: the engine uses only the servers it is given (TEMPORAL_ADDRESS and
# DATABASE_URL, always set under docker-compose.yml) and refuses to start, naming the missing
# variable, without them; it never starts the embedded Temporal dev server or PostgreSQL here,
# whose data would die with the container. Their packages are still installed because they are
# ordinary dependencies in pyproject.toml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ICR_ENVIRONMENT=production \
    ICR_DATA_DIR=/app/.data

WORKDIR /app
COPY . .
# No [test] extras: the image runs the worker (and starter.py for operators), not the tests;
# the versions are the locked ones (requirements.lock), as in the tests.
# Bytecode for the app's own modules, written once at build time (PYTHONDONTWRITEBYTECODE).
RUN pip install --no-cache-dir -c requirements.lock . \
    && python -m compileall -q /app/workflows /app/icr /app/activities \
    && useradd --system --create-home --uid 10001 --user-group icr \
    && mkdir -p "$ICR_DATA_DIR" \
    && chown icr:icr "$ICR_DATA_DIR"

USER icr

# Exec form: python receives SIGTERM directly (docker stop / compose down) and drains the worker.
CMD ["python", "worker.py"]
