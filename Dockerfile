# syntax=docker/dockerfile:1
# Portcullis container image: a static binary on distroless, running as non-root.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t portcullis .
#   docker run -p 4180:4180 -v ./portcullis.yaml:/etc/portcullis/portcullis.yaml:ro portcullis
# With tls.mode acme, mount a volume at /var/lib/portcullis and set
# tls.acme.storage: /var/lib/portcullis/acme so certificates survive restarts.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not invalidate the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Kept on one line starting with CGO_ENABLED=0: a test extracts and runs it.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/portcullis ./cmd/portcullis
# An empty data directory owned by the runtime user (distroless nonroot is 65532).
RUN mkdir -p /out/data

# static-debian12 carries CA certificates, tzdata and a nonroot user, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/portcullis /portcullis
COPY --from=build --chown=65532:65532 /out/data /var/lib/portcullis
USER 65532:65532
EXPOSE 4180
VOLUME ["/var/lib/portcullis"]
ENTRYPOINT ["/portcullis"]
CMD ["serve", "-config", "/etc/portcullis/portcullis.yaml"]
