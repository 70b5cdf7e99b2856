#!/usr/bin/env bash
# Release build: static, stamped, reproducible binaries of switchboard and sbbench for every platform in
# PLATFORMS, written to dist/ with one tarball per platform and SHA256SUMS over all of it.
#
#   build/release.sh                      # or: make release
#   VERSION=v1.2.0 build/release.sh       # override the stamp (default: git describe --tags --always --dirty)
#
# Environment: VERSION, COMMIT (default: git rev-parse HEAD), DATE (RFC 3339 UTC; default: the commit's time,
# or SOURCE_DATE_EPOCH when set, so building the same commit twice gives the same bytes), PLATFORMS
# (default "linux/amd64 linux/arm64"), DIST (default dist).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION="${VERSION:-$(git describe --tags --always --dirty)}"
COMMIT="${COMMIT:-$(git rev-parse HEAD)}"
EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}"
DATE="${DATE:-$(date -u -d "@${EPOCH}" +%Y-%m-%dT%H:%M:%SZ)}"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64}"
DIST="${DIST:-dist}"

pkg=github.com/switchboard/switchboard/internal/buildinfo
ldflags="-s -w -X ${pkg}.version=${VERSION} -X ${pkg}.commit=${COMMIT} -X ${pkg}.date=${DATE}"

# What goes into each tarball besides the binaries: enough to install with systemd or run from the folder.
extras=(LICENSE CHANGELOG.md README.md configs scripts public deploy docs)

rm -rf "${DIST}"
mkdir -p "${DIST}"
for platform in ${PLATFORMS}; do
  goos="${platform%/*}"
  goarch="${platform#*/}"
  name="switchboard-${VERSION}-${goos}-${goarch}"
  stage="${DIST}/${name}"
  mkdir -p "${stage}"
  for cmd in switchboard sbbench; do
    echo "== ${cmd} ${goos}/${goarch} ${VERSION}"
    # -trimpath and -buildvcs=false keep the checkout's location and state out of the binary; the stamp
    # carries the commit instead.
    CGO_ENABLED=0 GOOS="${goos}" GOARCH="${goarch}" GOFLAGS= \
      go build -trimpath -buildvcs=false -ldflags "${ldflags}" -o "${DIST}/${cmd}-${goos}-${goarch}" "./cmd/${cmd}"
    cp "${DIST}/${cmd}-${goos}-${goarch}" "${stage}/${cmd}"
  done
  cp -R "${extras[@]}" "${stage}/"
  # A reproducible archive: sorted names, fixed owner and time, no gzip timestamp.
  tar --sort=name --mtime="@${EPOCH}" --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' \
    -C "${DIST}" -cf - "${name}" | gzip -9 -n >"${DIST}/${name}.tar.gz"
  rm -rf "${stage}"
done
(cd "${DIST}" && sha256sum -- * >SHA256SUMS)
echo "== ${DIST}/"
cat "${DIST}/SHA256SUMS"
