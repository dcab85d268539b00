# syntax=docker/dockerfile:1
# Multi-stage build: a static picomdm binary on a minimal non-root image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/picomdm/picomdm/cmd/picomdm/app.Version=${VERSION}" \
      -o /out/picomdm ./cmd/picomdm && \
    mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/picomdm /usr/local/bin/picomdm
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /data
USER 65532:65532
EXPOSE 9000
VOLUME ["/data"]
# Liveness: the image has no shell or curl, so the binary checks itself
# (-healthcheck URL: GET it, exit 0 on 200, else 1). It assumes the default
# -listen :9000.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/picomdm", "-healthcheck", "http://127.0.0.1:9000/healthz"]
# No CMD: the default file storage directory "db" is relative to WORKDIR,
# i.e. /data/db on the volume, and leaving the flags empty lets every
# PICOMDM_* environment variable (PICOMDM_STORAGE_DSN included) take effect;
# arguments to `docker run picomdm …` are picomdm flags.
ENTRYPOINT ["/usr/local/bin/picomdm"]
