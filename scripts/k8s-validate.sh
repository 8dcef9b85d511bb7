#!/usr/bin/env bash
# Validates k8s/ offline:
#   1. every manifest against the Kubernetes OpenAPI schemas (kubernetes-validate --strict:
#      unknown fields are errors), for the newest and an older Kubernetes version;
#   2. the kustomize output (`kubectl kustomize k8s/`, when kubectl is installed) the same way;
#   3. the invariants between the files that no schema knows: WRS_JOIN names every replica,
#      the grace period outlasts WRS_SHUTDOWN_TIMEOUT, the probes hit /readyz and /healthz,
#      the pod runs as the image's non-root user on a read-only root filesystem, every WRS_*
#      key is a real setting (README.md's table), the PDB keeps a majority.
# The validator is installed (PyPI) into target/ops-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "k8s-validate: $*"; }
VENV=target/ops-venv
KV_VERSION='1.37.*'
OLDEST=1.28.0     # the oldest Kubernetes minor version the manifests are checked against

if ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    say "installing kubernetes-validate into $VENV"
    mkdir -p target
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" \
        || { say "FAIL: pip install kubernetes-validate"; exit 1; }
fi
KV=$VENV/bin/kubernetes-validate

mapfile -t FILES < <(ls k8s/*.yaml k8s/examples/*.yaml | grep -v '/kustomization\.yaml$')
[ "${#FILES[@]}" -gt 0 ] || { say "FAIL: no manifests in k8s/"; exit 1; }

failed=0
for version in "" "$OLDEST"; do
    args=(--strict --quiet)
    [ -n "$version" ] && args+=(-k "$version")
    if "$KV" "${args[@]}" "${FILES[@]}"; then
        say "ok   schemas (${version:-newest}): ${FILES[*]}"
    else
        say "FAIL schemas (${version:-newest})"; failed=1
    fi
done

RENDERED=""
if command -v kubectl >/dev/null; then
    RENDERED=target/k8s-rendered.yaml
    if kubectl kustomize k8s/ >"$RENDERED" && "$KV" --strict --quiet "$RENDERED"; then
        say "ok   kubectl kustomize k8s/ renders $(grep -c '^kind:' "$RENDERED") valid resources"
    else
        say "FAIL kubectl kustomize k8s/"; failed=1; RENDERED=""
    fi
else
    say "note kubectl not installed: the kustomize rendering is not checked"
fi

if "$VENV/bin/python" - "$RENDERED" "${FILES[@]}" <<'EOF'
import re, sys, yaml

rendered, files = sys.argv[1], sys.argv[2:]
docs = []
for f in ([rendered] if rendered else files):
    with open(f) as fh:
        docs += [d for d in yaml.safe_load_all(fh) if d]
by = {}
for d in docs:
    by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
errors = []
def need(cond, what):
    print(("k8s-validate: ok   " if cond else "k8s-validate: FAIL ") + what)
    if not cond:
        errors.append(what)

sts = by["StatefulSet"]["wrs"]
spec, pod = sts["spec"], sts["spec"]["template"]["spec"]
c = pod["containers"][0]
cm = by["ConfigMap"]["wrs-config"]["data"]
env = {e["name"]: e for e in c.get("env", [])}
replicas, svc = spec["replicas"], spec["serviceName"]
peers = by["Service"][svc]["spec"]

# Every WRS_* name is a setting wrs knows (README.md's configuration table).
known = set(re.findall(r"`(WRS_[A-Z_]+)`", open("README.md").read()))
used = set(cm) | {n for n in env if n.startswith("WRS_")}
need(not (used - known), f"every WRS_* variable is documented in README.md (unknown: {sorted(used - known) or 'none'})")

join = [a.strip() for a in cm["WRS_JOIN"].split(",")]
want = [f"{sts['metadata']['name']}-{i}.{svc}:{cm['WRS_API_PORT']}" for i in range(replicas)]
need(spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady",
     "pods start one after another (OrderedReady): wrs-0 starts the cluster, the others join")
need(join == want, f"WRS_JOIN lists the {replicas} replicas via {svc}: {cm['WRS_JOIN']}")
need(env["WRS_DOMAIN"].get("value") == f"$(POD_NAME).{svc}"
     and env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
     "WRS_DOMAIN is the pod's name under the headless Service (downward API)")
need(env["WRS_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "wrs-secrets",
     "WRS_CLUSTER_SECRET comes from the Secret wrs-secrets")
need(peers.get("clusterIP") == "None" and peers.get("publishNotReadyAddresses") is True
     and {p["port"] for p in peers["ports"]} == {int(cm["WRS_API_PORT"]), int(cm["WRS_NODE_PORT"])},
     f"Service {svc} is headless, publishes not-ready pods, has the api and peer ports")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
need(ports == {"api": int(cm["WRS_API_PORT"]), "peer": int(cm["WRS_NODE_PORT"])},
     "container ports match WRS_API_PORT and WRS_NODE_PORT")

pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
shutdown_s = int(cm["WRS_SHUTDOWN_TIMEOUT"]) / 1000
grace = pod["terminationGracePeriodSeconds"]
need(grace > pause + shutdown_s + 1,
     f"terminationGracePeriodSeconds {grace} > preStop {pause} s + WRS_SHUTDOWN_TIMEOUT {shutdown_s:g} s + 1 s")
need(c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz",
     "readiness probe on /readyz, liveness probe on /healthz")

image_user = re.findall(r"^USER\s+(\d+)", open("Containerfile").read(), re.M)
psc, csc = pod["securityContext"], c["securityContext"]
need(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True
     and image_user and str(psc.get("runAsUser")) == image_user[-1].split(":")[0],
     f"runs as non-root uid {psc.get('runAsUser')} (the Containerfile's USER {image_user[-1] if image_user else '?'})")
need(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
     and csc.get("capabilities", {}).get("drop") == ["ALL"],
     "read-only root filesystem, no privilege escalation, all capabilities dropped")
res = c["resources"]
need(all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {}),
     "resource requests (cpu, memory) and a memory limit are set")

pdb = by["PodDisruptionBudget"]["wrs"]["spec"]
need(pdb["minAvailable"] == replicas // 2 + 1, f"PDB minAvailable {pdb['minAvailable']} is a majority of {replicas}")
ing = by["Ingress"]["wrs"]["spec"]
need(bool(ing.get("tls")) and ing["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] in by["Service"],
     "Ingress terminates TLS and routes to the API Service")
need(cm.get("WRS_PUBLIC_URL") == f"wss://{ing['rules'][0]['host']}",
     f"WRS_PUBLIC_URL {cm.get('WRS_PUBLIC_URL')} names the Ingress host over wss")

# The examples (not applied by kustomization.yaml): the autoscaler targets the StatefulSet
# on a metric wrs exposes, and scales down one pod at a time; the dashboard's queries use
# only metric names wrs exposes (the metrics table in docs/operations.md).
import json
hpa = [d for d in (yaml.safe_load_all(open("k8s/examples/hpa.yaml"))) if d][0]["spec"]
metric_names = set(re.findall(r"`(wrs_[a-z_]+)`", open("docs/operations.md").read()))
hpa_metric = hpa["metrics"][0]["pods"]["metric"]["name"]
need(hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "wrs"}
     and hpa["minReplicas"] >= replicas and hpa_metric in metric_names,
     f"HPA example scales StatefulSet wrs from {hpa['minReplicas']} on {hpa_metric}")
down = hpa["behavior"]["scaleDown"]["policies"]
need(all(p["type"] == "Pods" and p["value"] == 1 for p in down),
     "HPA example removes at most one pod per period (Raft membership changes one at a time)")
dash = json.load(open("k8s/examples/grafana-dashboard.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
used_metrics = set()
for e in exprs:
    used_metrics |= {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"wrs_[a-z_]+", e)}
need(exprs and not (used_metrics - metric_names),
     f"dashboard: {len(exprs)} queries over documented metrics (unknown: {sorted(used_metrics - metric_names) or 'none'})")
sys.exit(1 if errors else 0)
EOF
then :; else failed=1; fi

if [ "$failed" = 0 ]; then
    say "PASS"
else
    say "FAIL"
    exit 1
fi
