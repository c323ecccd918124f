# The cutout service. Build: docker build -t tess-cutout .   Run: docker run -p 8000:8000 tess-cutout
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CUTOUT_HOST=0.0.0.0 \
    CUTOUT_PORT=8000 \
    CUTOUT_WORK_DIR=/srv/work \
    CUTOUT_DEMO_DIR=/srv/demo-data

WORKDIR /srv/app
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY core/ core/
COPY app/ app/
RUN pip install --no-cache-dir -c requirements/constraints.txt . \
    && useradd --create-home --uid 10001 cutout \
    && mkdir -p /srv/work /srv/demo-data /data/cubes \
    && chown -R cutout:cutout /srv/work /srv/demo-data /data

USER cutout
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CUTOUT_PORT', '8000') + '/health', timeout=4)" || exit 1

# With no CUTOUT_CUBE_DIRS the service generates and serves the synthetic demo sectors.
CMD ["cutout", "serve"]
