#!/usr/bin/env bash
# Set everything up and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# The browser test drives Debian's chromium; install it when we can (root + apt), else that test skips.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "test: chromium could not be installed; the browser test will be skipped" >&2
fi
# The load-balancer tests drive Debian's nginx, and the S3 tests that need speed use the npm package
# s3rver; both installers say why and carry on when they cannot install (those tests then skip).
bash scripts/install_nginx.sh
if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing nodejs and npm for s3rver" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) \
    || echo "test: nodejs/npm could not be installed; the s3rver tests will be skipped" >&2
fi
bash scripts/install_s3rver.sh || echo "test: s3rver could not be installed; the s3rver tests will be skipped" >&2
mkdir -p test-artifacts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
