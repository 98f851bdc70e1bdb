"""`--config_file`: flags read from a TOML file, with sd-scripts' semantics and clearer errors.

As in sd-scripts (train_util.read_config_from_file): the file holds `flag = value` pairs, optionally in sections
whose names are ignored (`[optimizer_arguments]` etc. are flattened; a later duplicate wins); a flag given on the
command line wins over the file; a path without `.toml` gets it appended; `--output_config` writes the command
line's non-default flags to the `--config_file` path (refusing to overwrite) and exits.

Differences: values are converted and checked like command-line text (`resolution = "1024,1024"` and
`learning_rate = 5e-5` both work, `max_grad_norm = "abc"` is an error naming the file and key), and keys that are
not flags of the script (a LoRA config's network_dim, typos) are listed in one warning instead of being ignored silently.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from pathlib import Path
from typing import Any

from library.errors import UserError

logger = logging.getLogger(__name__)

_NOT_FROM_FILE = {"config_file", "output_config", "help"}
_NOT_WRITTEN = {"config_file", "output_config", "wandb_api_key", "huggingface_token", "hub_token"}  # secrets stay out of files


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (default sys.argv[1:]); if it names --config_file, the file fills every flag the CLI left out."""
    args = parser.parse_args(argv)
    config_file = getattr(args, "config_file", None)
    if getattr(args, "output_config", False):
        if not config_file:
            raise UserError("--output_config needs --config_file PATH: the TOML file to write")
        path = resolve_config_path(config_file)
        write_config_file(args, parser, path)
        logger.info(f"wrote the command line's settings to {path}")
        raise SystemExit(0)
    if not config_file:
        return args
    path = resolve_config_path(config_file)
    values = read_config_values(path, parser)
    # argparse only fills defaults for attributes the namespace lacks, so the file's values act as defaults
    # and anything on the command line overrides them
    return parser.parse_args(argv, namespace=argparse.Namespace(**values))


def resolve_config_path(config_file: str) -> Path:
    """The path as given if it ends in .toml or exists; otherwise with `.toml` appended (sd-scripts' rule)."""
    path = Path(config_file)
    if path.suffix == ".toml" or path.is_file():
        return path
    return Path(config_file + ".toml")


def load_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing file, bad UTF-8 or bad TOML becomes a UserError naming the file."""
    if not path.is_file():
        raise UserError(f"--config_file {path}: no such file")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as err:
        raise UserError(f"--config_file {path}: not UTF-8 text ({err})") from err
    try:
        if sys.version_info >= (3, 11):
            import tomllib

            return tomllib.loads(text)
        import toml

        return toml.loads(text)
    except Exception as err:  # tomllib.TOMLDecodeError / toml.TomlDecodeError, both say line and column
        raise UserError(f"--config_file {path}: not valid TOML: {err}") from err


def flatten_sections(data: dict[str, Any], path: Path) -> dict[str, tuple[str | None, Any]]:
    """{key: (section or None, value)} with sections merged; a key set twice keeps the later value (warned)."""
    flat: dict[str, tuple[str | None, Any]] = {}
    for name, value in data.items():
        entries = value.items() if isinstance(value, dict) else [(name, value)]
        section = name if isinstance(value, dict) else None
        for key, item in entries:
            if key in flat and flat[key][1] != item:
                logger.warning(f"{path}: '{key}' is set in {_where(flat[key][0])} and in {_where(section)}; using {item!r} from the latter")
            flat[key] = (section, item)
    return flat


def _where(section: str | None) -> str:
    return f"[{section}]" if section else "the top level"


def read_config_values(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The file's values for the parser's flags, converted like command-line values; unknown keys are warned once."""
    actions = {a.dest: a for a in parser._actions if a.dest not in _NOT_FROM_FILE and a.dest != argparse.SUPPRESS}
    values: dict[str, Any] = {}
    unknown: list[str] = []
    for key, (section, value) in flatten_sections(load_toml(path), path).items():
        dest = key.replace("-", "_")
        if dest in _NOT_FROM_FILE:
            continue
        if dest not in actions:
            unknown.append(key)
            continue
        where = f"--config_file {path}, {_where(section)} key '{key}'"
        values[dest] = convert_value(actions[dest], value, where)
    if unknown:
        names = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(actions), n=1, cutoff=0.8)
            names.append(f"{key} (did you mean {close[0]}?)" if close else key)
        logger.warning(f"{path}: ignoring keys that are not flags of this script: {', '.join(names)}")
    return values


