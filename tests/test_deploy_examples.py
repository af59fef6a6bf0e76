"""examples/deploy: the systemd unit and the Kubernetes manifest run cpr-serve with flags it accepts
(the probes are checked against a running server in test_serve.py)."""
from cpr_engine.cli.serve import build_parser
from tests.helpers.deploy import SYSTEMD_UNIT, kubernetes_command, probe_paths, systemd_command


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
