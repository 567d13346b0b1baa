# certctl's container image, for users who build with docker or buildah:
#   docker build -t certctl:dev .
#   docker run --rm -v /:/host:ro certctl:dev --root /host inspect
# Without a docker daemon or registry, `make image` writes the same image as a docker-archive
# tarball (hack/lab/mkimage).
ARG GO_VERSION=1.23

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/certctl ./cmd/certctl

# static: no libc needed (CGO_ENABLED=0); it has /etc (passwd, ssl certs) and /tmp.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/certctl /usr/local/bin/certctl
ENTRYPOINT ["/usr/local/bin/certctl"]
