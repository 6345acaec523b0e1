"""The data and net options every ``fairprune`` subcommand takes, and the data they load.

Each flag's value is checked by its argparse type; what depends on the data (a dataset's group
columns, labels, models and options; a table's columns) is checked by
:func:`fairprune_sk.datasets.load_dataset` or :func:`~fairprune_sk.datasets.load_table` before
anything is trained, and reported here as one line naming the flag.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._types import (
    Distinct,
    LazyChoices,
    command_error,
    float_in,
    input_file,
    int_at_least,
    positive_float,
)

#: The flag of each loader keyword whose name differs from it.
_FLAGS = {"random_state": "--data-seed", "name": "--dataset", "path": "--csv",
          "test_path": "--test-csv"}
#: Options of the bundled datasets that a table does not take.
_DATASET_ONLY = ("data_path", "image_size", "minority_classes", "minority_fraction")


def _flag(parameter: str) -> str:
    return _FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def _in_flags(detail: str) -> str:
    """A message of the library with its two-word keywords (``minority_fraction``) written as
    the flags (``--minority-fraction``)."""
    return re.sub(r"\b(n_train|data_path|image_size|minority_classes|minority_fraction|"
                  r"random_state|test_path|test_size)\b", lambda match: _flag(match.group(1)),
                  detail)


def _class_name(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--csv``, ``--test-csv``, ``--test-size``, ``--data-path``,
    ``--sensitive``, ``--target``, ``--n-train``, ``--image-size``, ``--minority-classes``,
    ``--minority-fraction``, ``--data-seed``."""
    from ..datasets import DATASETS, TABLE_SUFFIXES

    data = parser.add_argument_group(
        "data", "the same options in every subcommand; a bundled dataset (defaults per "
                "dataset) or your own table (--csv)")
    data.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                      help="adult (bundled, default), fashion_mnist (Debian package "
                           "dataset-fashion-mnist, or --data-path), digits (scikit-learn; "
                           "fast), utkface (your folder of UTKFace images, --data-path)")
    data.add_argument("--csv", type=input_file(TABLE_SUFFIXES), default=None, metavar="FILE",
                      help="your own table instead of a dataset: a .csv or .parquet file "
                           "(Parquet needs pyarrow) with the label column --target and the "
                           "group column(s) --sensitive; numeric columns are scaled, the "
                           "others one-hot encoded")
    data.add_argument("--test-csv", type=input_file(TABLE_SUFFIXES), default=None,
                      metavar="FILE",
                      help="--csv: the test rows, a second file with the same columns "
                           "(default: a random split of --csv, see --test-size)")
    data.add_argument("--test-size", type=float_in(0.0, 1.0, name="a fraction"), default=None,
                      help="--csv: the share of rows held out for testing, stratified by "
                           "label x group (default 0.25)")
    data.add_argument("--data-path", type=Path, default=None,
                      help="fashion_mnist: the folder of the IDX files (default: the Debian "
                           "package's); utkface (required): the folder of the images named "
                           "[age]_[gender]_[race]_[date&time].jpg")
    choices = "; ".join(
        f"{name}: {' '.join(info.sensitive_choices)} (default {' '.join(info.defaults.sensitive)})"
        for name, info in DATASETS.items() if not info.class_groups)
    data.add_argument("--sensitive", nargs="+", action=Distinct, default=None, metavar="COLUMN",
                      help=f"group column(s); several give intersectional groups. {choices}; "
                           "fashion_mnist and digits: class (their classes are the groups); "
                           "--csv (required): any columns of the table")
    data.add_argument("--target", default=None, metavar="COLUMN",
                      help="--csv (required): the label column; utkface: the label, race "
                           "(default, the paper's setting), gender or age_bin")
    data.add_argument("--n-train", type=int_at_least(2), default=None,
                      help="subsample the training set to this many rows (default: all; "
                           "fashion_mnist 10000); the output says so")
    data.add_argument("--image-size", type=int_at_least(8), default=None,
                      help="utkface: images are resized to this size (default 32)")
    data.add_argument("--minority-classes", nargs="+", action=Distinct, type=_class_name,
                      default=None, metavar="CLASS",
                      help="fashion_mnist: classes made rare in training (indices or names); "
                           "with --minority-fraction")
    data.add_argument("--minority-fraction",
                      type=float_in(0.0, 1.0, closed="right", name="a fraction"), default=None,
                      help="fashion_mnist: the fraction of the minority classes' training images "
                           "kept")
    data.add_argument("--data-seed", type=int_at_least(0), default=None,
                      help="seed of the subsample and of the digits and utkface splits "
                           "(default: --seed, or 0 for benchmark)")


