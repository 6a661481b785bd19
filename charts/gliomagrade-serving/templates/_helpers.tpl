{{/* Common labels of every object. */}}
{{- define "gliomagrade.labels" -}}
app.kubernetes.io/name: gliomagrade-serving
app.kubernetes.io/part-of: gliomagrade
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The predictor's storageUri: explicit, or the registry version folder (the Triton repository). */}}
{{- define "gliomagrade.storageUri" -}}
{{- if .Values.model.storageUri -}}
{{ .Values.model.storageUri }}
{{- else -}}
{{ printf "%s/%s/versions/%v" (trimSuffix "/" .Values.model.registryUri) .Values.model.name .Values.model.version }}
{{- end -}}
{{- end -}}

{{/* Resources of one container, plus GPUs. */}}
{{- define "gliomagrade.resources" -}}
{{- $res := deepCopy .resources -}}
{{- if gt (int .gpu) 0 -}}
{{- $_ := set $res.limits "nvidia.com/gpu" (toString .gpu) -}}
{{- end -}}
{{ toYaml $res }}
{{- end -}}

{{/* The S3 annotations KServe reads. */}}
{{- define "gliomagrade.s3Annotations" -}}
serving.kserve.io/s3-endpoint: {{ .Values.s3.endpoint | quote }}
serving.kserve.io/s3-usehttps: {{ .Values.s3.useHttps | quote }}
serving.kserve.io/s3-region: {{ .Values.s3.region | quote }}
serving.kserve.io/s3-verifyssl: {{ .Values.s3.verifySsl | quote }}
{{- end -}}
