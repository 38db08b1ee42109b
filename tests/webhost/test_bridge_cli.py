"""signer-bridge's command line: a bad option or a --v1-link it must not replace is status 2."""

from __future__ import annotations

import pytest

from webhost import bridge


def test_v1_link_never_replaces_a_file_that_is_not_a_symlink(tmp_path, capsys) -> None:
    precious = tmp_path / "precious"
    precious.write_text("keep me")
    assert bridge.main(["--device", "loop://", "--v1-link", str(precious)]) == 2
    assert precious.read_text() == "keep me"
    assert "exists and is not a symlink" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--ack-timeout=0", "--answer-timeout=nan", "--baud=x"])
def test_bad_options_are_usage_errors(option) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bridge.main(["--device", "loop://", option])
    assert exit_info.value.code == 2
