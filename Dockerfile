# One image for the API and the scheduler; the database is a separate postgis/postgis service.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv==0.13.9 \
 && apt-get update && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --compile-bytecode
COPY . .
RUN uv sync --frozen --no-dev --compile-bytecode
# The compiled fast paths (make native): built here, the compiler removed after.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && make native \
 && apt-get purge -y --auto-remove gcc libc6-dev make && rm -rf /var/lib/apt/lists/*
USER nobody
CMD ["conectado", "serve", "--host", "0.0.0.0", "--port", "8000"]
