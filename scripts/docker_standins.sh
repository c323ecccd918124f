#!/usr/bin/env bash
# Build local stand-ins for the base images that the Dockerfile and docker-compose.yml name, on a
# machine that cannot pull from a container registry but reaches Debian's packages and PyPI.
#
#   scripts/docker_standins.sh python   # a Debian bookworm root file system with a Python >= 3.11.5
#                                       # copied from this machine, tagged $PYTHON_STANDIN; build the
#                                       # image with --build-arg PYTHON_BASE=$PYTHON_STANDIN
#   scripts/docker_standins.sh nginx    # Debian's nginx, tagged with the nginx image docker-compose.yml names
#   scripts/docker_standins.sh s3       # moto's S3 server on port 9000, tagged with the S3 image it names
#   scripts/docker_standins.sh all
#
# Needs root, a running dockerd, debootstrap (apt-get install debootstrap) and, for "python", a
# Python 3.11.5 or later (PYTHON_311, default: python3.11 on PATH). The stand-ins behave like the
# real images where the service needs it (python, pip and the libraries Python links; nginx with
# wget for the health check; an S3 endpoint on :9000 that accepts any key); they are not those
# images. This machine's CA bundle goes into the python stand-in, and pip is told to use it, so
# a build works behind an HTTPS-intercepting proxy. Work files: $STANDIN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_STANDIN="${PYTHON_STANDIN:-tess-standin/python:3.11-slim}"
STANDIN_DIR="${STANDIN_DIR:-/var/tmp/tess-cutout-standins}"
SUITE=bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

die() { echo "docker_standins: $*" >&2; exit 1; }

mirror() {
  # the Debian mirror apt already uses here (deb822 "URIs:" or one-line "deb URL suite ...")
  local url
  url=$(grep -hoE '^URIs: *http[^ ]*' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$url" ] || url=$(grep -hoE '^deb +http[^ ]*' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
                         | head -1 | awk '{print $2}')
  echo "${url:-http://deb.debian.org/debian}"
}

compose_image() {
  # the image: line of one service of docker-compose.yml (two-space service indent, four-space keys)
  awk -v svc="$1" '$0 ~ "^  "svc":" {on=1; next} on && /^  [^ ]/ {on=0} on && /^    image:/ {print $2; exit}' \
    docker-compose.yml
}

