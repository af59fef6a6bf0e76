"""deploy/: the systemd unit and the Kubernetes manifests run with flags their programs accept and
validate against the Kubernetes schemas (the cpr-serve probes are checked on a running server in
test_serve.py)."""
import pytest

from cpr_engine.cli.serve import build_parser
from tests.helpers.deploy import DEPLOY, SYSTEMD_UNIT, kubernetes_command, probe_paths, systemd_command

DEPLOY_ROOT = DEPLOY.parent


def test_systemd_unit_restarts_and_runs_a_valid_command():
    command = systemd_command()
    assert command[0].endswith("/cpr-serve")
    args = build_parser().parse_args(command[1:])
    assert args.host == "127.0.0.1" and args.max_request_mb == 256
    assert "Restart=always" in SYSTEMD_UNIT.read_text()


def test_kubernetes_manifest_runs_a_valid_command_with_probes():
    command = kubernetes_command()
    assert command[0] == "cpr-serve"
    args = build_parser().parse_args(command[1:])
    assert args.host == "0.0.0.0" and args.http_port == 8000
    assert probe_paths() == {"/v2/health/live", "/v2/health/ready"}


KUBERNETES_VERSION = "1.31.0"
MANIFESTS = sorted(DEPLOY_ROOT.glob("**/*.yaml"))


def _documents(path):
    yaml = pytest.importorskip("yaml")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.mark.parametrize("path", MANIFESTS, ids=[str(p.relative_to(DEPLOY_ROOT)) for p in MANIFESTS])
def test_manifests_validate_against_the_kubernetes_schemas(path):
    """Every manifest under deploy/ is valid Kubernetes 1.31 (strict: no unknown fields), offline."""
    validator = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra) not installed")
    for doc in _documents(path):
        validator.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validation_is_strict():
    validator = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra) not installed")
    deployment = next(d for d in _documents(DEPLOY_ROOT / "kubernetes" / "triton.yaml") if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGett"] = {"path": "/"}
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_triton_deployment_serves_the_mounted_repository_with_health_probes():
    docs = {d["kind"]: d for d in _documents(DEPLOY_ROOT / "kubernetes" / "triton.yaml")}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "models")
    assert f"--model-repository={mount['mountPath']}" in container["args"] and mount["readOnly"]
    probes = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe", "startupProbe")}
    assert probes == {"/v2/health/live", "/v2/health/ready"}
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
