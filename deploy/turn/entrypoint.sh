#!/bin/sh
# coturn for docker-compose.yml: TURN relays for browsers whose network
# blocks the media nodes' ports. The shared secret (coturn's REST-API
# scheme; the coordinators mint credentials with it) goes into a config
# file readable only by this user, never onto the command line.
#
#   TURN_SECRET   required, 32+ characters (THRONG_TURN_SECRET)
#   PUBLIC_IP     the address the media nodes announce: media is relayed
#                 only to it. It is not given to coturn as its external-ip:
#                 coturn would take the media nodes (same address) for
#                 itself and relay to its own container instead; the relay
#                 addresses it reports are only ever sent to the media
#                 nodes, which (ICE-lite) answer where packets come from
#   TURN_PORT     UDP and TCP listening port (default 3478)
#   TURN_TLS_PORT TLS listening port (default 5349), served when
#                 /etc/throng-turn/tls holds cert.pem and key.pem
#   RELAY_MIN / RELAY_MAX  relay ports (default 49160 / 49199)
set -eu
if [ "${1:-}" = health ]; then
  # A STUN binding request to the listening port (the image's HEALTHCHECK).
  exec turnutils_stunclient -p "${TURN_PORT:-3478}" 127.0.0.1
fi
: "${TURN_SECRET:?TURN_SECRET (THRONG_TURN_SECRET) is required}"
if [ "${#TURN_SECRET}" -lt 32 ]; then
  echo "throng-turn: TURN_SECRET must have at least 32 characters" >&2
  exit 2
fi
PUBLIC_IP=${PUBLIC_IP:-127.0.0.1}
conf=$(mktemp /tmp/turnserver.XXXXXX.conf)
chmod 600 "$conf"
{
  echo "listening-port=${TURN_PORT:-3478}"
  echo "min-port=${RELAY_MIN:-49160}"
  echo "max-port=${RELAY_MAX:-49199}"
  echo "realm=throng"
  echo "use-auth-secret"
  echo "static-auth-secret=${TURN_SECRET}"
  echo "fingerprint"
  echo "no-cli"
  echo "no-dtls"
  echo "no-tlsv1"
  echo "no-tlsv1_1"
  echo "no-multicast-peers"
  echo "no-software-attribute"
  echo "log-file=stdout"
  echo "simple-log"
  [ -n "${TURN_VERBOSE:-}" ] && echo "verbose"
  echo "userdb=/tmp/turndb"
  echo "pidfile=/tmp/turnserver.pid"
  # Media is relayed to the media nodes' announced address and nowhere
  # else: the relay cannot be used to reach the compose network or the host.
  echo "denied-peer-ip=0.0.0.0-255.255.255.255"
  echo "allowed-peer-ip=${PUBLIC_IP}"
  if [ -f /etc/throng-turn/tls/cert.pem ] && [ -f /etc/throng-turn/tls/key.pem ]; then
    echo "tls-listening-port=${TURN_TLS_PORT:-5349}"
    echo "cert=/etc/throng-turn/tls/cert.pem"
    echo "pkey=/etc/throng-turn/tls/key.pem"
  else
    echo "no-tls"
  fi
} > "$conf"
unset TURN_SECRET
exec turnserver -c "$conf"
