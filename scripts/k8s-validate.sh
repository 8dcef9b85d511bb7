#!/usr/bin/env bash
# Validates k8s/ offline. k8s/ is a kustomize base (k8s/base) with two overlays, one per way to
# run the pods: overlays/statefulset (stable names; k8s/kustomization.yaml points at it) and
# overlays/deployment (`kubectl scale`, replaceable pods). Checked:
#   1. every manifest file against the Kubernetes OpenAPI schemas (kubernetes-validate --strict:
#      unknown fields are errors), for the newest and an older Kubernetes version;
#   2. the rendered output of each overlay and of k8s/ itself (`kubectl kustomize`) the same way,
#      for both versions; k8s/ renders exactly what overlays/statefulset does;
#   3. in each rendering, the invariants between the files that no schema knows: WRS_JOIN names
#      every replica (StatefulSet) or the headless Service that publishes not-ready pods
#      (Deployment, whose pods advertise their pod IP and remove dead members), the grace
#      period outlasts WRS_SHUTDOWN_TIMEOUT, the probes hit /readyz and /healthz, the pod runs
#      as the image's non-root user on a read-only root filesystem, every WRS_* key is a real
#      setting (README.md's table, or a table of docs/operations.md), the PDB keeps a majority,
#      the Ingress host is WRS_PUBLIC_URL's; the StatefulSet keeps WRS_DATA_DIR on a volume of
#      each pod's own (volumeClaimTemplates, writable through fsGroup) and the Deployment keeps
#      memory only (WRS_DATA_DIR ""); and the two pod templates differ only in WRS_DOMAIN and
#      the StatefulSet's data volume mount.
# Rendering needs kubectl (offline: `kubectl kustomize` talks to no cluster); without it the
# script fails, since the overlays are not meaningful as separate files.
# The validator is installed (PyPI) into target/ops-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "k8s-validate: $*"; }
VENV=target/ops-venv
KV_VERSION='1.37.*'
OLDEST=1.28.0     # the oldest Kubernetes minor version the manifests are checked against
OVERLAYS=(statefulset deployment)

if ! "$VENV/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    say "installing kubernetes-validate into $VENV"
    mkdir -p target
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION" \
        || { say "FAIL: pip install kubernetes-validate"; exit 1; }
fi
KV=$VENV/bin/kubernetes-validate
command -v kubectl >/dev/null || { say "FAIL: kubectl is needed to render the overlays (kubectl kustomize)"; exit 1; }

# Every manifest file (patches are whole, valid ConfigMaps too); kustomization.yaml files are
# not Kubernetes objects.
mapfile -t FILES < <(find k8s -name '*.yaml' ! -name kustomization.yaml | sort)
[ "${#FILES[@]}" -gt 0 ] || { say "FAIL: no manifests in k8s/"; exit 1; }
for o in "${OVERLAYS[@]}"; do
    [ -f "k8s/overlays/$o/kustomization.yaml" ] || { say "FAIL: k8s/overlays/$o/kustomization.yaml is missing"; exit 1; }
done

failed=0
for version in "" "$OLDEST"; do
    args=(--strict --quiet)
    [ -n "$version" ] && args+=(-k "$version")
    if "$KV" "${args[@]}" "${FILES[@]}"; then
        say "ok   schemas (${version:-newest}): ${#FILES[@]} files: ${FILES[*]}"
    else
        say "FAIL schemas (${version:-newest})"; failed=1
    fi
done

# Each overlay rendered, validated for both versions; k8s/ must render what overlays/statefulset does.
mkdir -p target
RENDERED=()
for dir in "${OVERLAYS[@]/#/k8s/overlays/}" k8s; do
    out=target/k8s-rendered-$(basename "$dir").yaml
    if ! kubectl kustomize "$dir" >"$out" 2>target/k8s-kustomize.err; then
        sed 's/^/    /' target/k8s-kustomize.err
        say "FAIL kubectl kustomize $dir"; failed=1; continue
    fi
    ok=1
    for version in "" "$OLDEST"; do
        args=(--strict --quiet)
        [ -n "$version" ] && args+=(-k "$version")
        "$KV" "${args[@]}" "$out" || { say "FAIL schemas of kubectl kustomize $dir (${version:-newest})"; ok=0; failed=1; }
    done
    [ "$ok" = 1 ] && say "ok   kubectl kustomize $dir renders $(grep -c '^kind:' "$out") resources, valid for newest and $OLDEST" \
        || true
    [ "$dir" = k8s ] || RENDERED+=("$out")
