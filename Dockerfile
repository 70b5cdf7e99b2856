# Switchboard container image: `make docker`, or
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t switchboard .
# Run (docs/operations.md, "Deployment"):
#   docker run -d --name switchboard -p 5000:5000 -p 3289:3289 -p 127.0.0.1:9090:9090 \
#     -v switchboard-etc:/etc/switchboard -v switchboard-state:/var/lib/switchboard switchboard
# Reload: docker kill --signal HUP switchboard. Health: GET /healthz on port 9090 (this image has no shell or
# HTTP client for a HEALTHCHECK; use the orchestrator's HTTP probe).

# Build on the build machine's platform and cross-compile for the target (docker buildx --platform ...).
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=
ARG DATE=
ARG TARGETOS
ARG TARGETARCH
RUN pkg=github.com/switchboard/switchboard/internal/buildinfo \
 && CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X $pkg.version=$VERSION -X $pkg.commit=$COMMIT -X $pkg.date=$DATE" \
      -o /out/switchboard ./cmd/switchboard
# The two volumes' initial contents: configuration, scripts, routes and served files; an empty state folder.
RUN mkdir -p /out/etc/switchboard /out/var/lib/switchboard \
 && cp -R scripts public configs/relay.routes /out/etc/switchboard/ \
 && cp deploy/docker/switchboard.yaml /out/etc/switchboard/switchboard.yaml

# Static binary on a minimal base: no shell, no package manager; user nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /usr/local/bin/switchboard
# Configuration stays owned by root (read-only to the service); state belongs to the service's user.
COPY --from=build /out/etc/switchboard /etc/switchboard
COPY --from=build --chown=65532:65532 /out/var/lib/switchboard /var/lib/switchboard
USER 65532:65532
WORKDIR /var/lib/switchboard
VOLUME ["/etc/switchboard", "/var/lib/switchboard"]
# socket server, relay, FreeSWITCH event socket, admin (/healthz, /metrics, POST /reload)
EXPOSE 5000 3289 8084 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["run", "-c", "/etc/switchboard/switchboard.yaml"]
