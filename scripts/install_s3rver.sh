#!/usr/bin/env bash
# Install the npm package s3rver (a real S3-protocol server for tests and benches) into a
# project-local folder that git ignores: .cache/s3rver/ (or $S3RVER_HOME). Idempotent and quiet:
# nothing is printed on success, and a finished install returns at once.
#
# One line of s3rver 3.7.1 is patched after install: its filesystem store reads a range ending at
# byte 0 ("bytes=0-0") as "to the end" (`options.end || Infinity`), which would stream a whole
# 130 GB sparse cube for a 1-byte read.
set -euo pipefail
VERSION="3.7.1"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${S3RVER_HOME:-$ROOT/.cache/s3rver}"
STAMP="$DEST/.installed-$VERSION"
STORE="$DEST/node_modules/s3rver/lib/stores/filesystem.js"

if [[ -f "$STAMP" && -f "$DEST/node_modules/s3rver/bin/s3rver.js" ]]; then
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install_s3rver: '$tool' not found (apt-get install nodejs npm)" >&2; exit 1; }
done
mkdir -p "$DEST"
printf '*\n' >"$DEST/.gitignore"  # the folder ignores itself: the repository's .gitignore is untouched
log="$DEST/npm-install.log"
if ! npm install --prefix "$DEST" --no-audit --no-fund --no-save --loglevel=error "s3rver@$VERSION" >"$log" 2>&1; then
  echo "install_s3rver: npm install s3rver@$VERSION failed:" >&2
  cat "$log" >&2
  exit 1
fi
buggy='end: Math.min((options \&\& options.end) || Infinity, lastByte),'
fixed='end: Math.min(options \&\& options.end !== undefined ? options.end : Infinity, lastByte),'
sed -i "s/$buggy/$fixed/" "$STORE"
if ! grep -q 'options.end !== undefined ? options.end : Infinity' "$STORE"; then
  echo "install_s3rver: could not patch $STORE (s3rver's range handling changed?)" >&2
  exit 1
fi
touch "$STAMP"
