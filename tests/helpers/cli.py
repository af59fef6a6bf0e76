"""Running a command-line tool the way a user does, for tests of the error policy."""
from __future__ import annotations


def cli_error(main, args: list[str], capsys) -> str:
    """Run ``main(args)`` that must refuse its input: exit status 2, no traceback, and a last stderr
    line ``<prog>: error: ...`` naming the problem, which is returned."""
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, f"exit status {code}, stderr: {err}"
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert ": error: " in last, err
    return last
