{{/*
Chart name, truncated to 63 characters.
*/}}
{{- define "fargate-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Fully qualified app name. It names the Deployment, the webhook Service and the MutatingWebhookConfiguration.
Kept at 56 characters so that suffixed names (-api, -tls, -ca, ...) stay within 63.
*/}}
{{- define "fargate-webhook.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 56 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "fargate-webhook.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's labels, shared by the pods of every component (webhook, scheduler, test). Never select pods
with these alone: they would cross components. Select with componentSelectorLabels.
*/}}
{{- define "fargate-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fargate-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fargate-webhook.labels" -}}
helm.sh/chart: {{ include "fargate-webhook.chart" . }}
{{ include "fargate-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fargate-webhook
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The pods of one component, and only those: Deployment selectors, Service selectors, the PDB, the
NetworkPolicies, affinity terms. Components: webhook (the webhook Deployment), scheduler (the
fargate-scheduler Deployment), test (the `helm test` pod).
  {{ include "fargate-webhook.componentSelectorLabels" (dict "context" $ "component" "webhook") }}
*/}}
{{- define "fargate-webhook.componentSelectorLabels" -}}
{{ include "fargate-webhook.selectorLabels" .context }}
app.kubernetes.io/component: {{ required "componentSelectorLabels: a component" .component }}
{{- end -}}

{{/* labels plus the component, for the pods of one component and the objects that belong to it. */}}
{{- define "fargate-webhook.componentLabels" -}}
{{ include "fargate-webhook.labels" .context }}
app.kubernetes.io/component: {{ required "componentLabels: a component" .component }}
{{- end -}}

{{- define "fargate-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fargate-webhook.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The webhook Service (port 443 -> webhook, 9090 -> metrics). */}}
{{- define "fargate-webhook.serviceName" -}}
{{- include "fargate-webhook.fullname" . -}}
{{- end -}}

{{/* The Secret holding tls.crt / tls.key: mounted as a directory, or (tls.mode=managed) written and read by
the webhook through the API. */}}
{{- define "fargate-webhook.tlsSecretName" -}}
{{- if eq .Values.tls.mode "existingSecret" -}}
{{- required "tls.existingSecret.name is required when tls.mode=existingSecret: the name of a kubernetes.io/tls Secret (keys tls.crt, tls.key) in the release namespace" .Values.tls.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "fargate-webhook.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The MutatingWebhookConfiguration (tls.mode=managed: the webhook patches its caBundle, by this name). */}}
{{- define "fargate-webhook.webhookConfigurationName" -}}
{{- .Values.webhook.configurationName | default (printf "0500-%s" (include "fargate-webhook.fullname" .)) -}}
{{- end -}}

{{/* cert-manager: the serving Certificate (named in cert-manager.io/inject-ca-from). */}}
{{- /*
Non-empty when the replica holding the Lease writes the webhook's namespaceSelector (generated
matchConditions with failurePolicy Ignore): the chart then renders none. With failurePolicy Fail the
chart keeps rendering it, so that the webhook's own pods can start before any replica has written it.
*/ -}}
{{- define "fargate-webhook.writesNamespaceSelector" -}}
{{- if and .Values.webhook.generateMatchConditions (eq .Values.webhook.failurePolicy "Ignore") -}}true{{- end -}}
{{- end -}}

{{- define "fargate-webhook.certificateName" -}}
{{- printf "%s-serving" (include "fargate-webhook.fullname" .) -}}
{{- end -}}

{{/* The DNS names kube-apiserver may use for the Service. */}}
{{- define "fargate-webhook.dnsNames" -}}
{{- $svc := include "fargate-webhook.serviceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.tls.clusterDomain) | toJson -}}
{{- end -}}

{{- define "fargate-webhook.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Container ports: fixed, the flags below bind them. */}}
{{- define "fargate-webhook.webhookPort" -}}{{ int .Values.containerPorts.webhook }}{{- end -}}
{{- define "fargate-webhook.opsPort" -}}{{ int .Values.containerPorts.metrics }}{{- end -}}
{{- define "fargate-webhook.apiPort" -}}{{ int .Values.containerPorts.api }}{{- end -}}
{{- define "fargate-webhook.schedulerOpsPort" -}}9091{{- end -}}
{{- define "fargate-webhook.tlsDir" -}}/etc/fargate-webhook/tls{{- end -}}
{{- define "fargate-webhook.stateDir" -}}/var/lib/fargate-webhook{{- end -}}

{{/* The scrape settings shared by a ServiceMonitor endpoint and a PodMonitor podMetricsEndpoint (the
metrics.serviceMonitor or metrics.podMonitor values). */}}
{{- define "fargate-webhook.scrapeEndpoint" -}}
path: /metrics
scheme: http
interval: {{ .interval }}
scrapeTimeout: {{ .scrapeTimeout }}
{{- with .relabelings }}
relabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .metricRelabelings }}
metricRelabelings:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