def convert_value(action: argparse.Action, value: Any, where: str) -> Any:
    """A TOML value for `action` converted and checked as argparse would convert the same text on the CLI."""
    flag = action.option_strings[0] if action.option_strings else action.dest
    if isinstance(value, dict):
        raise UserError(f"{where}: a table is not a value for {flag}")
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise UserError(f"{where}: {flag} is an on/off flag; write true or false, not {value!r}")
        return value
    if isinstance(action, argparse._StoreConstAction):
        if not isinstance(value, bool):
            raise UserError(f"{where}: {flag} is an on/off flag; write true or false, not {value!r}")
        return action.const if value else action.default
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: {flag} expects a whole number, not {value!r}")
        return value
    takes_list = action.nargs in ("*", "+") or (isinstance(action.nargs, int) and action.nargs > 1)
    if takes_list or isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        if action.nargs == "+" and not items:
            raise UserError(f"{where}: {flag} needs at least one value")
        return [_convert_scalar(action, flag, item, where) for item in items]
    if isinstance(value, list):
        # a list for a single-value flag is read as its comma-separated CLI form: resolution = [1024, 1024]
        if any(isinstance(v, (list, dict, bool)) for v in value):
            raise UserError(f"{where}: {flag} takes a single value, not {value!r}")
        value = ",".join(_number_text(v, None) if not isinstance(v, str) else v for v in value)
    return _convert_scalar(action, flag, value, where)


def _convert_scalar(action: argparse.Action, flag: str, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: {flag} expects {_kind(action.type)}, not {value!r}")
    text = value if isinstance(value, str) else _number_text(value, action.type)
    try:
        result = action.type(text) if action.type else text
    except UserError as err:
        raise UserError(f"{where}: {err}") from err
    except argparse.ArgumentTypeError as err:
        raise UserError(f"{where}: {flag} {err}") from err
    except (TypeError, ValueError) as err:
        raise UserError(f"{where}: {flag} expects {_kind(action.type)}, not {value!r}") from err
    if action.choices is not None and result not in action.choices:
        shown = ", ".join(str(c) for c in action.choices if c is not None)
        raise UserError(f"{where}: {value!r} is not a choice of {flag} (choose from {shown})")
    return result


def _number_text(value: int | float, type_) -> str:
    if isinstance(value, float):
        if type_ is int and value.is_integer():
            return str(int(value))  # lr_scheduler_num_cycles = 3.0
        return repr(value)  # repr keeps 5e-05 exact
    return str(value)


def _kind(type_) -> str:
    return {int: "a whole number", float: "a number", str: "text", None: "text"}.get(type_, "a value of the flag's form")


def write_config_file(args: argparse.Namespace, parser: argparse.ArgumentParser, path: Path) -> None:
    """Write the non-default flags of `args` as TOML to `path` (sd-scripts' --output_config); never overwrites."""
    import toml

    if path.exists():
        raise UserError(f"--output_config: {path} already exists; remove it or give another --config_file path")
    defaults = _parser_defaults(parser)
    data: dict[str, Any] = {}
    for key, value in vars(args).items():
        if key in _NOT_WRITTEN or value is None or (key in defaults and value == defaults[key]):
            continue
        data[key] = _toml_value(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml.dumps(data), encoding="utf-8")


def _parser_defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    try:
        return vars(parser.parse_args([]))
    except SystemExit:  # a parser with required flags: fall back to the declared defaults
        return {a.dest: a.default for a in parser._actions}


def _toml_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_toml_value(v) for v in value]
    return str(value)  # Path, LearningRateSchedule: their text form parses back to the same value
