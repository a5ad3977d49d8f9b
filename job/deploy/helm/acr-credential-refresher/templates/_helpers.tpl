{{/*
The objects are those of the kustomize base (job/deploy/base, job/deploy/watch and the rrsa
component) at the same names; test/helm/equivalence.ts lists every way the two may differ.
*/}}

{{/* Labels on every object: the kustomize base's two, then Helm's. */}}
{{- define "refresher.labels" -}}
app.kubernetes.io/name: acr-credential-refresher
app.kubernetes.io/part-of: acr-credential-broker
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
Stops a render that cannot work, with one line naming the value and the fix. The names are fixed:
the refresher reads kube-system/acr-configuration and writes kube-system/acr-credential-status, and
RRSA trust policies name system:serviceaccount:kube-system:aliyun-acr-credential-helper.
*/}}
{{- define "refresher.validate" -}}
{{- if ne .Release.Namespace "kube-system" }}
{{- fail (printf "the release namespace is %q: install into kube-system (helm install ... -n kube-system), where the refresher's ConfigMaps and the add-on's ServiceAccount live" .Release.Namespace) }}
{{- end }}
{{- if not (regexMatch "^https?://[^\\s/]+" .Values.brokerUrl) }}
{{- fail "brokerUrl is not set to the broker's https:// URL; set it with --set brokerUrl=https://..." }}
{{- end }}
{{- if and .Values.secretPolicy (not (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "Kubernetes %s has no admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy (1.30+): upgrade the cluster, or set secretPolicy=false, knowing that the refresher's token can then change any Secret" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and .Values.configMap.create (empty .Values.AcrInstanceInfo) }}
{{- fail "AcrInstanceInfo is empty: list at least one registry (instanceId, regionId), or set configMap.create=false to keep the cluster's own acr-configuration" }}
{{- end }}
{{- end }}

{{/*
The CronJob's interval, which the refresher adds to expiringThreshold when it decides what to renew
(--schedule-interval, its default 5m being the manifests' schedule): scheduleInterval, else N minutes
from an every-N-minutes schedule; any other schedule must say it.
*/}}
{{- define "refresher.scheduleInterval" -}}
{{- if .Values.scheduleInterval -}}
{{ .Values.scheduleInterval }}
{{- else if regexMatch "^\\*/[0-9]+ \\* \\* \\* \\*$" .Values.schedule -}}
{{ regexReplaceAll "^\\*/([0-9]+) .*$" .Values.schedule "${1}" }}m
{{- else -}}
{{ fail (printf "schedule %q is not of the form \"*/N * * * *\": set scheduleInterval to the time between two runs (a Go duration, e.g. 1h)" .Values.schedule) }}
{{- end -}}
{{- end }}

{{- define "refresher.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- /* With a digest, the reference is written as kustomize writes it: repository:tag@digest. */ -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}:{{ $tag }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The pod of the CronJob's jobs and of the --watch Deployment: only the mode argument differs. */}}
{{- define "refresher.podSpec" -}}
serviceAccountName: aliyun-acr-credential-helper
{{- if eq .Values.mode "cronjob" }}
restartPolicy: Never
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: refresher
    image: {{ include "refresher.image" . }}
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      {{- if eq .Values.mode "watch" }}
      - --watch
      {{- else }}
      - --once
      {{- $interval := include "refresher.scheduleInterval" . }}
      {{- if ne $interval "5m" }}
      - --schedule-interval
      - {{ $interval }}
      {{- end }}
      {{- end }}
      {{- if not .Values.configMap.create }}
      - --broker-url={{ .Values.brokerUrl }}
      {{- end }}
    {{- if eq .Values.mode "watch" }}
    # --metrics-addr (default :9102): /metrics for Prometheus, /healthz and /readyz for the probes.
    ports:
      - name: metrics
        containerPort: 9102
        protocol: TCP
    # Live while its event loop answers; ready once its first full reconcile has completed.
    livenessProbe:
      httpGet:
        path: /healthz
        port: metrics
      periodSeconds: 20
      timeoutSeconds: 5
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: metrics
      periodSeconds: 10
      timeoutSeconds: 5
    {{- end }}
    env:
      - name: LOG_LEVEL
        value: {{ .Values.logLevel }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: ["ALL"]
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    volumeMounts:
      - name: broker-token
        mountPath: /var/run/secrets/acr-credential-broker
        readOnly: true
      - name: tmp
        mountPath: /tmp
volumes:
  # The token the broker verifies (audience = the broker's `audience` setting), and with RRSA the one
  # the broker exchanges with AssumeRoleWithOIDC (audience sts.aliyuncs.com).
  - name: broker-token
    projected:
      sources:
        - serviceAccountToken:
            audience: {{ .Values.audience }}
            expirationSeconds: 3600
            path: token
        {{- if .Values.enableRRSA }}
        - serviceAccountToken:
            audience: sts.aliyuncs.com
            expirationSeconds: 3600
            path: sts-token
        {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
{{- end }}
