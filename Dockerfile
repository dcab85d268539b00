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
ENTRYPOINT ["/usr/local/bin/picomdm"]
CMD ["-storage-dsn", "/data/db"]