rootfs() {
  # a debootstrapped bookworm (minbase plus $2) in $STANDIN_DIR/$1, made once
  local dir="$STANDIN_DIR/$1"
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    mkdir -p "$STANDIN_DIR"
    debootstrap --variant=minbase --include="$2" "$SUITE" "$dir" "$(mirror)" >"$STANDIN_DIR/$1.log" 2>&1 \
      || die "debootstrap failed: see $STANDIN_DIR/$1.log"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

build_python() {
  local py prefix dir sp
  py="${PYTHON_311:-$(command -v python3.11 || true)}"
  [ -n "$py" ] || die "no python3.11 on PATH: set PYTHON_311 to a Python 3.11.5 or later"
  "$py" -c 'import sys; sys.exit(not ((3, 11, 5) <= sys.version_info[:3] < (3, 12)))' \
    || die "$py is $("$py" -V 2>&1); the constraints need Python 3.11.5 or later (3.11.x)"
  prefix=$("$py" -c 'import sys; print(sys.base_prefix)')
  dir=$(rootfs python "ca-certificates,libssl3,libsqlite3-0,libffi8,libbz2-1.0,liblzma5,zlib1g,libreadline8,libncursesw6,libuuid1,libexpat1,netbase,tzdata")
  # the interpreter, its shared library and its standard library (no test suite, no static library),
  # and from its site-packages only pip and setuptools, as python:3.11-slim has
  rm -rf "$dir/usr/local/lib/python3.11"
  mkdir -p "$dir/usr/local/bin" "$dir/usr/local/lib"
  cp -a "$prefix/bin/python3.11" "$dir/usr/local/bin/"
  cp -a "$prefix"/lib/libpython3*.so* "$dir/usr/local/lib/" 2>/dev/null || true
  tar -C "$prefix/lib" --exclude='python3.11/test' --exclude='python3.11/config-3.11-*' \
      --exclude='python3.11/site-packages/*' -cf - python3.11 | tar -C "$dir/usr/local/lib" -xf -
  sp="$prefix/lib/python3.11/site-packages"
  (cd "$sp" && tar -cf - pip pip-*.dist-info setuptools setuptools-*.dist-info pkg_resources \
      _distutils_hack distutils-precedence.pth 2>/dev/null) | tar -C "$dir/usr/local/lib/python3.11/site-packages" -xf -
  ln -sf python3.11 "$dir/usr/local/bin/python3"
  ln -sf python3.11 "$dir/usr/local/bin/python"
  for name in pip pip3; do
    printf '#!/usr/local/bin/python3.11\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n' \
      >"$dir/usr/local/bin/$name"
    chmod 755 "$dir/usr/local/bin/$name"
  done
  chroot "$dir" /sbin/ldconfig
  cp "$CA_BUNDLE" "$dir$CA_BUNDLE"
  chroot "$dir" /usr/local/bin/python3 -c 'import ssl, sqlite3, ctypes, bz2, lzma, zlib, uuid; import pip' \
    || die "the copied Python does not run in the root file system"
  tar -C "$dir" --exclude=./.complete -cf - . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PIP_CERT=$CA_BUNDLE" \
    --change "ENV SSL_CERT_FILE=$CA_BUNDLE" \
    --change 'ENV PIP_DEFAULT_TIMEOUT=180' \
    --change 'CMD ["python3"]' - "$PYTHON_STANDIN" >/dev/null
  echo "docker_standins: $PYTHON_STANDIN ($(docker run --rm "$PYTHON_STANDIN" python -V))"
}

build_nginx() {
  local tag
  tag=$(compose_image nginx)
  [ -n "$tag" ] || die "docker-compose.yml names no image for the nginx service"
  docker image inspect "$PYTHON_STANDIN" >/dev/null 2>&1 || build_python
  # Debian's nginx in the foreground, logging to the container's output like the official image
  docker build --network host -t "$tag" - >/dev/null <<EOF
FROM $PYTHON_STANDIN
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      nginx-light wget >/dev/null && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/*
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
  echo "docker_standins: $tag ($(docker run --rm "$tag" nginx -v 2>&1))"
}

build_s3() {
  local tag moto
  tag=$(compose_image s3)
  [ -n "$tag" ] || die "docker-compose.yml names no image for the s3 service"
  moto=$(grep -E '^moto==' requirements/constraints.txt | head -1)
  docker image inspect "$PYTHON_STANDIN" >/dev/null 2>&1 || build_python
  # moto's server speaks S3 on :9000 and accepts any key; the compose command's arguments (the real
  # server's) are ignored. Its data lives in memory.
  docker build --network host -t "$tag" - >/dev/null <<EOF
FROM $PYTHON_STANDIN
RUN pip install -q --no-cache-dir --disable-pip-version-check "${moto/moto/moto[server]}"
EXPOSE 9000
ENTRYPOINT ["/bin/sh", "-c", "exec moto_server -H 0.0.0.0 -p 9000", "--"]
EOF
  echo "docker_standins: $tag (moto $(docker run --rm --entrypoint python "$tag" -c 'import moto; print(moto.__version__)'))"
}

[ "$(id -u)" = "0" ] || die "run as root (debootstrap, chroot)"
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no docker daemon answers"
case "${1:-}" in
  python) command -v debootstrap >/dev/null || die "debootstrap is not installed"; build_python ;;
  nginx) build_nginx ;;
  s3) build_s3 ;;
  all) command -v debootstrap >/dev/null || die "debootstrap is not installed"; build_python; build_nginx; build_s3 ;;
  *) die "usage: $0 python|nginx|s3|all" ;;
esac