done
if [ -f target/k8s-rendered-k8s.yaml ] && [ -f target/k8s-rendered-statefulset.yaml ]; then
    if cmp -s target/k8s-rendered-k8s.yaml target/k8s-rendered-statefulset.yaml; then
        say "ok   kubectl kustomize k8s/ renders the same as k8s/overlays/statefulset"
    else
        say "FAIL kubectl kustomize k8s/ differs from k8s/overlays/statefulset"; failed=1
    fi
fi
[ "${#RENDERED[@]}" = "${#OVERLAYS[@]}" ] || { say "FAIL (an overlay did not render)"; exit 1; }

if "$VENV/bin/python" - "${RENDERED[@]}" <<'EOF'
import json, re, sys, yaml

errors = []
def need(cond, what):
    print(("k8s-validate: ok   " if cond else "k8s-validate: FAIL ") + what)
    if not cond:
        errors.append(what)

known = set(re.findall(r"`(WRS_[A-Z_]+)`", open("README.md").read()))
# ... and the settings in the first column of a table in docs/operations.md.
for line in open("docs/operations.md"):
    if line.startswith("|"):
        known |= set(re.findall(r"`(WRS_[A-Z_]+)`", line.split("|")[1]))
containerfile = open("Containerfile").read()
image_user = re.findall(r"^USER\s+(\d+)", containerfile, re.M)
# The image's own WRS_DATA_DIR (ENV ... WRS_DATA_DIR=/data) and its VOLUMEs.
image_data_dir = (re.findall(r"\bWRS_DATA_DIR=(\S*)", containerfile) or [""])[-1]
image_volumes = set()
for v in re.findall(r"^VOLUME\s+(.+)$", containerfile, re.M):
    v = v.strip()
    image_volumes |= set(json.loads(v)) if v.startswith("[") else set(v.split())
templates = {}

