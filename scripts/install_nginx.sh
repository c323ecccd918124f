#!/usr/bin/env bash
# Install Debian's nginx for the load-balancer tests (tests/app/test_topology.py), when it is missing and
# we are root with apt-get. Idempotent and quiet on success. When it cannot install, it says why on
# stderr and still exits 0: the tests that need nginx then skip.
#
# The tests start their own nginx (own config, own prefix, unprivileged port), so the distribution's
# nginx service must not be left running or enabled: a policy-rc.d that forbids starting services is
# in place during the install, and the service is stopped and disabled afterwards should it run anyway.
set -uo pipefail

note() { echo "install_nginx: $*" >&2; }

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  note "nginx is not installed and we are not root; the nginx tests will be skipped"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  note "nginx is not installed and there is no apt-get; the nginx tests will be skipped"
  exit 0
fi

# Forbid service starts during the install (exit 101 = "action forbidden"), unless a policy is there.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -qq --no-install-recommends -o DPkg::Lock::Timeout=300)
log=$(mktemp)
installed=""
# Debian 12's "nginx" has every module deploy/nginx.conf uses (upstream, proxy, headers, map);
# "nginx-light" is the fallback (in Debian 12 a small package that pulls in "nginx" too). The package
# lists are refreshed only if the first try fails.
for attempt in 1 2; do
  for pkg in nginx nginx-light; do
    if apt-get install "${apt_opts[@]}" "$pkg" >"$log" 2>&1; then installed=$pkg; break 2; fi
  done
  [ "$attempt" = 1 ] && apt-get update -qq -o DPkg::Lock::Timeout=300 >>"$log" 2>&1
done
if [ -z "$installed" ]; then
  note "could not install nginx (apt-get said: $(tail -n 3 "$log" | tr '\n' ' ')); the nginx tests will be skipped"
  rm -f "$log"
  exit 0
fi
rm -f "$log"

# Never leave the distribution's service enabled or running (belt and braces: the policy above
# already kept it from starting).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1; then
  update-rc.d nginx disable >/dev/null 2>&1 || true
fi
if [ -s /run/nginx.pid ]; then
  start-stop-daemon --stop --quiet --retry QUIT/5/TERM/5 --pidfile /run/nginx.pid --exec /usr/sbin/nginx \
    >/dev/null 2>&1 || true
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  note "apt-get installed $installed but no nginx binary was found; the nginx tests will be skipped"
fi
exit 0
