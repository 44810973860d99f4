# syntax=docker/dockerfile:1
# The backfill image: one binary for every role (worker, producer, operator
# tools); the subcommand picks the role, so compose and Kubernetes pass only
# arguments.
#
#   docker build -t backfill:local .
#
# scripts/check-deploy.sh checks this file offline (no engine is needed).

# The tag follows the lockfile, not the workspace's `rust-version`: the
# locked AWS SDK crates need a newer compiler than the workspace declares,
# and scripts/check-deploy.sh fails when this tag falls behind them.
# Builder and runtime are both bookworm so the binary finds the glibc it
# was linked against.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Only what the build reads: a change to k8s/, docs or scripts then keeps
# the build cache.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Cache mounts keep downloaded crates and compiled dependencies between
# builds without putting them in a layer; the binary is copied out of the
# mounted target dir because the mount is gone once this step ends.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p backfill-cli \
 && install -D -m 0755 target/release/backfill /out/backfill

FROM debian:bookworm-slim
# The AWS SDK's TLS trusts the system's root certificates.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid: Kubernetes' runAsNonRoot can only verify a numeric
# USER, and the manifests in k8s/ name the same uid.
RUN groupadd --gid 10001 backfill \
 && useradd --uid 10001 --gid backfill --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin backfill
COPY --from=builder /out/backfill /usr/local/bin/backfill
USER 10001:10001
# Where compose and Kubernetes mount the config; --config still overrides it.
ENV BACKFILL_CONFIG=/etc/backfill/backfill.toml
# The binary is PID 1 and handles SIGTERM itself (it hands its jobs back to
# the queue within worker.shutdown_grace_secs), so no init wrapper sits in
# between to swallow or delay the signal.
ENTRYPOINT ["backfill"]
CMD ["--help"]
