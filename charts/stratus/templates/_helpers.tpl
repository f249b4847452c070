{{- define "stratus.name" -}}stratus-operator{{- end -}}

{{- define "stratus.labels" -}}
app.kubernetes.io/name: stratus-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stratus.selector" -}}
app.kubernetes.io/name: stratus-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stratus.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
