# Multi-stage build: compile in the Rust image, run from a slim Debian with only the binary.
#   docker build -t ddlgate .
#   docker run -p 6432:6432 -e DDLGATE__UPSTREAM__ADDRESS=db:5432 ddlgate
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Debug info is for local profiling; the image does not need it.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN cargo build --release --locked --bin ddlgate

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --shell /usr/sbin/nologin ddlgate
COPY --from=build /src/target/release/ddlgate /usr/local/bin/ddlgate
COPY config/ddlgate.toml /etc/ddlgate/ddlgate.toml
# Inside a container the network namespace is the boundary, so listen on all of its
# interfaces; outside containers the default stays 127.0.0.1.
ENV DDLGATE__SERVER__LISTEN=0.0.0.0:6432
USER ddlgate
EXPOSE 6432
# SIGTERM drains: open transactions may finish (server.drain_timeout_ms), then sessions close.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ddlgate"]
CMD ["serve", "--config", "/etc/ddlgate/ddlgate.toml"]
