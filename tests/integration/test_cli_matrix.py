"""Every ``ftmech`` subcommand against malformed input, generated from the parser itself.

The walk starts at ``analyses.cli.build_parser()`` (nested commands such as ``data pcfg`` and ``tracr finetune``
included) and adds each study's ``reproduce`` parser, so a new command or flag is covered without editing this
file. For every count, fraction, number, path and choice flag it tries malformed values, and for every command an
unknown flag. Each case must exit with code 2, print exactly one line on stderr that names the flag and no
traceback, and leave a prepared directory (passed wherever a command needs an existing directory or file, and
holding every ``--out``) unchanged file by file. The checks are parse-level, so no case loads a model.
"""

import argparse
from pathlib import Path

import pytest

from analyses.cli import STUDIES, build_parser, main, study_parser
from tests.conftest import file_hashes

DIR = "<prepared>"  # replaced by the prepared directory when a case runs
MISSING = f"{DIR}/no/such/path"
BAD_VALUES = {  # validator name -> malformed values
    "positive_int": ("0", "-3", "2.5", "x"),
    "non_negative_int": ("-3", "x"),
    "random_seed": ("-1", "x", "99999999999999999999", "4294967296"),
    "int": ("x", "1.5"),
    "positive_float": ("0", "-1", "nan", "inf"),
    "non_negative_float": ("-1", "nan"),
    "fraction": ("1.5", "-0.1", "nan"),
    "output_dir": ("", " "),
    "existing_dir": (MISSING,),
    "existing_file": (MISSING,),
    "comma_list(non_negative_int)": ("0,-3", "1,x"),
    "comma_list(positive_float)": ("1e-3,nan", "1e-3,0"),
    "comma_list(str)": (",",),
    "_clip_or_none": ("-1", "nan"),
    "ray_address": ("notanaddress", "host:", ":6379", "host:99999", "ray://host"),
}
REQUIRED_TEXT = {"--capability": "pcfg:count:a"}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(argv prefix, parser) of every leaf command below ``parser``."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _commands(sub, (*prefix, name))


def leaf_commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    commands = [(p, sub) for p, sub in _commands(build_parser()) if p != ("reproduce",)]
    return commands + [(("reproduce", study), study_parser(study)) for study in STUDIES]


def _checked(action: argparse.Action) -> bool:
    return not action.option_strings or action.option_strings[0] not in ("-h", "--help")


def _valid(action: argparse.Action) -> list[str]:
    """A well-formed value of a required argument (what the other cases leave correct)."""
    kind = getattr(action.type, "__name__", None)
    if kind == "existing_dir":
        value = DIR
    elif kind == "existing_file":
        value = f"{DIR}/config.json"
    elif action.choices:
        value = next(iter(action.choices))
    else:
        value = REQUIRED_TEXT.get(action.option_strings[0] if action.option_strings else "", f"{DIR}/out")
    return [*action.option_strings[-1:], value]


def _with(parser: argparse.ArgumentParser, target: argparse.Action | None, bad: str) -> list[str]:
    """A command line: every required argument well-formed except ``target``, which gets ``bad``."""
    argv: list[str] = []
    for action in parser._actions:
        if action is target:
            argv += [*action.option_strings[-1:], bad]
        elif (action.required or not action.option_strings) and _checked(action):
            argv += _valid(action)
    return argv


def cases() -> list:
    params = []
    for prefix, parser in leaf_commands():
        name = " ".join(prefix)
        unknown = [*prefix, *_with(parser, None, ""), "--no-such-flag", "1"]
        params.append(pytest.param(unknown, "--no-such-flag", id=f"{name} unknown flag"))
        for action in parser._actions:
            if not _checked(action) or action.nargs == argparse.REMAINDER:
                continue
            kind = getattr(action.type, "__name__", None)
            values = list(BAD_VALUES[kind]) if action.type is not None else []
            if action.choices and not isinstance(action, argparse._SubParsersAction):
                values.append("bogus")
            flag = action.option_strings[-1] if action.option_strings else action.dest
            for bad in values:
                argv = [*prefix, *_with(parser, action, bad)]
                params.append(pytest.param(argv, flag, id=f"{name} {flag}={bad.replace(DIR, '')}"))
    return params


CASES = cases()


def test_every_typed_flag_uses_a_known_validator() -> None:
    """A flag typed ``float`` (or any new type) must use one of ``interp.arguments``' validators."""
    unknown = {
        (" ".join(prefix), a.dest, getattr(a.type, "__name__", repr(a.type)))
        for prefix, parser in leaf_commands()
        for a in parser._actions
        if a.type is not None and getattr(a.type, "__name__", None) not in BAD_VALUES
    }
    assert not unknown, f"flags with an unchecked type: {sorted(unknown)}"


def test_matrix_covers_every_command() -> None:
    names = {" ".join(prefix) for prefix, _ in leaf_commands()}
    assert {"data pcfg", "tracr finetune", "tinystories score", "probe", "audit", "reproduce pcfg"} <= names
    assert len(CASES) > 8 * len(names)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A directory that looks like a finished run: a checkpoint, results and a config."""
    root = tmp_path_factory.mktemp("prepared")
    (root / "config.json").write_text('{"model": {}, "metadata": {}}\n')
    (root / "model.safetensors").write_bytes(b"\x00" * 64)
    (root / "results.json").write_text('{"study": "pcfg"}\n')
    (root / "runs").mkdir()
    (root / "runs" / "DONE").write_text("{}\n")
    return root


@pytest.mark.parametrize("argv, flag", CASES)
def test_malformed_value_is_one_line_naming_the_flag(argv, flag, prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) would land here, not in the checkout
    before = file_hashes(prepared)
    code = main([a.replace(DIR, str(prepared)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("ftmech: error:"), err
    assert flag in err, err
    assert file_hashes(prepared) == before
    assert not list(tmp_path.iterdir())
