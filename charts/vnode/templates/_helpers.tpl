{{/* Names and labels shared by every template. */}}

{{- define "vnode.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "vnode.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "vnode.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vnode.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vnode.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vnode.labels" -}}
helm.sh/chart: {{ include "vnode.chart" . }}
{{ include "vnode.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "vnode.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vnode.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Node vnode registers: node.name, else the release name. */}}
{{- define "vnode.nodeName" -}}
{{- default .Release.Name .Values.node.name }}
{{- end }}

{{- define "vnode.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "vnode.vmPKISecretName" -}}
{{- default (printf "%s-vm-pki" (include "vnode.fullname" .)) .Values.vmPKI.existingSecret }}
{{- end }}

{{/* A taint in the form `vnode run --taint` and `kubectl taint` take: key[=value]:Effect. */}}
{{- define "vnode.taint" -}}
{{- .key }}{{ if .value }}={{ .value }}{{ end }}:{{ .effect }}
{{- end }}
