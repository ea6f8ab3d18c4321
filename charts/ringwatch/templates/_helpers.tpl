{{/*
The chart's name (nameOverride wins).
*/}}
{{- define "ringwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the release name when it already contains the chart's name, else
<release>-<name> (fullnameOverride wins). Truncated to leave room for "-operator".
*/}}
{{- define "ringwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The operator's Deployment, Service, PodMonitor, RBAC objects: <fullname>-operator.
*/}}
{{- define "ringwatch.operatorName" -}}
{{- printf "%s-operator" (include "ringwatch.fullname" .) }}
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "ringwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ringwatch.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
chart label value: <name>-<version>.
*/}}
{{- define "ringwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The image the operator runs (tag default: the chart's appVersion).
*/}}
{{- define "ringwatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
The namespace the operator watches and the chart's MonitorCluster lives in.
*/}}
{{- define "ringwatch.clusterNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace }}
{{- end }}

{{/*
Labels common to everything the chart makes, without app.kubernetes.io/name.
*/}}
{{- define "ringwatch.commonLabels" -}}
helm.sh/chart: {{ include "ringwatch.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringwatch
{{- end }}

{{/*
Standard labels of the chart's objects that are not the operator's (the MonitorCluster).
*/}}
{{- define "ringwatch.labels" -}}
app.kubernetes.io/name: {{ include "ringwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "ringwatch.commonLabels" . }}
{{- end }}

{{/*
The operator pods' selector. app.kubernetes.io/name=ringwatch-operator is load-bearing: the
brokers' NetworkPolicy admits pods with this label (in any namespace) to their admin port. It
is therefore fixed, not derived from nameOverride.
*/}}
{{- define "ringwatch.operatorSelectorLabels" -}}
app.kubernetes.io/name: ringwatch-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Standard labels of the operator's objects.
*/}}
{{- define "ringwatch.operatorLabels" -}}
{{ include "ringwatch.operatorSelectorLabels" . }}
app.kubernetes.io/component: operator
{{ include "ringwatch.commonLabels" . }}
{{- end }}

{{/*
The rules the operator needs on the objects it watches and makes (everything but its leader
Lease, which is a Role in the release namespace). A ClusterRole when it watches every
namespace, a Role in watchNamespace otherwise.
*/}}
{{- define "ringwatch.operatorRules" -}}
- apiGroups: ["ringwatch.dev"]
  resources: ["monitorclusters"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["ringwatch.dev"]
  resources: ["monitorclusters/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["ringwatch.dev"]
  resources: ["monitorclusters/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets", "configmaps", "serviceaccounts", "services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Brokers are rolled one at a time by deleting their pods (OnDelete StatefulSet).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "daemonsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["podmonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
