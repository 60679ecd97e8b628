"""`ifsr <command> --help`: every flag has help text and shows its default (issue 31)."""
from __future__ import annotations

import argparse

import yaml
from cli_helpers import ROOT

from ifsr.cli import HelpFormatter, build_parser


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action, = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_flag_has_help_and_shows_its_default():
    """Before: evaluate --split, search --query and every baselines flag had no text, and no defaults showed."""
    missing, no_default = [], []
    for name, parser in subparsers().items():
        formatter = HelpFormatter(f"ifsr {name}")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = f"{name} {'/'.join(action.option_strings)}"
            if not (action.help or "").strip():
                missing.append(flag)
                continue
            shown = formatter._expand_help(action)
            if not (action.required or isinstance(action, argparse._StoreTrueAction) or "default" in shown):
                no_default.append(flag)
            if action.default not in (None, False) and not action.required:
                assert "default" in shown, (flag, shown)
    assert not missing, f"flags without help: {missing}"
    assert not no_default, f"flags whose help shows no default: {no_default}"
    assert "(default: test)" in subparsers()["evaluate"].format_help()


def test_replicate_preset_help_lists_every_preset():
    """Before: gpu-quick was missing."""
    presets = list(yaml.safe_load((ROOT / "configs" / "presets.yaml").read_text()))
    assert "gpu-quick" in presets
    text = " ".join(subparsers()["replicate"].format_help().split())
    for name in presets:
        assert f" {name} " in text.replace("|", " | "), (name, text)
