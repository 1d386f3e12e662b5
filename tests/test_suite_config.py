"""The suite's own rules: one variable names the fixtures folder; CI cannot skip it away.

Authors
 * BiCodec plugin authors 2026
"""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

TESTS = os.path.join(ROOT, "tests")


def _pytest(env_update, *args):
    """Runs pytest in a subprocess from the repository root."""
    env = dict(os.environ)
    env.update(env_update)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_missing_fixtures_skip_for_developers_and_fail_ci(tmp_path):
    """A missing BICODEC_SHARED folder: a clear skip without BICODEC_REQUIRE_SHARED,
    an error of the whole run (exit 4, nothing run) with it."""
    target = "tests/test_inference.py::test_properties"
    env = {"BICODEC_SHARED": str(tmp_path / "nowhere"), "BICODEC_REQUIRE_SHARED": "0"}
    developer = _pytest(env, target)
    assert developer.returncode == 0, developer.stdout + developer.stderr
    assert "1 skipped" in developer.stdout
    assert "nowhere" in developer.stdout and "set BICODEC_SHARED" in developer.stdout
    ci = _pytest({**env, "BICODEC_REQUIRE_SHARED": "1"}, target)
    assert ci.returncode == pytest.ExitCode.USAGE_ERROR, ci.stdout + ci.stderr
    assert "BICODEC_REQUIRE_SHARED is set" in ci.stdout + ci.stderr
    assert "skipped" not in ci.stdout and "passed" not in ci.stdout


def test_test_files_take_the_fixtures_folder_from_conftest():
    """No test file but conftest.py reads BICODEC_SHARED or spells the 'shared' folder:
    they use conftest's SHARED, REFERENCE, TINY_RELEASE, GOLDEN(_CLIPS), golden, clip_path."""
    pattern = re.compile(
        r"(environ(\.get)?[(\[] *|getenv\( *)[\"']BICODEC_SHARED|[\"'](\.\./)?shared[\"'/]"
    )
    offenders = []
    for name in sorted(os.listdir(TESTS)):
        if not name.endswith(".py") or name in ("conftest.py", os.path.basename(__file__)):
            continue
        with open(os.path.join(TESTS, name), encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
