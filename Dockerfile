# The wallet service in a container: one binary, its database on a volume.
#
#   docker build -t wallet .
#   docker run -p 8080:8080 -v wallet-data:/data wallet
#
# tests/api/deploy.rs checks that this file, docker-compose.yml, fly.toml and
# .ci/run agree: the binary, the port, the variables, the build command.

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
COPY src ./src
# The command CI runs too (.ci/run), so CI proves this step. touch: the
# placeholder build above is newer than the copied sources.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked
# An empty folder to become /data, owned by the runtime's non-root user.
RUN mkdir /data

# --- run --------------------------------------------------------------------
# Distroless "cc": glibc, libgcc, CA certificates and a non-root user, and no
# shell or package manager to attack. It has no curl either, so the health
# check is the binary's own `wallet health`.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/wallet /usr/local/bin/wallet
# The database lives on the volume; SQLite puts its -wal and -shm files beside
# it, so the whole folder is the volume. /data is owned by the non-root user,
# and a fresh named volume takes that owner, so the service can write to it.
COPY --from=build --chown=nonroot:nonroot /data /data
ENV WALLET_DB=/data/wallet.db \
    PORT=8080 \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
USER nonroot:nonroot
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wallet", "health"]
ENTRYPOINT ["/usr/local/bin/wallet"]
CMD ["serve"]
