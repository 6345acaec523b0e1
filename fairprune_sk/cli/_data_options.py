"""The data and net options every ``fairprune`` subcommand takes, and the data they load.

Each flag's value is checked by its argparse type; what depends on the dataset (its group
columns, labels, models, options) is checked by :func:`fairprune_sk.datasets.load_dataset`
before a file is read, and reported here as one line naming the flag.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from ._types import (
    Distinct,
    command_error,
    float_in,
    int_at_least,
    positive_float,
)

#: The flag of each :func:`~fairprune_sk.datasets.load_dataset` keyword whose name differs.
_FLAGS = {"random_state": "--data-seed", "name": "--dataset"}


def _flag(parameter: str) -> str:
    return _FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def _in_flags(detail: str) -> str:
    """A message of the library with its two-word keywords (``minority_fraction``) written as
    the flags (``--minority-fraction``)."""
    return re.sub(r"\b(n_train|data_path|image_size|minority_classes|minority_fraction|"
                  r"random_state)\b", lambda match: _flag(match.group(1)), detail)


def _class_name(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--dataset``, ``--data-path``, ``--sensitive``, ``--target``, ``--n-train``,
    ``--image-size``, ``--minority-classes``, ``--minority-fraction``, ``--data-seed``."""
    from ..datasets import DATASETS

    data = parser.add_argument_group(
        "data", "the same options in every subcommand; defaults per dataset")
    data.add_argument("--dataset", default="adult", choices=sorted(DATASETS),
                      help="adult (bundled, default), fashion_mnist (Debian package "
                           "dataset-fashion-mnist, or --data-path), digits (scikit-learn; "
                           "fast), utkface (your folder of UTKFace images, --data-path)")
    data.add_argument("--data-path", type=Path, default=None,
                      help="fashion_mnist: the folder of the IDX files (default: the Debian "
                           "package's); utkface (required): the folder of the images named "
                           "[age]_[gender]_[race]_[date&time].jpg")
    choices = "; ".join(
        f"{name}: {' '.join(info.sensitive_choices)} (default {' '.join(info.defaults.sensitive)})"
        for name, info in DATASETS.items() if not info.class_groups)
    data.add_argument("--sensitive", nargs="+", action=Distinct, default=None, metavar="COLUMN",
                      help=f"group column(s); several give intersectional groups. {choices}; "
                           "fashion_mnist and digits: class (their classes are the groups)")
    data.add_argument("--target", default=None, metavar="COLUMN",
                      help="utkface: the label, race (default, the paper's setting), gender or "
                           "age_bin")
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


def add_net_options(parser: argparse.ArgumentParser, *, fine_tune_epochs: int,
                    fine_tune_help: str, momentum: float | None = None,
                    hidden: list[int] | None = None) -> None:
    """``--model``, ``--hidden``, ``--channels``, ``--width``, ``--epochs``, ``--lr``,
    ``--momentum``, ``--batch-size``, ``--fine-tune-epochs``, ``--pruning-method``.

    ``momentum`` and ``hidden`` None: the dataset's default.
    """
    from ..datasets import MODELS
    from ..pruning import PRUNING_METHODS

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
                     default="global_magnitude", choices=PRUNING_METHODS,
                     help="how weights are chosen for pruning (default global_magnitude)")


def load_data(command: str, args: argparse.Namespace, *, data_seed: int) -> Any:
    """The :class:`~fairprune_sk.datasets.DatasetSplit` the options name.

    A problem with the options or with the user's files (a missing folder, unreadable files)
    is one line on stderr naming the flag, and exit status 2.
    """
    from ..datasets import DATASETS, DataOptionError, load_dataset

    n_train = DATASETS[args.dataset].defaults.n_train if args.n_train is None else args.n_train
    try:
        return load_dataset(
            args.dataset, model=args.model, sensitive=args.sensitive, target=args.target,
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
