{{/* Names, labels and switches shared by every template. */}}

{{- define "neuroscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "neuroscale.fullname" -}}
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

{{- define "neuroscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "neuroscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "neuroscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "neuroscale.labels" -}}
helm.sh/chart: {{ include "neuroscale.chart" . }}
{{ include "neuroscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: neuroscale
{{- end }}

{{- define "neuroscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "neuroscale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "neuroscale.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when operator pods must coordinate through kopf peering, else "". */}}
{{- define "neuroscale.peeringEnabled" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{- define "neuroscale.peeringName" -}}
{{- default (include "neuroscale.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The operator's rights, shared by the ClusterRole and the per-namespace Roles: exactly what it calls.
Argument: a dict with "clusterWide" (bool), which decides the kopf peering kind.
*/}}
{{- define "neuroscale.rbacRules" -}}
- apiGroups: ["neuroscale.io"]
  resources: ["modeldeployments", "inferencecascades", "cachetiers"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["neuroscale.io"]
  resources: ["modeldeployments/status", "inferencecascades/status", "cachetiers/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  # Read only: cold starts are measured from the model pods' creation and Ready times.
  resources: ["pods"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "create", "patch", "delete"]
# A routing cascade gateway reads its tiers' EndpointSlices through a Role the operator renders and binds to the
# gateway's ServiceAccount. RBAC lets the operator create that Role only because it holds the same verbs itself
# (no escalate or bind verb is granted), and only in the namespaces it watches.
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["kopf.dev"]
  resources: [{{ if .clusterWide }}"clusterkopfpeerings"{{ else }}"kopfpeerings"{{ end }}]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
