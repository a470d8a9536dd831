# ddlgate container image. Multi-stage: compile in the Rust image, run from a slim Debian with
# only the binary and the default configuration.
#
#   docker build -t ddlgate .
#   docker run -p 6432:6432 -p 9187:9187 -e DDLGATE__UPSTREAM__ADDRESS=db:5432 ddlgate
#   docker run -v ./my.toml:/etc/ddlgate/ddlgate.toml:ro ... ddlgate      (your configuration;
#                                                  the file must be readable by uid 10001)
#   docker run -v ./migrations:/m:ro ddlgate check /m/001.sql
#   docker run -v ./migrations:/m:ro -v ./deploy/configs/migration-endpoint.toml:/etc/ddlgate/ddlgate.toml:ro
#     ddlgate check --profile migrations --assume-in-transaction /m/001.sql   (one command; a
#     --profile must be defined in the configuration, and the shipped one defines none)
#
# Configuration, lowest to highest precedence (see README "Configuration"):
#   1. built-in defaults;
#   2. the TOML file named by DDLGATE_CONFIG (the binary reads this variable, like --config):
#      /etc/ddlgate/ddlgate.toml, the shipped config/ddlgate.toml unless you mount your own there;
#   3. DDLGATE__SECTION__KEY environment variables - including the two listen addresses set
#      below, which therefore win over server.listen / admin.listen in a mounted file: change
#      them with -e (or `env:` in Kubernetes), not in the file;
#   4. the --listen / --upstream flags.
# docker-compose and Kubernetes examples: deploy/.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the benchmark target; the manifest does not load without its file.
COPY benches ./benches
# The image needs neither debug info (profile.release has debug = 1 for local profiling) nor
# symbols: 13.7 MB instead of 87 MB (measured 2026-11-24; see deploy/README.md).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin ddlgate

FROM debian:bookworm-slim
# A fixed numeric, unprivileged user, so that Kubernetes' runAsNonRoot can verify it
# (deploy/kubernetes/sidecar.yaml runs it as 10001).
RUN groupadd --gid 10001 ddlgate \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin ddlgate
COPY --from=build /src/target/release/ddlgate /usr/local/bin/ddlgate
COPY config/ddlgate.toml /etc/ddlgate/ddlgate.toml
# Outside containers ddlgate listens on 127.0.0.1 only (server.listen 127.0.0.1:6432, admin.listen
# 127.0.0.1:9187): exposing a database proxy must be a deliberate choice. Inside a container
# the network namespace is the boundary, and a port bound to the container's loopback cannot
# be published, so the image listens on all of the container's interfaces. For a sidecar that
# only its pod should reach, set DDLGATE__SERVER__LISTEN=127.0.0.1:6432.
ENV DDLGATE_CONFIG=/etc/ddlgate/ddlgate.toml \
    DDLGATE__SERVER__LISTEN=0.0.0.0:6432 \
    DDLGATE__ADMIN__LISTEN=0.0.0.0:9187
USER 10001:10001
# 6432: PostgreSQL protocol. 9187: admin HTTP (/metrics, /healthz, /readyz, /status).
EXPOSE 6432 9187
# SIGTERM drains: no new sessions, idle ones close, open transactions may finish for
# server.drain_timeout_ms (30 s by default; give `docker stop -t` / terminationGracePeriodSeconds
# a little more), then the rest close. SIGINT or a second signal closes everything at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ddlgate"]
CMD ["serve"]
