{{- /* The app.kubernetes.io/name label; nameOverride changes it. */ -}}
{{- define "stratus.name" -}}
{{- default "stratus-operator" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- /* Names of the namespaced objects. Not prefixed with the release name: one operator runs
per cluster (or per set of watched namespaces), and its ServiceAccount's name is what an admin
grants and audits. fullnameOverride sets it outright. */ -}}
{{- define "stratus.fullname" -}}
{{- default (include "stratus.name" .) .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "stratus.labels" -}}
app.kubernetes.io/name: {{ include "stratus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stratus.selector" -}}
app.kubernetes.io/name: {{ include "stratus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- /* A digest pins the exact image and wins over the tag, which defaults to appVersion. */ -}}
{{- define "stratus.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "stratus.peeringHook" -}}
helm.sh/hook: post-install,post-upgrade
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}
