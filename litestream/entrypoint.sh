#!/busybox/sh
# The wallet-litestream image's entrypoint (litestream/Dockerfile).
#
# Order matters. First restore: on a new, empty volume, fetch the latest
# state from the replica, so the service never creates a fresh ledger that
# would then be replicated over the backup. -if-db-not-exists leaves an
# existing database alone; -if-replica-exists lets the very first start (no
# replica yet) go on with an empty volume. Then replicate for as long as the
# service runs: -exec starts `wallet serve` as Litestream's child, passes it
# SIGTERM, and exits with it.
#
# busybox's sh, from the distroless :debug image: the one shell in the image.
# tests/api/deploy.rs runs this script with a stand-in `litestream`.
set -eu

db="${WALLET_DB:-/data/wallet.db}"
config=/etc/litestream.yml

litestream restore -config "$config" -if-db-not-exists -if-replica-exists "$db"
exec litestream replicate -config "$config" -exec "wallet serve"
