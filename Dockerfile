# The wallet service in a container: one binary, its database on a volume.
#
#   docker build -t wallet .
#   docker run -d --name wallet --stop-timeout 35 -p 8080:8080 -v wallet-data:/data wallet
#
# Stages, in file order: `data` (an empty /data), `runtime` (the base image
# and every setting, no binary yet), `build` (cargo), and `release`, the
# default target: `runtime` with the binary `build` made. The runtime comes
# before the build so that `docker build --target runtime` never needs the
# Rust image, even with the classic builder, which builds every stage up to
# its target: tests/api/container.rs builds it on a stand-in base
# (--build-arg RUNTIME_BASE=...) and adds the host's release binary as the
# one layer `release` adds.
#
# tests/api/deploy.rs checks that this file, docker-compose.yml, fly.toml and
# .ci/run agree: the binary, the port, the variables, the build command.

# The runtime's base. Distroless "cc": glibc, libgcc, CA certificates and a
# non-root user (uid 65532), and no shell or package manager to attack.
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

# --- data -------------------------------------------------------------------
# An empty folder to become /data, so the image needs no shell to make it.
FROM scratch AS data
WORKDIR /data

# --- runtime ----------------------------------------------------------------
FROM ${RUNTIME_BASE} AS runtime
# The database lives on the volume; SQLite puts its -wal and -shm files beside
# it, so the whole folder is the volume. /data is owned by uid 65532 (the
# distroless "nonroot" user, given by number so that any base works), and a
# fresh named volume takes that owner, so the service can write to it. A bind
# mount keeps the host folder's owner instead: make it writable for 65532
# (`sudo chown 65532:65532 ./data`).
COPY --from=data --chown=65532:65532 /data /data
ENV WALLET_DB=/data/wallet.db \
    PORT=8080 \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
USER 65532:65532
# The base has no curl, so the health check is the binary's own `wallet health`.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wallet", "health"]
ENTRYPOINT ["/usr/local/bin/wallet"]
CMD ["serve"]

# --- build ------------------------------------------------------------------
# The toolchain is at least Cargo.toml's rust-version and new enough for every
# crate Cargo.lock pins.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Manifests first, so the dependencies are a cached layer of their own: a
# change to the code alone does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY schema.sql seed.sql ./
COPY migrations ./migrations
# The operator console's page and files, compiled into the binary.
COPY console ./console
COPY src ./src
# The command CI runs too (.ci/run), so CI proves this step. touch: the
# placeholder build above is newer than the copied sources.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# --- release (the default target) -------------------------------------------
FROM runtime AS release
COPY --from=build /src/target/release/wallet /usr/local/bin/wallet
