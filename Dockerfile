# Throng's images, from one file (BuildKit builds only the stages a target needs):
#
#   docker build --target coordinator -t throng/coordinator:0.1.0 .
#   docker build --target media-node  -t throng/media-node:0.1.0 .
#   docker build --target proxy       -t throng/proxy:0.1.0 .    # nginx (compose)
#   docker build --target redis       -t throng/redis:0.1.0 .    # Debian's Redis (compose)
#
# `docker compose build` does all four. The binaries are built from source in
# the `build` stage, the same hermetic way as the README's build (the mediasoup
# worker's inputs come from Debian and the package registries, see
# scripts/prepare-mediasoup.sh). With `--build-arg BINARIES=prebuilt` the images
# take binaries already built on the host instead, from target/image-dist/
# (bin/coordinator, bin/media-node, web/): that is how the test suite builds
# images without compiling the workspace a second time.

ARG DEBIAN_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1.95-bookworm
ARG BINARIES=from-source
ARG VERSION=0.1.0

# ---- from source -------------------------------------------------------------
FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libssl-dev flatbuffers-compiler libflatbuffers-dev libabsl-dev pkg-config dpkg-dev \
      protobuf-compiler python3 python3-pip python3-venv nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup component add rustfmt
# rustfmt: mediasoup-sys's build script formats the code it generates from the
# worker's flatbuffers schemas with it, and the official image's toolchain is
# the "minimal" profile, without it.
WORKDIR /src
COPY . .
RUN scripts/prepare-mediasoup.sh \
 && (cd client-web && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build) \
 && cargo build --release --locked -p coordinator -p media-node \
 && mkdir -p /out/bin \
 && cp target/release/coordinator target/release/media-node /out/bin/ \
 && cp -r client-web/dist /out/web

FROM scratch AS from-source
COPY --from=build /out/ /out/

# ---- binaries the host already built -----------------------------------------
FROM scratch AS prebuilt
COPY target/image-dist/ /out/

FROM ${BINARIES} AS binaries

# ---- runtime base ------------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS runtime
ARG VERSION
LABEL org.opencontainers.image.source="https://example.invalid/throng" \
      org.opencontainers.image.licenses="ISC" \
      org.opencontainers.image.vendor="Throng" \
      org.opencontainers.image.version="${VERSION}"
# The binaries need only glibc and libgcc (the worker links OpenSSL, libuv and
# libstdc++ statically; `ldd` on them lists nothing else), so no package is added.
RUN groupadd --system --gid 10001 throng \
 && useradd --system --uid 10001 --gid throng --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin throng

# ---- coordinator -------------------------------------------------------------
FROM runtime AS coordinator
LABEL org.opencontainers.image.title="throng-coordinator" \
      org.opencontainers.image.description="Throng coordinator: web client, signalling, join queue, placement"
COPY --from=binaries /out/bin/coordinator /usr/local/bin/coordinator
COPY --from=binaries /out/web/ /usr/share/throng/web/
ENV THRONG_LISTEN=0.0.0.0:8080 \
    THRONG_WEB_ROOT=/usr/share/throng/web \
    THRONG_LOG_FORMAT=json
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/coordinator", "--probe", "/readyz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/coordinator"]

# ---- media node --------------------------------------------------------------
FROM runtime AS media-node
LABEL org.opencontainers.image.title="throng-media-node" \
      org.opencontainers.image.description="Throng media node: one mediasoup worker per core, driven over gRPC"
COPY --from=binaries /out/bin/media-node /usr/local/bin/media-node
ENV THRONG_RTC_LISTEN_IP=0.0.0.0 \
    THRONG_GRPC_LISTEN=0.0.0.0:50051 \
    THRONG_HTTP_LISTEN=0.0.0.0:9100 \
    THRONG_LOG_FORMAT=json
USER 10001:10001
EXPOSE 50051/tcp 9100/tcp
# /healthz, not /readyz: a draining node is healthy (it serves its rooms) and
# must not be restarted by a supervisor that acts on health.
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/media-node", "--probe", "/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/media-node"]

# ---- reverse proxy (compose) ---------------------------------------------------
FROM ${DEBIAN_IMAGE} AS proxy
ARG VERSION
LABEL org.opencontainers.image.title="throng-proxy" \
      org.opencontainers.image.description="nginx in front of Throng's coordinators (WebSocket upgrade, optional TLS)" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light curl \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default
COPY deploy/proxy/ /etc/throng-proxy/
EXPOSE 8080 8443
USER www-data
HEALTHCHECK --interval=5s --timeout=4s --retries=3 CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/proxy-healthz"]
ENTRYPOINT ["/etc/throng-proxy/entrypoint.sh"]

# ---- Redis (compose) -----------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS redis
ARG VERSION
LABEL org.opencontainers.image.title="throng-redis" \
      org.opencontainers.image.description="Debian's redis-server for Throng's registry" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
EXPOSE 6379
HEALTHCHECK --interval=3s --timeout=3s --retries=5 CMD ["redis-cli", "ping"]
ENTRYPOINT ["redis-server"]
CMD ["--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"]

# ---- TURN relay (compose) ------------------------------------------------------
FROM ${DEBIAN_IMAGE} AS turn
ARG VERSION
LABEL org.opencontainers.image.title="throng-turn" \
      org.opencontainers.image.description="Debian's coturn: TURN relays for Throng's participants behind restrictive firewalls" \
      org.opencontainers.image.version="${VERSION}"
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends coturn \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/turn/entrypoint.sh /usr/local/bin/throng-turn
USER turnserver
EXPOSE 3478/udp 3478/tcp 5349/tcp
HEALTHCHECK --interval=5s --timeout=4s --retries=3 CMD ["/usr/local/bin/throng-turn", "health"]
ENTRYPOINT ["/usr/local/bin/throng-turn"]
