#!/usr/bin/env bash
# Starts Throng on this server with docker compose and prints the URL:
# writes .env with random secrets the first time (kept afterwards), builds the
# images from source, starts the stack and waits until every service is
# healthy. Settings: see the top of docker-compose.yml (PUBLIC_IP, HTTP_PORT,
# TLS_DIR, ...), from the environment or .env.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
COMPOSE=(docker compose)
docker compose version >/dev/null 2>&1 || COMPOSE=(docker-compose)

secret() { head -c 36 /dev/urandom | base64 | tr -d '/+=' ; }
if [[ ! -f .env ]]; then
  umask 077
  cat > .env <<ENV
THRONG_TOKEN_SECRET=$(secret)
THRONG_API_KEY=$(secret)
THRONG_ADMIN_KEY=$(secret)
THRONG_NODE_TOKEN=$(secret)
THRONG_TURN_SECRET=$(secret)
ENV
  echo "compose-up: wrote .env with new secrets (keep it: join links are signed with them)" >&2
elif ! grep -q '^THRONG_NODE_TOKEN=' .env; then
  # An .env from before the media nodes' gRPC token.
  echo "THRONG_NODE_TOKEN=$(secret)" >> .env
  echo "compose-up: added THRONG_NODE_TOKEN to .env" >&2
fi
if ! grep -q '^THRONG_TURN_SECRET=' .env; then
  # An .env from before the TURN relay.
  echo "THRONG_TURN_SECRET=$(secret)" >> .env
  echo "compose-up: added THRONG_TURN_SECRET to .env" >&2
fi
"${COMPOSE[@]}" up -d --build --wait
PUBLIC_IP=${PUBLIC_IP:-$(sed -n 's/^PUBLIC_IP=//p' .env)}
HTTP_PORT=${HTTP_PORT:-$(sed -n 's/^HTTP_PORT=//p' .env)}
echo "Throng is up: http://${PUBLIC_IP:-127.0.0.1}:${HTTP_PORT:-8080}/"
echo "admin key: $(sed -n 's/^THRONG_ADMIN_KEY=//p' .env)  (GET /admin/nodes with header x-admin-key)"
