"""deploy/kubernetes/ is what `rekey deploy kubernetes` generates, every document is valid for the
Kubernetes API, and the manifests keep the promises of the deployment: probes, resources,
non-root pods, disruption budgets, each pod with exactly its secrets, and NetworkPolicies that
let only the bus identities reach NATS, each carrying its subject permissions."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import ValidationError, latest_version, validate

from rekey.deploy.kubernetes import (
    FOLDER,
    IDENTITY_LABEL,
    NAME_LABEL,
    kustomization,
    manifests,
    nats_nodes,
    render,
)
from rekey.deploy.secrets import files_for, make_secrets, setting_files
from rekey.stack.busdeploy import init_deployment
from shared.bus.identities import IDENTITIES
from shared.settings import PROCESSES


def documents() -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def test_the_committed_manifests_are_what_the_code_generates():
    committed = {p.name: p.read_text() for p in FOLDER.glob("*.yaml")}
    assert committed == render(), "run `rekey deploy kubernetes --write`"


def test_every_document_is_valid_for_the_kubernetes_api():
    for doc in documents():
        validate(doc, latest_version(), strict=True)


def test_the_validation_would_refuse_a_broken_document():
    deployment = of_kind("Deployment")["portal"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    with pytest.raises(ValidationError):
        validate(broken, latest_version(), strict=True)


def pods() -> dict[str, dict[str, Any]]:
    return {**of_kind("Deployment"), **of_kind("StatefulSet")}


def test_every_process_runs_as_a_deployment_and_nats_as_three_jetstream_nodes():
    assert set(of_kind("Deployment")) == {*PROCESSES, "portal"}
    for name, deployment in of_kind("Deployment").items():
        assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["serve", name]
    nats = of_kind("StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    assert nats["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--config", "/run/secrets/$(POD_NAME).conf"]


def test_every_pod_has_probes_resources_and_runs_unprivileged():
    for name, workload in pods().items():
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] > 0, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert probe in container, (name, probe)
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), name
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys(), name
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name


def test_every_rekey_pod_is_probed_on_its_own_readyz_and_livez_at_the_health_port():
    bus = of_kind("ConfigMap")["rekey-bus"]["data"]
    port = int(bus["REKEY_HEALTH_PORT"])
    assert bus["REKEY_HEALTH_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address
    for name, deployment in of_kind("Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert {"name": "health", "containerPort": port} in container["ports"], name
        assert "rekey-bus" in [ref["configMapRef"]["name"] for ref in container["envFrom"]], name
        probes = {probe: container[probe]["httpGet"]
                  for probe in ("readinessProbe", "livenessProbe", "startupProbe")}
        assert probes == {"readinessProbe": {"path": "/readyz", "port": "health"},
                          "livenessProbe": {"path": "/livez", "port": "health"},
                          "startupProbe": {"path": "/livez", "port": "health"}}, name


def test_every_pod_has_a_disruption_budget():
    budgets = of_kind("PodDisruptionBudget")
    for name in pods():
        assert budgets[name]["spec"]["selector"]["matchLabels"] == {NAME_LABEL: name}
        assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_each_pod_mounts_its_own_secret_holding_exactly_its_files():
    generators = {g["name"]: g["files"] for g in kustomization([])["secretGenerator"]}
    for name, deployment in of_kind("Deployment").items():
        spec = deployment["spec"]["template"]["spec"]
        secret = next(v for v in spec["volumes"] if v["name"] == "secrets")["secret"]
        assert secret["secretName"] == f"{name}-secrets"
        assert sorted(Path(f).name for f in generators[secret["secretName"]]) == sorted(files_for(name))
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        files = {k: Path(v).name for k, v in env.items() if k in setting_files(name)}
        assert files == setting_files(name), name


def test_the_secret_files_are_those_rekey_bus_init_and_rekey_deploy_secrets_make(tmp_path):
    init_deployment(tmp_path / "bus", nodes=nats_nodes())
    make_secrets(tmp_path / "secrets")
    for generator in kustomization([])["secretGenerator"]:
        for path in generator["files"]:
            assert (tmp_path / path).is_file(), (generator["name"], path)


def test_only_the_bus_identities_reach_nats_and_no_rekey_pod_reaches_another():
    policies = of_kind("NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}
    admitted = policies["nats"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"]
    assert admitted == [{"key": IDENTITY_LABEL, "operator": "In",
                         "values": [n for n in IDENTITIES if n != "device"]}]
    for name, policy in policies.items():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert peer["podSelector"] == {"matchLabels": {NAME_LABEL: "nats"}}, name


def test_each_identity_s_policy_carries_its_nats_permissions():
    policies = of_kind("NetworkPolicy")
    for name, identity in IDENTITIES.items():
        if name == "device":
            continue
        policy = policies[f"identity-{name}"]
        assert policy["spec"]["podSelector"] == {"matchLabels": {IDENTITY_LABEL: name}}
        notes = policy["metadata"]["annotations"]
        assert notes["rekey.io/nats-publish"].split(",") == list(identity.publish)
        assert notes["rekey.io/nats-subscribe"].split(",") == list(identity.subscribe)
        assert notes["rekey.io/nats-publish-deny"] == ",".join(identity.publish_deny)
    for name, deployment in of_kind("Deployment").items():
        assert deployment["spec"]["template"]["metadata"]["labels"][IDENTITY_LABEL] == name


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_kustomization_renders_with_the_deployment_s_files(tmp_path):
    base = tmp_path / "kubernetes"
    shutil.copytree(FOLDER, base)
    init_deployment(base / "bus", nodes=nats_nodes())
    make_secrets(base / "secrets")
    rendered = subprocess.run(["kubectl", "kustomize", str(base)], capture_output=True, text=True,
                              check=False)
    assert rendered.returncode == 0, rendered.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(rendered.stdout)]
    assert kinds.count("Secret") == len(kustomization([])["secretGenerator"])
    assert all(doc["metadata"].get("namespace") == "rekey"
               for doc in yaml.safe_load_all(rendered.stdout) if doc["kind"] != "Namespace")


def test_every_rekey_variable_in_the_manifests_is_a_setting_and_no_secret_is_in_clear():
    from shared.settings import FILE_SUFFIX, Settings, secret_fields

    known = {f"REKEY_{field.upper()}" for field in Settings.model_fields}
    files = {f"REKEY_{field.upper()}{FILE_SUFFIX}" for field in secret_fields()}
    variables = [k for c in of_kind("ConfigMap").values() for k in c["data"]]
    variables += [e["name"] for d in pods().values()
                  for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])]
    for variable in variables:
        if variable.startswith("REKEY_"):
            assert variable in known | files, f"{variable} is not read by any code"
        assert variable not in {f"REKEY_{field.upper()}" for field in secret_fields()}, variable
