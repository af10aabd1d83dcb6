"""The averaging benchmark's arguments: codec or JSON names, a pace fraction; usage errors for anything else."""

from __future__ import annotations

import argparse

import pytest

from scripts.bench.averaging import CODECS, _codecs, main


def test_codec_and_json_names_both_select_a_codec() -> None:
    parser = argparse.ArgumentParser()
    assert _codecs(parser, "sign1bit_ef,topk1pct,none") == ["sign1bit", "topk1pct", "none"]
    assert _codecs(parser, ",".join(CODECS)) == CODECS


@pytest.mark.parametrize("names", ["sign1bit,foo", "", ","])
def test_an_unknown_or_empty_codec_list_is_a_usage_error(names: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _codecs(argparse.ArgumentParser(), names)
    assert exit_info.value.code == 2
    assert "--codecs: unknown" in capsys.readouterr().err


@pytest.mark.parametrize("pace", ["1.5", "-0.1"])
def test_a_pace_outside_0_to_1_is_a_usage_error(pace: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--pace", pace])
    assert exit_info.value.code == 2
    assert "--pace must be in [0, 1]" in capsys.readouterr().err