def add_net_options(parser: argparse.ArgumentParser, *, fine_tune_epochs: int | None,
                    fine_tune_help: str, momentum: float | None = None,
                    hidden: list[int] | None = None) -> None:
    """``--model``, ``--hidden``, ``--channels``, ``--width``, ``--epochs``, ``--lr``,
    ``--momentum``, ``--batch-size``, ``--fine-tune-epochs``, ``--pruning-method``.

    ``momentum`` and ``hidden`` None: the dataset's default; ``fine_tune_epochs`` None: the
    command's per-dataset default, resolved after the data are loaded.
    """
    from ..datasets import MODELS

    net = parser.add_argument_group("net", "the dense net and its pruning (SGD)")
    net.add_argument("--model", default=None, choices=MODELS,
                     help="mlp (--hidden), cnn (SmallCNN, --channels) or resnet18 (ResNet18, "
                          "--width); default resnet18 for utkface, mlp otherwise")
    per_dataset = "default: adult 64 64, fashion_mnist 128 64, digits 64 64"
    net.add_argument("--hidden", nargs="+", type=int_at_least(1), default=hidden,
                     metavar="UNITS",
                     help="MLP hidden layer sizes ("
                          + (per_dataset if hidden is None else
                             f"default {' '.join(map(str, hidden))}") + ")")
    net.add_argument("--channels", nargs="+", type=int_at_least(1), default=[16, 32],
                     help="SmallCNN channels (default 16 32)")
    net.add_argument("--width", type=int_at_least(1), default=16,
                     help="ResNet18 width (default 16; 64 is the standard ResNet-18)")
    net.add_argument("--epochs", type=int_at_least(1), default=None,
                     help="dense training epochs (default: adult 10, fashion_mnist 8, digits "
                          "20, utkface 10)")
    net.add_argument("--lr", type=positive_float, default=None,
                     help="SGD learning rate (default: adult 0.05, fashion_mnist 0.01, digits "
                          "0.1, utkface 0.01)")
    net.add_argument("--momentum", type=float_in(0.0, 1.0, closed="left", name="a momentum"),
                     default=momentum,
                     help="SGD momentum in [0, 1) (default "
                          + ("per dataset: 0.9 for fashion_mnist and utkface, 0 otherwise)"
                             if momentum is None else f"{momentum:g})"))
    net.add_argument("--batch-size", type=int_at_least(1), default=None,
                     help="default: adult 256, fashion_mnist 128, digits 64, utkface 128")
    net.add_argument("--fine-tune-epochs", type=int_at_least(0), default=fine_tune_epochs,
                     help=fine_tune_help)
    net.add_argument("--pruning-method", "--method", dest="pruning_method",
                     default="global_magnitude", metavar="METHOD",
                     # the data-driven criteria rank the weights on the training rows and groups
                     choices=LazyChoices("fairprune_sk.pruning", "PRUNING_METHODS"),
                     help="how weights are chosen for pruning: %(choices)s (default "
                          "%(default)s)")


def given(args: argparse.Namespace, dests: Sequence[str]) -> list[str]:
    """The flags among ``dests`` that the command line set (their value is not None)."""
    return [_flag(dest) for dest in dests if getattr(args, dest, None) is not None]


def load_data(command: str, args: argparse.Namespace, *, data_seed: int) -> Any:
    """The :class:`~fairprune_sk.datasets.DatasetSplit` the options name: ``--csv``'s table,
    or ``--dataset`` (adult by default).

    A problem with the options or with the user's files (a missing folder, an unknown column,
    unreadable files) is one line on stderr naming the flag, and exit status 2.
    """
    from ..datasets import DATASETS, DataOptionError, load_dataset, load_table

    try:
        if args.csv is not None:
            if args.dataset is not None:
                command_error(command, "--csv and --dataset name two sources of data; give one")
            wrong = given(args, _DATASET_ONLY)
            if wrong:
                command_error(command, f"{wrong[0]} applies to a --dataset, not to --csv")
            if args.model not in (None, "mlp"):
                command_error(command, f"--model must be mlp for --csv (a table: cnn and "
                                       f"resnet18 need images); got {args.model}")
            for dest, what in (("target", "the label column"),
                               ("sensitive", "the group column(s)")):
                if getattr(args, dest) is None:
                    command_error(command, f"--{dest} must name {what} of --csv {args.csv}")
            return load_table(
                args.csv, target=args.target, sensitive=args.sensitive,
                test_path=args.test_csv,
                test_size=0.25 if args.test_size is None else args.test_size,
                n_train=args.n_train, random_state=data_seed,
            )
        wrong = given(args, ("test_csv", "test_size"))
        if wrong:
            command_error(command, f"{wrong[0]} applies to --csv only")
        name = "adult" if args.dataset is None else args.dataset
        n_train = DATASETS[name].defaults.n_train if args.n_train is None else args.n_train
        return load_dataset(
            name, model=args.model, sensitive=args.sensitive, target=args.target,
            n_train=n_train, data_path=args.data_path, image_size=args.image_size,
            minority_classes=args.minority_classes, minority_fraction=args.minority_fraction,
            random_state=data_seed,
        )
    except DataOptionError as error:
        command_error(command, f"{_flag(error.parameter)} {_in_flags(error.detail)}")
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:  # the user's files
        command_error(command, str(error))


def net_params(args: argparse.Namespace, data: Any, *, verbose: int = 0) -> dict[str, Any]:
    """``PrunableNetClassifier`` parameters of the net options, the dataset's defaults filling
    what is unset."""
    return data.defaults.net_params(
        args.model, max_epochs=args.epochs, lr=args.lr, momentum=args.momentum,
        batch_size=args.batch_size, hidden_units=args.hidden, channels=args.channels,
        width=args.width, fine_tune_epochs=args.fine_tune_epochs,
        pruning_method=args.pruning_method, device=getattr(args, "device", "cpu"),
        verbose=verbose,
    )


def describe_net(params: dict[str, Any]) -> str:
    """``"MLP (64, 64)"``, ``"SmallCNN (16, 32)"``, ``"ResNet18 (width 16)"``."""
    name = params["module"].__name__
    if "module__hidden_units" in params:
        return f"{name} {params['module__hidden_units']}"
    if "module__channels" in params:
        return f"{name} {params['module__channels']}"
    return f"{name} (width {params['module__width']})"
