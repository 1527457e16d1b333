{{/* ------------------------------------------------------------------ names */}}

{{- define "shopmesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-wide prefix: the release name, with the chart name unless it already contains it. */}}
{{- define "shopmesh.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of one workload's objects (Deployment, Service, ServiceAccount, …): <fullname>-<key>.
     Call with (dict "root" $ "key" "order"). */}}
{{- define "shopmesh.workloadName" -}}
{{- printf "%s-%s" (include "shopmesh.fullname" .root) .key | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* In-cluster FQDN of one workload's Service. */}}
{{- define "shopmesh.workloadHost" -}}
{{- printf "%s.%s.svc.%s" (include "shopmesh.workloadName" .) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* Istio (SPIFFE) principal of one workload's ServiceAccount. */}}
{{- define "shopmesh.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .root.Values.istio.trustDomain .root.Release.Namespace (include "shopmesh.workloadName" .) -}}
{{- end -}}

{{/* The effective settings of one workload: serviceDefaults with its entry merged over them.
     Call with (dict "root" $ "key" "order"); returns YAML (use fromYaml). */}}
{{- define "shopmesh.svc" -}}
{{- $entry := index .root.Values.services .key -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.serviceDefaults) (deepCopy $entry) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* ----------------------------------------------------------------- labels */}}

{{- define "shopmesh.commonLabels" -}}
helm.sh/chart: {{ include "shopmesh.chart" . }}
app.kubernetes.io/part-of: shopmesh
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ include "shopmesh.imageTag" . | quote }}
{{- end -}}

{{/* Labels of release-wide objects (not one workload's). */}}
{{- define "shopmesh.labels" -}}
{{ include "shopmesh.commonLabels" . }}
app.kubernetes.io/name: {{ include "shopmesh.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Selector labels of one workload. (dict "root" $ "key" k "svc" $svc) */}}
{{- define "shopmesh.selectorLabels" -}}
app.kubernetes.io/name: {{ .svc.binary }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* All labels of one workload's objects. (dict "root" $ "key" k "svc" $svc) */}}
{{- define "shopmesh.workloadLabels" -}}
{{ include "shopmesh.commonLabels" .root }}
{{ include "shopmesh.selectorLabels" . }}
app.kubernetes.io/component: {{ .key }}
{{- end -}}

{{/* ------------------------------------------------------------------ image */}}

{{- define "shopmesh.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* repository:tag or repository:tag@digest. Call with an image dict and a default tag. */}}
{{- define "shopmesh.imageRef" -}}
{{- $tag := default .defaultTag .image.tag -}}
{{- if .image.digest -}}
{{- printf "%s:%s@%s" .image.repository $tag .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.image" -}}
{{- include "shopmesh.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) -}}
{{- end -}}

{{/* checkov skips that follow from how an image is referenced, as a list of
     "CHECK=reason" strings. Call with an image dict. */}}
{{- define "shopmesh.imageCheckovSkips" -}}
{{- $skips := list -}}
{{- if not .digest -}}
{{- $skips = append $skips "CKV_K8S_43=Images are addressed by immutable CI tags (sha-<commit> or vX.Y.Z); set the image digest value to pin by digest" -}}
{{- end -}}
{{- if ne .pullPolicy "Always" -}}
{{- $skips = append $skips "CKV_K8S_15=Tags are immutable, so IfNotPresent runs the same bytes as Always without making restarts and scale-ups depend on the registry" -}}
{{- end -}}
{{- toYaml $skips -}}
{{- end -}}

{{/* Render a list of "CHECK=reason" strings as checkov skip annotations. */}}
{{- define "shopmesh.checkovAnnotations" -}}
{{- range $i, $skip := . }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end -}}

{{/* -------------------------------------------------------------- security */}}

{{- define "shopmesh.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 65532 }}
runAsGroup: {{ .gid | default 65532 }}
fsGroup: {{ .gid | default 65532 }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "shopmesh.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 65532 }}
runAsGroup: {{ .gid | default 65532 }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Pod annotations every pod of the release carries (Istio sidecar mode). */}}
{{- define "shopmesh.istioPodAnnotations" -}}
{{- if and .Values.istio.enabled .Values.istio.nativeSidecars }}
sidecar.istio.io/nativeSidecar: "true"
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------------ datastores */}}

{{- define "shopmesh.postgresSecretName" -}}
{{- if .Values.postgresql.auth.existingSecret -}}
{{- .Values.postgresql.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "shopmesh.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.redisSecretName" -}}
{{- if .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "shopmesh.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "shopmesh.internalTokenSecretName" -}}
{{- if .Values.security.internalToken.existingSecret -}}
{{- .Values.security.internalToken.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "shopmesh.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* True ("true") when the chart must create its own Secret. */}}
{{- define "shopmesh.createSecret" -}}
{{- if or (not .Values.postgresql.auth.existingSecret) (and .Values.redis.auth.enabled (not .Values.redis.auth.existingSecret)) (not .Values.security.internalToken.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/* What every gRPC service reads to check callers (platform AuthSettings): the service
     credential, where the JWKS is, what tokens must say. The migrate command reads the
     same settings, so the migration Jobs get these too. */}}
{{- define "shopmesh.serviceAuthEnv" -}}
{{- $provider := .Values.security.jwksProvider -}}
{{- $p := index .Values.services $provider -}}
- name: INTERNAL_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "shopmesh.internalTokenSecretName" . }}
      key: {{ .Values.security.internalToken.key }}
- name: AUTH_GRPC_URL
  value: {{ printf "http://%s:%d" (include "shopmesh.workloadHost" (dict "root" . "key" $provider)) (int $p.port) | quote }}
{{ include "shopmesh.jwtEnv" . }}
{{- end -}}

{{- define "shopmesh.jwtEnv" -}}
- name: JWT_ISSUER
  value: {{ .Values.security.jwt.issuer | quote }}
- name: JWT_AUDIENCE
  value: {{ .Values.security.jwt.audience | quote }}
{{- end -}}

{{/* Keys of every gRPC service, as a YAML list. */}}
{{- define "shopmesh.grpcKeys" -}}
{{- $keys := list -}}
{{- range $key := keys .Values.services | sortAlpha -}}
{{- if eq (index $.Values.services $key).kind "grpc" -}}
{{- $keys = append $keys $key -}}
{{- end -}}
{{- end -}}
{{- toYaml $keys -}}
{{- end -}}

{{/* DATABASE_URL env vars for one database: DB_PASSWORD from the Secret, then the URL
     referencing it with Kubernetes' $(VAR) expansion. (dict "root" $ "database" "shop_order") */}}
{{- define "shopmesh.databaseEnv" -}}
{{- $pg := .root.Values.postgresql -}}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "shopmesh.postgresSecretName" .root }}
      key: {{ $pg.auth.passwordKey }}
- name: DATABASE_URL
  value: {{ printf "postgres://%s:$(DB_PASSWORD)@%s:%d/%s?sslmode=%s" $pg.auth.username $pg.host (int $pg.port) .database $pg.sslMode | quote }}
{{- end -}}

{{/* REDIS_URL (and REDIS_PASSWORD when auth is on). */}}
{{- define "shopmesh.redisEnv" -}}
{{- $r := .Values.redis -}}
{{- $cred := "" -}}
{{- if $r.auth.enabled }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "shopmesh.redisSecretName" . }}
      key: {{ $r.auth.passwordKey }}
{{- $cred = printf "%s:$(REDIS_PASSWORD)@" $r.auth.username -}}
{{- end }}
{{- if eq $r.mode "sentinel" }}
{{- if not $r.sentinel.hosts }}
{{- fail "redis.mode=sentinel needs redis.sentinel.hosts (host:port of every Sentinel)" }}
{{- end }}
{{- $scheme := ternary "rediss-sentinel" "redis-sentinel" $r.tls -}}
{{- $seed := first $r.sentinel.hosts -}}
{{- $query := list (printf "sentinelServiceName=%s" $r.sentinel.masterSet) -}}
{{- range rest $r.sentinel.hosts }}
{{- $query = append $query (printf "node=%s" .) -}}
{{- end }}
- name: REDIS_URL
  value: {{ printf "%s://%s%s/%d?%s" $scheme $cred $seed (int $r.database) (join "&" $query) | quote }}
{{- else }}
- name: REDIS_URL
  value: {{ printf "%s://%s%s:%d/%d" (ternary "rediss" "redis" $r.tls) $cred $r.host (int $r.port) (int $r.database) | quote }}
{{- end }}
{{- end -}}

{{/* Keys of the workloads that list `key` among their callers' targets, i.e. the callees
     of `key`, as a YAML list. (dict "root" $ "key" "order") */}}
{{- define "shopmesh.callees" -}}
{{- $callees := list -}}
{{- range $k, $entry := .root.Values.services -}}
{{- if has $.key ($entry.callers | default list) -}}
{{- $callees = append $callees $k -}}
{{- end -}}
{{- end -}}
{{- toYaml $callees -}}
{{- end -}}

{{/* NetworkPolicy egress rules every pod of the release needs besides DNS: the OTLP
     collector (when configured) and istiod (the sidecar's xDS and certificates). */}}
{{- define "shopmesh.platformEgress" -}}
{{- $np := .Values.networkPolicy -}}
{{- if .Values.observability.otlpEndpoint }}
- to:
    {{- toYaml $np.otlp.to | nindent 4 }}
  ports:
    {{- range $np.otlp.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- if .Values.istio.enabled }}
- to:
    {{- toYaml $np.istiod.to | nindent 4 }}
  ports:
    {{- range $np.istiod.ports }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
{{- end }}
{{- end -}}

{{/* ---------------------------------------------------------------- backup */}}

{{/* Space-separated databases of every service. */}}
{{- define "shopmesh.databases" -}}
{{- $dbs := list -}}
{{- range $key := keys .Values.services | sortAlpha -}}
{{- with (index $.Values.services $key).database -}}
{{- $dbs = append $dbs . -}}
{{- end -}}
{{- end -}}
{{- join " " $dbs -}}
{{- end -}}

{{- define "shopmesh.backupClaimName" -}}
{{- default (printf "%s-backups" (include "shopmesh.fullname" .)) .Values.backup.persistence.existingClaim -}}
{{- end -}}

{{/* The pod spec of the backup CronJob and the restore Job. (dict "root" $ "script" "backup.sh" "env" list) */}}
{{- define "shopmesh.backupPodSpec" -}}
{{- $root := .root -}}
{{- $b := $root.Values.backup -}}
{{- $pg := $root.Values.postgresql -}}
restartPolicy: Never
serviceAccountName: {{ include "shopmesh.fullname" $root }}-backup
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "shopmesh.podSecurityContext" (dict "uid" $b.runAsUser "gid" $b.runAsGroup) | nindent 2 }}
containers:
  - name: {{ trimSuffix ".sh" .script }}
    image: {{ include "shopmesh.imageRef" (dict "image" $b.image "defaultTag" "18-bookworm") }}
    imagePullPolicy: {{ $b.image.pullPolicy }}
    command: ["/bin/bash", {{ printf "/scripts/%s" .script | quote }}]
    env:
      - name: PGHOST
        value: {{ $pg.host | quote }}
      - name: PGPORT
        value: {{ $pg.port | quote }}
      - name: PGUSER
        value: {{ $pg.auth.username | quote }}
      - name: PGSSLMODE
        value: {{ $pg.sslMode | quote }}
      - name: PGPASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ include "shopmesh.postgresSecretName" $root }}
            key: {{ $pg.auth.passwordKey }}
      - name: BACKUP_DIR
        value: /backups
      - name: HOME
        value: /tmp
      {{- with .env }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    resources:
      {{- toYaml $b.resources | nindent 6 }}
    securityContext:
      {{- include "shopmesh.containerSecurityContext" (dict "uid" $b.runAsUser "gid" $b.runAsGroup) | nindent 6 }}
    volumeMounts:
      - name: scripts
        mountPath: /scripts
        readOnly: true
      - name: backups
        mountPath: /backups
      - name: tmp
        mountPath: /tmp
volumes:
  - name: scripts
    configMap:
      name: {{ include "shopmesh.fullname" $root }}-backup-scripts
      defaultMode: 0555
  - name: backups
    {{- if $b.volume }}
    {{- toYaml $b.volume | nindent 4 }}
    {{- else }}
    persistentVolumeClaim:
      claimName: {{ include "shopmesh.backupClaimName" $root }}
    {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
{{- end -}}

{{- define "shopmesh.backupCheckovSkips" -}}
{{- $skips := include "shopmesh.imageCheckovSkips" .Values.backup.image | fromYamlArray -}}
{{- $skips = append $skips "CKV_K8S_35=pg_dump and pg_restore read the password from PGPASSWORD (libpq); it comes from a Secret via secretKeyRef" -}}
{{- toYaml $skips -}}
{{- end -}}
