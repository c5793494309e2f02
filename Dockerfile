# syntax=docker/dockerfile:1
#
# presignd container image.
#
#   docker build -t presignd .
#   docker run -p 8443:8443 -v /path/to/presignd.toml:/etc/presignd/presignd.toml:ro presignd
#
# The image ships no configuration: mount one at $PRESIGND_CONFIG (see examples/presignd.toml).

############################ build ############################
FROM rust:1.95-bookworm AS builder
WORKDIR /app
# Pipelines below must fail when any stage of the pipe fails (hadolint DL4006).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Dependency layer: build every dependency against stub sources, so that this layer is
# rebuilt only when Cargo.toml or Cargo.lock change. Explicit [[bench]]/[[test]]/[[example]]
# targets get empty stub files too (cargo refuses a manifest whose target files are missing;
# `cargo build` does not compile them).
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir -p src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    awk 'function flush() { if (stub != "" && !has_path) print stub; stub = ""; has_path = 0 } \
         /^\[/ { flush(); dir = ""; target = 0 } \
         /^\[\[bench\]\]/ { dir = "benches"; target = 1 } \
         /^\[\[test\]\]/ { dir = "tests"; target = 1 } \
         /^\[\[example\]\]/ { dir = "examples"; target = 1 } \
         /^\[\[bin\]\]/ || /^\[lib\]/ { target = 1 } \
         target && /^name *=/ && dir != "" { split($0, a, "\""); stub = dir "/" a[2] ".rs" } \
         target && /^path *=/ { split($0, a, "\""); print a[2]; has_path = 1 } \
         END { flush() }' Cargo.toml \
    | while read -r f; do mkdir -p "$(dirname "$f")"; [ -e "$f" ] || echo 'fn main() {}' > "$f"; done; \
    cargo build --release --locked; \
    rm -rf src

# Application layer. `touch` makes cargo rebuild the crate even if the copied sources carry
# mtimes older than the stub build's artifacts.
COPY src ./src
COPY migrations ./migrations
COPY openapi ./openapi
RUN set -eux; \
    touch src/main.rs src/lib.rs; \
    cargo build --release --locked --bin presignd

############################ runtime ############################
FROM debian:bookworm-slim

# DL3008 (pin apt package versions) is ignored on purpose: bookworm's archive keeps only the
# current revision of each package, so a pinned version stops building as soon as Debian ships
# a (security) update; the base image tag pins the release, and every rebuild picks up fixes.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --gid 10001 presignd; \
    useradd --uid 10001 --gid 10001 --home-dir /var/lib/presignd --no-create-home \
        --shell /usr/sbin/nologin presignd; \
    mkdir -p /var/lib/presignd /etc/presignd; \
    chown presignd:presignd /var/lib/presignd

COPY --from=builder /app/target/release/presignd /usr/local/bin/presignd

WORKDIR /var/lib/presignd
USER 10001:10001

EXPOSE 8443
ENV PRESIGND_CONFIG=/etc/presignd/presignd.toml \
    PRESIGND_SERVER__LISTEN=0.0.0.0:8443

# /healthz over plain HTTP (behind a TLS-terminating proxy); if presignd serves native TLS on
# 8443, the second probe answers instead (-k: the certificate names the public host, not
# 127.0.0.1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null http://127.0.0.1:8443/healthz || curl -fsSk -o /dev/null https://127.0.0.1:8443/healthz || exit 1"]

ENTRYPOINT ["presignd"]
CMD ["serve"]
