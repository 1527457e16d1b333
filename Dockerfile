# syntax=docker/dockerfile:1.7
# shopmesh: one multi-stage build for all ten binaries (docs/conventions.md).
#
#   docker build -t shopmesh .                                  # all ten binaries
#   docker run --rm shopmesh svc-order                          # any one of them
#   docker run --rm shopmesh svc-order migrate                  # its migrations
#   docker build --build-arg BINARIES=svc-order -t svc-order .  # an image with one binary
#
# The Helm chart runs the all-in-one image and picks each Deployment's binary with
# `command`. Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) ->
# builder (dependencies cooked in their own cached layer, then the workspace) ->
# runtime (distroless, no shell, non-root).
#checkov:skip=CKV_DOCKER_2:Kubernetes probes the services over gRPC health (helm/shopmesh); a Docker HEALTHCHECK would need a client binary in an image that deliberately has none.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
# cmake, libssl-dev, libcurl4-openssl-dev (headers librdkafka 2.12 includes with TLS) and
# pkg-config build librdkafka (rdkafka-sys); protox compiles the
# protos in Rust, so no protoc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libssl-dev libcurl4-openssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# The recipe lists the workspace's manifests and lock file only, so the next stage's
# dependency layer is rebuilt when dependencies change, not when code does.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --workspace --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --workspace --bins
# Which binaries go into the image; the first is also /usr/local/bin/shopmesh, the default command.
ARG BINARIES="gateway svc-auth svc-user svc-product svc-inventory svc-cart svc-order svc-payment svc-notification svc-recommendation"
# Stage the binaries, and the shared libraries they link beyond glibc and libgcc (which
# the distroless base has), e.g. OpenSSL for librdkafka.
RUN set -eu; \
    mkdir -p /out/bin /out/lib; \
    for bin in $BINARIES; do \
        test -x "target/release/$bin" || { echo "no binary $bin in target/release" >&2; exit 1; }; \
        cp "target/release/$bin" /out/bin/; \
    done; \
    set -- $BINARIES; ln -s "$1" /out/bin/shopmesh; \
    for bin in $BINARIES; do ldd "target/release/$bin"; done \
        | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u \
        | grep -Ev '/(libc|libm|libdl|librt|libpthread|libgcc_s)\.so|/ld-linux' \
        | xargs -r cp -L -t /out/lib/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG SOURCE_URL=https://github.com/shopmesh/shopmesh
LABEL org.opencontainers.image.title="shopmesh" \
      org.opencontainers.image.description="shopmesh gRPC services and REST gateway" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/lib/ /usr/local/lib/shopmesh/
COPY --from=builder /out/bin/ /usr/local/bin/
ENV LD_LIBRARY_PATH=/usr/local/lib/shopmesh \
    LOG_FORMAT=json
# gateway HTTP, services' gRPC, metrics (docs/conventions.md)
EXPOSE 8080 50051-50059 9100-9109
USER 65532:65532
CMD ["/usr/local/bin/shopmesh"]
