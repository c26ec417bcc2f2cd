#!/bin/sh
# Renders nginx's configuration from the environment and runs nginx in the
# foreground as an unprivileged user:
#   COORDINATORS  space-separated host:port of the coordinators (required)
#   TLS_DIR       directory with cert.pem and key.pem; when both exist, HTTPS
#                 is served on 8443 as well (default /etc/throng-proxy/tls)
set -eu
: "${COORDINATORS:?COORDINATORS must list the coordinators (host:port ...)}"
TLS_DIR=${TLS_DIR:-/etc/throng-proxy/tls}
CONF=/tmp/nginx
mkdir -p "$CONF"
{
  echo "upstream coordinators {"
  for c in $COORDINATORS; do echo "  server $c max_fails=1 fail_timeout=5s;"; done
  echo "}"
  echo "server {"
  echo "  listen 8080;"
  echo "  include /etc/throng-proxy/locations.conf;"
  echo "}"
  if [ -f "$TLS_DIR/cert.pem" ] && [ -f "$TLS_DIR/key.pem" ]; then
    echo "server {"
    echo "  listen 8443 ssl;"
    echo "  ssl_certificate $TLS_DIR/cert.pem;"
    echo "  ssl_certificate_key $TLS_DIR/key.pem;"
    echo "  ssl_protocols TLSv1.2 TLSv1.3;"
    echo "  include /etc/throng-proxy/locations.conf;"
    echo "}"
    echo "proxy: HTTPS on 8443 with $TLS_DIR/cert.pem" >&2
  fi
} > "$CONF/servers.conf"
exec nginx -e stderr -c /etc/throng-proxy/nginx.conf -g 'daemon off;'
