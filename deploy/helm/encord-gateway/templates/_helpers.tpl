{{/* Names, labels, the checks that fail a render, and the callers written as TOML. */}}

{{- define "encord-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "encord-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "encord-gateway.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "encord-gateway.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "encord-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "encord-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "encord-gateway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "encord-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "encord-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "encord-gateway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "encord-gateway.sshKeySecret" -}}
{{- default (printf "%s-ssh-key" (include "encord-gateway.fullname" .)) .Values.sshKey.existingSecret -}}
{{- end -}}

{{/* The Secret that holds the state URL, and its key; empty when the gateway keeps memory://. */}}
{{- define "encord-gateway.stateSecret" -}}
{{- if .Values.state.existingSecret -}}
{{- .Values.state.existingSecret -}}
{{- else if .Values.state.url -}}
{{- printf "%s-state" (include "encord-gateway.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "encord-gateway.stateSecretKey" -}}
{{- if .Values.state.existingSecret -}}{{ .Values.state.existingSecretKey }}{{- else -}}url{{- end -}}
{{- end -}}

{{- define "encord-gateway.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.preStopSleepSeconds (ceil .Values.gracePeriod) -}}
{{- if .Values.terminationGracePeriodSeconds -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- else -}}
{{- add $needed 5 -}}
{{- end -}}
{{- end -}}

{{/* Settings that cannot work: the render fails with one message, before any pod is made. */}}
{{- define "encord-gateway.validate" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- if not (include "encord-gateway.stateSecret" .) -}}
{{- fail (printf "replicaCount is %d, but no state store is shared: set state.url (redis://HOST:PORT/DB) or state.existingSecret, so that request ids and the get-or-create lock hold across replicas" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.state.url (not (regexMatch "^rediss?://" .Values.state.url)) -}}
{{- fail (printf "replicaCount is %d, but state.url is not redis:// or rediss://: memory:// and sqlite:/// are not shared between pods" (int .Values.replicaCount)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.tls.clientCASecret (not .Values.tls.existingSecret) -}}
{{- fail "tls.clientCASecret (mutual TLS) needs tls.existingSecret: the gateway's own certificate and key" -}}
{{- end -}}
{{- $needed := add .Values.preStopSleepSeconds (ceil .Values.gracePeriod) -}}
{{- if and .Values.terminationGracePeriodSeconds (le (int .Values.terminationGracePeriodSeconds) (int $needed)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + gracePeriod (%d), or in-flight calls are killed before they drain" (int .Values.terminationGracePeriodSeconds) (int $needed)) -}}
{{- end -}}
{{- end -}}

{{/* One TOML value: a string, boolean, number, array or inline table (the shapes of [[callers]]). */}}
{{- define "encord-gateway.tomlValue" -}}
{{- $v := . -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- /* Helm reads every YAML number as a float; a whole one is written as an integer (burst, max_in_flight). */ -}}
{{- if eq (float64 $v) (floor $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "encord-gateway.tomlValue" $e }}{{ end }}]
{{- else if kindIs "map" $v -}}
{ {{- range $i, $k := keys $v | sortAlpha }}{{ if $i }},{{ end }} {{ $k }} = {{ include "encord-gateway.tomlValue" (get $v $k) }}{{ end }} }
{{- else -}}
{{- fail (printf "callers: a value of kind %s cannot be written as TOML" (kindOf $v)) -}}
{{- end -}}
{{- end -}}

{{- define "encord-gateway.callersToml" -}}
# The callers of the gateway; rendered by the chart from .Values.callers.
{{- range .Values.callers }}

[[callers]]
{{- $caller := . }}
{{- range $k := keys $caller | sortAlpha }}
{{ $k }} = {{ include "encord-gateway.tomlValue" (get $caller $k) }}
{{- end }}
{{- end }}
{{ end -}}

{{/* The container's environment: the state store's URL from its Secret, and its Redis settings. */}}
{{- define "encord-gateway.env" -}}
{{- $stateSecret := include "encord-gateway.stateSecret" . -}}
{{- if $stateSecret }}
- name: ENCORD_GATEWAY_STATE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $stateSecret }}
      key: {{ include "encord-gateway.stateSecretKey" . }}
{{- end }}
{{- if .Values.state.passwordSecret }}
- name: ENCORD_GATEWAY_STATE_PASSWORD_FILE
  value: /etc/encord-gateway/state/{{ .Values.state.passwordKey }}
{{- end }}
{{- with .Values.state.prefix }}
- name: ENCORD_GATEWAY_STATE_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
