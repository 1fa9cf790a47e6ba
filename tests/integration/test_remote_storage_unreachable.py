"""Issue 24, item 2: a run folder or compare's output on an S3 endpoint where nothing listens is one
line and exit 2 (pyarrow's S3 client gives up after its retries: seconds, so not a unit test)."""

import signal

from banel_ray import compare
from banel_ray import run as run_cli


def _main(argv):
    old = signal.getsignal(signal.SIGTERM)
    try:
        return run_cli.main(argv)
    finally:
        signal.signal(signal.SIGTERM, old)


def test_unreachable_s3_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """Nothing listens on port 1: pyarrow's S3 client gives up after its retries (a few seconds)."""
    monkeypatch.setenv("BANEL_RAY_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert _main(["--set", "run_dir=s3://bucket/run", "--set", "runtime=local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run_dir s3://bucket/run cannot be written (") and "\n" not in err
    assert compare.main(["--methods", "banel", "--out", "s3://bucket/cmp"]) == 2
    assert capsys.readouterr().err.startswith("error: --out s3://bucket/cmp cannot be written (")
    assert not (tmp_path / "staging").exists()
