{{/* Names and labels shared by every object of the chart. */}}

{{- define "throng.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "throng.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "throng.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "throng.image" -}}
{{- printf "%s%s:%s" .root.Values.image.registry .image.repository (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}

{{/* Secret holding token-secret, api-key, admin-key. */}}
{{- define "throng.secretName" -}}
{{- default (printf "%s-secrets" (include "throng.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Secret and key holding the Redis URL. */}}
{{- define "throng.redisSecretName" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.existingSecret -}}
{{- .Values.redis.external.existingSecret -}}
{{- else -}}
{{- printf "%s-redis-url" (include "throng.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- define "throng.redisSecretKey" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.existingSecret -}}
{{- .Values.redis.external.existingSecretKey -}}
{{- else -}}
redis-url
{{- end -}}
{{- end -}}

{{/* Where secrets are mounted in the containers (read through THRONG_*_FILE). */}}
{{- define "throng.secretsDir" -}}/run/secrets/throng{{- end -}}
{{- define "throng.redisDir" -}}/run/secrets/throng-redis{{- end -}}
{{- define "throng.redisCaDir" -}}/run/secrets/throng-redis-ca{{- end -}}

{{/* THRONG_REDIS_CA_FILE, its mount and its volume, when redis.external.caSecret is set. */}}
{{- define "throng.redisCaEnv" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.caSecret }}
- name: THRONG_REDIS_CA_FILE
  value: {{ include "throng.redisCaDir" . }}/{{ .Values.redis.external.caSecretKey }}
{{- end }}
{{- end -}}
{{- define "throng.redisCaMount" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.caSecret }}
- name: redis-ca
  mountPath: {{ include "throng.redisCaDir" . }}
  readOnly: true
{{- end }}
{{- end -}}
{{- define "throng.redisCaVolume" -}}
{{- if and (eq .Values.redis.mode "external") .Values.redis.external.caSecret }}
- name: redis-ca
  secret:
    secretName: {{ .Values.redis.external.caSecret }}
    items:
      - key: {{ .Values.redis.external.caSecretKey }}
        path: {{ .Values.redis.external.caSecretKey }}
{{- end }}
{{- end -}}
{{/* The TURN URIs coordinators hand out: the external list, or the bundled
coturn's (UDP, TCP, and TLS when it has a certificate). */}}
{{- define "throng.turnUrls" -}}
{{- $t := .Values.turn -}}
{{- if eq $t.mode "external" -}}
{{- join "," $t.urls -}}
{{- else if eq $t.mode "bundled" -}}
{{- $b := $t.bundled -}}
{{- $urls := list (printf "turn:%s:%d?transport=udp" $b.host (int $b.port)) (printf "turn:%s:%d?transport=tcp" $b.host (int $b.port)) -}}
{{- if $b.tlsSecret -}}
{{- $urls = append $urls (printf "turns:%s:%d?transport=tcp" $b.host (int $b.tlsPort)) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}
{{- end -}}

{{/* THRONG_TURN_* of the coordinators, when turn.mode is not none. */}}
{{- define "throng.turnEnv" -}}
{{- if ne .Values.turn.mode "none" }}
- name: THRONG_TURN_URLS
  value: {{ include "throng.turnUrls" . | quote }}
- name: THRONG_TURN_SECRET_FILE
  value: {{ include "throng.secretsDir" . }}/turn-secret
- name: THRONG_TURN_TTL_SECS
  value: {{ .Values.turn.ttlSeconds | quote }}
{{- end }}
{{- end -}}

{{- define "throng.grpcTlsDir" -}}/run/secrets/throng-grpc-tls{{- end -}}

{{/* gRPC TLS between coordinators and media nodes, when grpcTls.secret is set:
the node's variables, the coordinator's, and the Secret's mount and volume. */}}
{{- define "throng.grpcTlsNodeEnv" -}}
{{- if .Values.grpcTls.secret }}
- name: THRONG_GRPC_TLS_CERT_FILE
  value: {{ include "throng.grpcTlsDir" . }}/tls.crt
- name: THRONG_GRPC_TLS_KEY_FILE
  value: {{ include "throng.grpcTlsDir" . }}/tls.key
- name: THRONG_GRPC_TLS_CLIENT_CA_FILE
  value: {{ include "throng.grpcTlsDir" . }}/ca.crt
{{- end }}
{{- end -}}
{{- define "throng.grpcTlsCoordinatorEnv" -}}
{{- if .Values.grpcTls.secret }}
- name: THRONG_NODE_TLS_CA_FILE
  value: {{ include "throng.grpcTlsDir" . }}/ca.crt
- name: THRONG_NODE_TLS_CERT_FILE
  value: {{ include "throng.grpcTlsDir" . }}/tls.crt
- name: THRONG_NODE_TLS_KEY_FILE
  value: {{ include "throng.grpcTlsDir" . }}/tls.key
- name: THRONG_NODE_TLS_SERVER_NAME
  value: {{ .Values.grpcTls.serverName | quote }}
{{- end }}
{{- end -}}
{{- define "throng.grpcTlsMount" -}}
{{- if .Values.grpcTls.secret }}
- name: grpc-tls
  mountPath: {{ include "throng.grpcTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}
{{- define "throng.grpcTlsVolume" -}}
{{- if .Values.grpcTls.secret }}
- name: grpc-tls
  secret:
    secretName: {{ .Values.grpcTls.secret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}
{{- define "throng.nodeTokenDir" -}}/run/secrets/throng-node{{- end -}}

{{/* A value from an existing Secret (kept across upgrades) or a new random one. */}}
{{- define "throng.keep" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{- define "throng.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "throng.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Refuses values the schema cannot express. */}}
{{- define "throng.validate" -}}
{{- $m := .Values.mediaNode -}}
{{- if gt (add $m.rtcBasePort $m.workers) 65536 -}}
{{- fail (printf "mediaNode.rtcBasePort %d with %d workers needs ports beyond 65535" (int $m.rtcBasePort) (int $m.workers)) -}}
{{- end -}}
{{- range $name, $port := dict "grpcPort" $m.grpcPort "httpPort" $m.httpPort -}}
{{- if and (ge (int $port) (int $m.rtcBasePort)) (lt (int $port) (int (add $m.rtcBasePort $m.workers))) -}}
{{- fail (printf "mediaNode.%s %d falls in the RTC ports %d..%d" $name (int $port) (int $m.rtcBasePort) (int (sub (add $m.rtcBasePort $m.workers) 1))) -}}
{{- end -}}
{{- end -}}
{{- if eq $m.grpcPort $m.httpPort -}}
{{- fail "mediaNode.grpcPort and mediaNode.httpPort must differ" -}}
{{- end -}}
{{- if and (eq .Values.redis.mode "external") (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) -}}
{{- fail "redis.mode=external needs redis.external.url or redis.external.existingSecret" -}}
{{- end -}}
{{- if and (eq .Values.turn.mode "external") (not .Values.turn.urls) -}}
{{- fail "turn.mode=external needs turn.urls" -}}
{{- end -}}
{{- if and (eq .Values.turn.mode "bundled") (not .Values.turn.bundled.host) -}}
{{- fail "turn.mode=bundled needs turn.bundled.host (the DNS name of the TURN nodes)" -}}
{{- end -}}
{{- if gt (int .Values.turn.bundled.relayPortMin) (int .Values.turn.bundled.relayPortMax) -}}
{{- fail "turn.bundled.relayPortMin exceeds relayPortMax" -}}
{{- end -}}
{{- if and .Values.coordinator.ingress.tls.enabled (not .Values.coordinator.ingress.tls.secretName) -}}
{{- fail "coordinator.ingress.tls.enabled needs coordinator.ingress.tls.secretName" -}}
{{- end -}}
{{- if eq (int .Values.metrics.coordinatorPort) (int .Values.coordinator.port) -}}
{{- fail "metrics.coordinatorPort must differ from coordinator.port" -}}
{{- end -}}
{{- if and .Values.coordinator.autoscaling.enabled (gt (int .Values.coordinator.autoscaling.minReplicas) (int .Values.coordinator.autoscaling.maxReplicas)) -}}
{{- fail "coordinator.autoscaling.minReplicas exceeds maxReplicas" -}}
{{- end -}}
{{- end -}}

{{/* OTLP span export of both services (nothing when tracing.otlpEndpoint is empty). */}}
{{- define "throng.tracingEnv" -}}
{{- with .Values.tracing.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end -}}
