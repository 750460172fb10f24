# syntax=docker/dockerfile:1
#
# fargate-webhook: a static (musl) binary on distroless, running as uid 65532.
#   docker build -t fargate-webhook:dev .
#   docker run --rm fargate-webhook:dev --help

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
# C code in dependencies (ring) is compiled with musl-gcc; the image carries no debug info.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /build

# 1. Dependencies only: build against stub sources so that this layer is reused until Cargo.toml or
#    Cargo.lock change. Bench stubs exist because Cargo.toml declares [[bench]] targets.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
      echo 'fn main() {}' > "benches/${bench}.rs"; done \
 && cargo build --release --locked --target "${TARGET}" \
 && rm -rf src benches

# 2. The project itself (everything .dockerignore lets through, so that include_str! of files outside
#    src/ keeps working). `touch` makes sure cargo sees the real sources as newer than the stubs.
COPY . .
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "${TARGET}" --bin fargate-webhook \
 && cp "target/${TARGET}/release/fargate-webhook" /fargate-webhook \
 && /fargate-webhook --help >/dev/null

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="fargate-webhook" \
      org.opencontainers.image.description="EKS Fargate-profile pod mutation and Fargate-profile API for any Kubernetes cluster"
COPY --from=builder /fargate-webhook /fargate-webhook
USER 65532:65532
# 8443 webhook (TLS), 9090 ops (/metrics, /healthz, /readyz), 8080 EKS-compatible API
EXPOSE 8443 9090 8080
ENTRYPOINT ["/fargate-webhook"]
CMD ["serve"]