def check(rendered):
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    by = {}
    for d in docs:
        by.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    workloads = [(k, n) for k in ("StatefulSet", "Deployment") for n in by.get(k, {})]
    need(len(workloads) == 1, f"{rendered}: exactly one wrs workload ({workloads})")
    if len(workloads) != 1:
        return
    kind, name = workloads[0]
    tag = f"[{kind}] "
    print(f"k8s-validate: --- {rendered}: {kind} {name}")
    wl = by[kind][name]
    spec, pod = wl["spec"], wl["spec"]["template"]["spec"]
    c = pod["containers"][0]
    cm = by["ConfigMap"]["wrs-config"]["data"]
    env = {e["name"]: e for e in c.get("env", [])}
    replicas = spec["replicas"]
    api_port, node_port = int(cm["WRS_API_PORT"]), int(cm["WRS_NODE_PORT"])
    labels = spec["template"]["metadata"]["labels"]
    need(all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
         tag + "the selector matches the pod template's labels")

    # Every WRS_* name is a setting wrs knows (README.md's configuration table).
    used = set(cm) | {n for n in env if n.startswith("WRS_")}
    need(not (used - known), tag + f"every WRS_* variable is documented in README.md or docs/operations.md (unknown: {sorted(used - known) or 'none'})")

    join = [a.strip() for a in cm["WRS_JOIN"].split(",")]
    def peers_service(svc):
        s = by.get("Service", {}).get(svc)
        if s is None:
            return False
        p = s["spec"]
        return (p.get("clusterIP") == "None" and p.get("publishNotReadyAddresses") is True
                and {q["port"] for q in p["ports"]} == {api_port, node_port}
                and all(labels.get(k) == v for k, v in p.get("selector", {}).items()))
    if kind == "StatefulSet":
        svc = spec["serviceName"]
        want = [f"{name}-{i}.{svc}:{api_port}" for i in range(replicas)]
        need(spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady",
             tag + "pods start one after another (OrderedReady): wrs-0 starts the cluster, the others join")
        need(join == want, tag + f"WRS_JOIN lists the {replicas} replicas via {svc}: {cm['WRS_JOIN']}")
        need(env["WRS_DOMAIN"].get("value") == f"$(POD_NAME).{svc}"
             and env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name",
             tag + "WRS_DOMAIN is the pod's name under the headless Service (downward API)")
        # Durable: WRS_DATA_DIR on a PersistentVolume of each pod's own.
        data_dir = env["WRS_DATA_DIR"].get("value") if "WRS_DATA_DIR" in env else cm.get("WRS_DATA_DIR", image_data_dir)
        claims = {t["metadata"]["name"]: t["spec"] for t in spec.get("volumeClaimTemplates", [])}
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        m = mounts.get(data_dir or "")
        claim = claims.get(m["name"]) if m else None
        need(bool(data_dir) and claim is not None and not m.get("readOnly", False),
             tag + f"WRS_DATA_DIR {data_dir!r} is the mount of a volumeClaimTemplate "
             f"({m['name'] if m else 'no mount there'}): each pod keeps its own Raft log and identity")
        need(claim is not None and claim.get("accessModes") == ["ReadWriteOnce"]
             and "storage" in claim.get("resources", {}).get("requests", {}),
             tag + f"the claim is ReadWriteOnce with a storage request "
             f"({(claim or {}).get('resources', {}).get('requests', {}).get('storage', 'none')})")
        need(image_user and str(pod.get("securityContext", {}).get("fsGroup")) == image_user[-1].split(":")[0],
             tag + f"fsGroup {pod.get('securityContext', {}).get('fsGroup')} = the image's user: the volume is writable")
        need(not (set(mounts) - {data_dir}) and not pod.get("volumes"),
             tag + f"the data volume is the only mount (read-only root filesystem elsewhere): {sorted(mounts)}")
        need(bool(image_data_dir) and image_data_dir in image_volumes,
             tag + f"the Containerfile's WRS_DATA_DIR {image_data_dir!r} is a VOLUME ({sorted(image_volumes)})")
    else:
        svc = join[0].rsplit(":", 1)[0]
        need(len(join) == 1 and join[0] == f"{svc}:{api_port}" and svc in by.get("Service", {}),
             tag + f"WRS_JOIN is one Service name and the API port, resolving to every pod: {cm['WRS_JOIN']}")
        need(env["WRS_DOMAIN"].get("value") == "$(POD_IP)"
             and env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP",
             tag + "WRS_DOMAIN is the pod's IP (downward API status.podIP): what the Service resolves to")
        remove = int(cm.get("WRS_NODE_REMOVE_AFTER", "60000"))
        down = int(cm.get("WRS_NODE_DOWN_AFTER", "5000"))
        need("WRS_NODE_REMOVE_AFTER" in cm and remove >= 0 and remove > down,
             tag + f"WRS_NODE_REMOVE_AFTER {cm.get('WRS_NODE_REMOVE_AFTER', 'unset')} is set, not -1, and above "
             f"WRS_NODE_DOWN_AFTER {down}: dead pods (new IP each) do not stay voters")
        ru = spec.get("strategy", {}).get("rollingUpdate", {})
        need(spec.get("strategy", {}).get("type") == "RollingUpdate"
             and str(ru.get("maxSurge")) == "1" and str(ru.get("maxUnavailable")) == "0",
             tag + "rollout: one new pod at a time, ready before an old one stops (maxSurge 1, maxUnavailable 0)")
        need(not pod.get("volumes") and not c.get("volumeMounts"),
             tag + "no volumes (state is in memory; any pod is replaceable)")
        # The image defaults to WRS_DATA_DIR=/data, on the read-only root filesystem here
        # (Kubernetes mounts nothing for an image's VOLUME): the Deployment must turn it off.
        dd = env["WRS_DATA_DIR"].get("value") if "WRS_DATA_DIR" in env else cm.get("WRS_DATA_DIR")
        need(dd is not None and dd.strip() == "",
             tag + f"WRS_DATA_DIR is set to empty (memory only; the image's default {image_data_dir!r} "
             f"would be the read-only root filesystem): {dd!r}")
    need(peers_service(svc),
         tag + f"Service {svc} is headless, publishes not-ready pods, has the api and peer ports, selects the pods")
    need(env["WRS_CLUSTER_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "wrs-secrets",
         tag + "WRS_CLUSTER_SECRET comes from the Secret wrs-secrets")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(ports == {"api": api_port, "peer": node_port}, tag + "container ports match WRS_API_PORT and WRS_NODE_PORT")

    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pause = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    shutdown_s = int(cm["WRS_SHUTDOWN_TIMEOUT"]) / 1000
    grace = pod["terminationGracePeriodSeconds"]
    need(grace > pause + shutdown_s + 1,
         tag + f"terminationGracePeriodSeconds {grace} > preStop {pause} s + WRS_SHUTDOWN_TIMEOUT {shutdown_s:g} s + 1 s")
    need(c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz",
         tag + "readiness probe on /readyz, liveness probe on /healthz")

    psc, csc = pod["securityContext"], c["securityContext"]
    need(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot") is True
         and image_user and str(psc.get("runAsUser")) == image_user[-1].split(":")[0],
         tag + f"runs as non-root uid {psc.get('runAsUser')} (the Containerfile's USER {image_user[-1] if image_user else '?'})")
    need(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
         and csc.get("capabilities", {}).get("drop") == ["ALL"],
         tag + "read-only root filesystem, no privilege escalation, all capabilities dropped")
    res = c["resources"]
    need(all(k in res.get("requests", {}) for k in ("cpu", "memory")) and "memory" in res.get("limits", {}),
         tag + "resource requests (cpu, memory) and a memory limit are set")

    # The PDB keeps a Raft majority: maxUnavailable 1 does at every size from 3 (`kubectl
    # scale` included); a minAvailable must be a majority of `replicas`.
    pdb = by["PodDisruptionBudget"]["wrs"]["spec"]
    if "maxUnavailable" in pdb:
        ok, how = str(pdb["maxUnavailable"]) == "1" and replicas >= 3, f"maxUnavailable {pdb['maxUnavailable']}"
    else:
        ok, how = pdb.get("minAvailable") == replicas // 2 + 1, f"minAvailable {pdb.get('minAvailable')}"
    need(ok, tag + f"PDB {how} keeps a majority of {replicas} pods")
    need(all(labels.get(k) == v for k, v in pdb["selector"]["matchLabels"].items()), tag + "the PDB selects the pods")
    ing = by["Ingress"]["wrs"]["spec"]
    need(bool(ing.get("tls")) and ing["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] in by["Service"],
         tag + "Ingress terminates TLS and routes to the API Service")
    need(cm.get("WRS_PUBLIC_URL") == f"wss://{ing['rules'][0]['host']}",
         tag + f"WRS_PUBLIC_URL {cm.get('WRS_PUBLIC_URL')} names the Ingress host over wss")
    templates[kind] = (replicas, spec["template"])

for rendered in sys.argv[1:]:
    check(rendered)

# The two pod templates are one pod, apart from how it names itself and the StatefulSet's data
# volume: compare them with WRS_DOMAIN, the downward-API variable it is made of and the volume
# mounts taken out.
print("k8s-validate: --- both workloads")
if {"StatefulSet", "Deployment"} <= set(templates):
    def strip(t):
        t = json.loads(json.dumps(t))
        c = t["spec"]["containers"][0]
        c["env"] = [e for e in c["env"] if e["name"] not in ("WRS_DOMAIN", "POD_NAME", "POD_IP")]
        c.pop("volumeMounts", None)
        return t
    a, b = strip(templates["StatefulSet"][1]), strip(templates["Deployment"][1])
    diff = sorted(k for k in set(a["spec"]) | set(b["spec"]) if a["spec"].get(k) != b["spec"].get(k))
    need(a == b, "the StatefulSet's and the Deployment's pod templates differ only in WRS_DOMAIN and the data volume mount"
         + (f" (also in: {diff or 'metadata'})" if a != b else ""))
else:
    need(False, f"both a StatefulSet and a Deployment rendered (got {sorted(templates)})")

# The examples (not applied by any kustomization): the autoscaler targets the StatefulSet
# on a metric wrs exposes, and scales down one pod at a time; the dashboard's queries use
# only metric names wrs exposes (the metrics table in docs/operations.md).
print("k8s-validate: --- examples")
replicas = templates.get("StatefulSet", (3,))[0]
hpa = [d for d in (yaml.safe_load_all(open("k8s/examples/hpa.yaml"))) if d][0]["spec"]
metric_names = set(re.findall(r"`(wrs_[a-z_]+)`", open("docs/operations.md").read()))
hpa_metric = hpa["metrics"][0]["pods"]["metric"]["name"]
target = hpa["scaleTargetRef"]
need(target.get("apiVersion") == "apps/v1" and target.get("kind") in ("StatefulSet", "Deployment")
     and target.get("name") == "wrs" and hpa["minReplicas"] >= replicas and hpa_metric in metric_names,
     f"HPA example scales {target.get('kind')} wrs from {hpa['minReplicas']} on {hpa_metric}")
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
