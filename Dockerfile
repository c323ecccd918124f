# The cutout service. Build: docker build -t tess-cutout .   Run: docker run -p 8000:8000 tess-cutout
#
# Needs a Python 3.11.5 or later base (the pinned constraints do). PYTHON_BASE names it; where the
# registry cannot be reached, scripts/docker_standins.sh builds a local stand-in (README, "Deploying").
# Three stages: the pinned runtime packages (requirements/runtime.txt: the service's import closure,
# without tesswcs's plotting stack), the project itself, and the image, which gets both as two
# layers (a code change rebuilds and ships only the small one) and nothing of the build.
ARG PYTHON_BASE=python:3.11-slim

FROM ${PYTHON_BASE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore PYTHONDONTWRITEBYTECODE=1
RUN python -c "import sys; assert sys.version_info >= (3, 11, 5), 'Python 3.11.5 or later is needed, this base has ' + sys.version"
COPY requirements/runtime.txt /tmp/runtime.txt
# --no-deps: the file is the whole closure, pinned. Test suites inside the installed packages are not
# needed at run time (astropy/tests itself stays: "import astropy" loads its test runner).
RUN pip install --no-deps --prefix /install -r /tmp/runtime.txt \
    && find /install/lib/python3.11/site-packages -mindepth 3 -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf /install/lib/python3.11/site-packages/Crypto/SelfTest

FROM deps AS project
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core/ core/
COPY app/ app/
RUN pip install --no-deps --prefix /project .

FROM ${PYTHON_BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/cutout \
    CUTOUT_HOST=0.0.0.0 \
    CUTOUT_PORT=8000 \
    CUTOUT_WORK_DIR=/srv/work \
    CUTOUT_DEMO_DIR=/srv/demo-data
COPY --from=deps /install /usr/local
COPY --from=project /project /usr/local
# Every module of the service imports with the packages installed (a missing one fails the build).
RUN python -c "import importlib, pkgutil, app, core; [importlib.import_module(m.name) for p in (app, core) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') if not m.name.endswith('__main__')]"
# Runs as uid 10001 (group 0), or as any uid in group 0 (OpenShift, Kubernetes runAsUser): the folders
# it writes are group 0 and group-writable; its code (/usr/local, root's) is read-only to it.
RUN useradd --uid 10001 --gid 0 --home-dir /home/cutout --create-home --no-log-init cutout \
    && mkdir -p /srv/work /srv/demo-data /data/cubes \
    && chown -R 10001:0 /srv/work /srv/demo-data /data /home/cutout \
    && chmod -R g=u /srv/work /srv/demo-data /data /home/cutout
WORKDIR /home/cutout

USER 10001:0
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CUTOUT_PORT', '8000') + '/health', timeout=4)" || exit 1

# With no CUTOUT_CUBE_DIRS the service generates and serves the synthetic demo sectors.
CMD ["cutout", "serve"]
