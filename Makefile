# Day-to-day commands. The release itself is build/release.sh; this file only names it.
#   make release                  stamped static binaries for linux/amd64 and linux/arm64, tarballs, SHA256SUMS in dist/
#   make release VERSION=v1.2.0   the same with an explicit version
#   make build                    ./switchboard and ./sbbench for this machine, stamped the same way
#   make test                     what CI runs (.ci/run)
#   make docker                   the container image (needs a Docker daemon)

VERSION ?= $(shell git describe --tags --always --dirty)
COMMIT  ?= $(shell git rev-parse HEAD)
DATE    ?= $(shell date -u -d @$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)} +%Y-%m-%dT%H:%M:%SZ)
IMAGE   ?= switchboard:$(VERSION)

PKG     := github.com/switchboard/switchboard/internal/buildinfo
LDFLAGS := -X $(PKG).version=$(VERSION) -X $(PKG).commit=$(COMMIT) -X $(PKG).date=$(DATE)

.PHONY: build release test docker clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o switchboard ./cmd/switchboard
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o sbbench ./cmd/sbbench

release:
	VERSION="$(VERSION)" COMMIT="$(COMMIT)" DATE="$(DATE)" build/release.sh

test:
	.ci/run

docker:
	docker build --build-arg VERSION="$(VERSION)" --build-arg COMMIT="$(COMMIT)" --build-arg DATE="$(DATE)" -t "$(IMAGE)" .

clean:
	rm -rf dist switchboard sbbench
