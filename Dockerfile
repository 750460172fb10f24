# syntax=docker/dockerfile:1
#
# fargate-webhook: a static (musl) binary on distroless, running as uid 65532, for amd64 and arm64.
#   docker build -t fargate-webhook:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/fargate-webhook:TAG --push .
#   docker run --rm fargate-webhook:dev --help
# The builder runs natively (BUILDPLATFORM) and cross-compiles to the target's musl triple.
# Pin the base images by digest for releases: --build-arg RUST_IMAGE=rust@sha256:… and
# --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12@sha256:… (scripts/release.sh does).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=${BUILDPLATFORM} ${RUST_IMAGE} AS builder
ARG TARGETARCH
# amd64 -> x86_64-unknown-linux-musl, arm64 -> aarch64-unknown-linux-musl.
RUN case "${TARGETARCH:-amd64}" in \
      amd64) echo x86_64-unknown-linux-musl > /target ;; \
      arm64) echo aarch64-unknown-linux-musl > /target ;; \
      *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools clang lld \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(cat /target)"
# C code in dependencies (ring) is compiled with clang for the target (musl-gcc only targets the build
# machine); linking with rust-lld needs no cross toolchain. The image carries no debug info.
ENV CC_x86_64_unknown_linux_musl=clang \
    CC_aarch64_unknown_linux_musl=clang \
    CFLAGS_x86_64_unknown_linux_musl="--target=x86_64-unknown-linux-musl" \
    CFLAGS_aarch64_unknown_linux_musl="--target=aarch64-unknown-linux-musl" \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never
WORKDIR /build

# 1. Dependencies only: build against stub sources so that this layer is reused until Cargo.toml or
#    Cargo.lock change. Bench stubs exist because Cargo.toml declares [[bench]] targets.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
      echo 'fn main() {}' > "benches/${bench}.rs"; done \
 && cargo build --release --locked --target "$(cat /target)" \
 && rm -rf src benches

# 2. The project itself (everything .dockerignore lets through, so that include_str! of files outside
#    src/ keeps working). `touch` makes sure cargo sees the real sources as newer than the stubs.
COPY . .
# No .git in the build context: the revision comes in as a build argument.
ARG GIT_REVISION=unknown
ENV GIT_REVISION=${GIT_REVISION}
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --target "$(cat /target)" --bin fargate-webhook \
 && cp "target/$(cat /target)/release/fargate-webhook" /fargate-webhook

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG GIT_REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="fargate-webhook" \
      org.opencontainers.image.description="The EKS Fargate control plane for any Kubernetes cluster: mutating webhook, Fargate-profile API, fargate-scheduler" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /fargate-webhook /fargate-webhook
USER 65532:65532
# 8443 webhook (TLS), 9090 ops (/metrics, /healthz, /readyz), 8080 EKS-compatible API
EXPOSE 8443 9090 8080
ENTRYPOINT ["/fargate-webhook"]
CMD ["serve"]
