{{/* The chart's name, or nameOverride. */}}
{{- define "script-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of every object: fullnameOverride, the release name if it holds the chart's name, or both. */}}
{{- define "script-operator.fullname" -}}
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

{{/* Labels that pick the operator's pods: the Deployment's selector and the metrics Service's. */}}
{{- define "script-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "script-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "script-operator.labels" -}}
{{ include "script-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Cluster-wide when asked, or when no namespace is listed. */}}
{{- define "script-operator.clusterWide" -}}
{{- if or .Values.clusterWide (empty .Values.namespaces) }}true{{ end }}
{{- end }}

{{/*
A CEL list of string literals, from a list of values. Refuses quotes and backslashes, which no
image, ServiceAccount or Secret name holds and which would end the literal.
*/}}
{{- define "script-operator.celList" -}}
{{- $items := list }}
{{- range .list }}
{{- if or (contains "'" (toString .)) (contains "\\" (toString .)) }}
{{- fail (printf "%s: %q holds a quote or a backslash, which no name may hold; remove it" $.where .) }}
{{- end }}
{{- $items = append $items (printf "'%s'" .) }}
{{- end }}
{{- printf "[%s]" (join ", " $items) }}
{{- end }}

{{/* A CEL string literal (see celList for what it refuses). */}}
{{- define "script-operator.celString" -}}
{{- if or (contains "'" (toString .value)) (contains "\\" (toString .value)) }}
{{- fail (printf "%s: %q holds a quote or a backslash; remove it" .where .value) }}
{{- end }}
{{- printf "'%s'" .value }}
{{- end }}

{{/* The operator's policy flags, one per line, from .Values.policy (the admission policy's source too). */}}
{{- define "script-operator.policyArgs" -}}
{{- $p := .Values.policy }}
{{- if empty $p.allowedImages }}
{{- fail "policy.allowedImages is empty: name at least one image a ScriptRun may use, e.g. busybox:1.36" }}
{{- end }}
{{- range $p.allowedImages }}
- --allowed-image={{ . }}
{{- end }}
{{- range $p.allowedServiceAccounts }}
- --allowed-service-account={{ . }}
{{- else }}
- --allowed-service-account=
{{- end }}
{{- range $p.allowedSecrets }}
- --allowed-secret={{ . }}
{{- else }}
- --allowed-secret=
{{- end }}
- --max-cpu={{ $p.maxCpu }}
- --max-memory={{ $p.maxMemory }}
- --allow-privileged-scripts={{ ternary "true" "false" (eq (toString $p.allowPrivilegedScripts) "true") }}
{{- end }}

{{/*
What the operator does in each namespace it serves: the rules of its Role there, or of its
ClusterRole when cluster-wide. deploy/rbac-namespaced.yaml holds the same rules with a comment
naming the code that needs each (tests/rbac_test.ts checks them against src/, and
tests/kustomize_test.ts checks that the chart renders the same).
*/}}
{{- define "script-operator.operatorRules" -}}
- apiGroups: ["script-operator.dev"]
  resources: ["scriptruns"]
  verbs: ["list", "watch"]
- apiGroups: ["script-operator.dev"]
  resources: ["scriptruns/status"]
  verbs: ["patch"]
- apiGroups: ["script-operator.dev"]
  resources: ["scriptruns/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["list", "watch", "get", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["list", "watch", "get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- end }}
