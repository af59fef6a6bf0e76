"""Arguments and helpers shared by the command-line tools."""
from __future__ import annotations

import argparse
import functools
import logging
import sys

from ..config import CPU_TIME_BUDGET, DESCRIPTORS, VARIANTS
from ..errors import CPRError, InputError, one_line

DATASETS = ("auto", "mvtec", "btad", "mvtec3d", "visa", "folder")


# errors a user can fix (bad file, argument, value, no memory for an image): one line, exit status 2
USER_ERRORS = (CPRError, ValueError, OSError, MemoryError)


def add_debug_arg(p: argparse.ArgumentParser) -> None:
    """--debug: show the traceback of an error instead of its one-line message."""
    p.add_argument("--debug", action="store_true", help="on an error, show the full traceback")


def cli_main(prog: str):
    """Decorate a command's ``main(argv) -> int`` with the engine's error policy.

    A user error (``USER_ERRORS``, or ``SystemExit`` with a message) prints ``prog: error: <one
    line>`` to stderr and returns 2; any other exception prints one line that says it is an
    internal error and returns 1; Ctrl-C returns 130. With ``--debug`` among the arguments the
    exception propagates with its traceback.
    """
    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None) -> int:
            args = sys.argv[1:] if argv is None else [str(a) for a in argv]
            try:
                return main(args)
            except SystemExit as exit_:
                if not isinstance(exit_.code, str):
                    raise
                message = exit_.code.removeprefix("error: ")
                print(f"{prog}: error: {one_line(Exception(message))}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except Exception as error:  # noqa: BLE001 - the policy: one line, never a raw traceback
                if "--debug" in args:
                    raise
                if isinstance(error, USER_ERRORS):
                    print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
                    return 2
                print(f"{prog}: internal error ({type(error).__name__}: {one_line(error)}); rerun with --debug "
                      "for the traceback and report it", file=sys.stderr)
                return 1
        return wrapper
    return decorate


def add_data_args(p: argparse.ArgumentParser) -> None:
    """--data, --dataset, --category."""
    p.add_argument("--data", required=True, help="dataset root folder (MVTec AD, MVTec AD 2, MVTec LOCO, MPDD, Real-IAD, BTAD, MVTec 3D-AD, VisA "
                   "or a generic folder with train/good, test/<good|defect>, optional ground_truth/)")
    p.add_argument("--dataset", choices=DATASETS, default="auto",
                   help="layout of --data (default: detected from the folder structure)")
    p.add_argument("--category", nargs="*", default=None,
                   help="categories to use (default: every category found under --data)")


def torch_device(text: str) -> str:
    """argparse type: a torch device this machine has, ``cpu``, ``cuda`` or ``cuda:N`` (checked before any work)."""
    from ..training.trainer import resolve_device  # lazy: only a --device given on the command line imports torch

    try:
        resolve_device(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_device_args(p: argparse.ArgumentParser) -> None:
    """--device, --batch-size, --quiet."""
    p.add_argument("--device", type=torch_device, default=None,
                   help="torch device, e.g. cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass at inference (default 8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def int_in_range(low: int, high: int | None = None, what: str | None = None):
    """argparse type: an integer in [low, high] (no upper bound when ``high`` is None)."""
    allowed = what or (f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its own messages
    return parse


positive_int = int_in_range(1, what="a positive integer")


def image_side(text: str) -> int:
    """argparse type: a model input side, a multiple of 16 (the coarsest stride of every backbone) >= 32."""
    value = int_in_range(32, what="a multiple of 16, at least 32")(text)
    if value % 16:
        raise argparse.ArgumentTypeError(f"expected a multiple of 16, at least 32, got {value}")
    return value

nonnegative_int = int_in_range(0, what="an integer >= 0")
port_number = int_in_range(1, 65535, what="a port number in [1, 65535]")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Model and training hyper-parameters."""
    p.add_argument("--variant", choices=VARIANTS, default="cpr",
                   help="cpr: 384-d descriptors, K=10 (paper); fast: 64-d; faster: 16-d, K=5 (default cpr)")
    p.add_argument("--backbone", default=None,
                   help="efficientnet_lite0_deep (default: Lite0 stride-8/16 stages, offline weights), "
                        "efficientnet_lite0 (its stride-4/8 stages), densenet201 (the paper's), resnet18, "
                        "wide_resnet50_2, efficientnet_b0")
    p.add_argument("--weights", default=None,
                   help="ImageNet checkpoint of the backbone (torchvision file); default: the torch hub cache "
                        "(Lite0: the offline package)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="training steps of the local metric (default: as many as --time-budget allows on a CPU; "
                        "the paper's 40000 objects / 500 textures on a GPU)")
    p.add_argument("--time-budget", type=positive_float, default=None, metavar="SECONDS",
                   help=f"seconds of local-metric training (default: {CPU_TIME_BUDGET:g} on a CPU, no limit on a "
                        "GPU); training ends at --steps or here, whichever comes first")
    p.add_argument("--descriptor", choices=DESCRIPTORS, default=None,
                   help="auto (default): on a CPU with the default budget, the raw backbone taps (a few minutes "
                        "of local-metric training measured worse on real defects); with --steps, --time-budget or "
                        "on a GPU, train the learned local metric and keep it only when it beats the raw taps on a "
                        "validation split of the training images with synthetic defects; learned; raw (no training)")
    p.add_argument("--train-batch", type=positive_int, default=None, help="training batch size (default 32)")
    p.add_argument("--top-k", type=positive_int, default=None,
                   help="retrieved reference images K (default 10; faster: 5); at most the number of training "
                        "images (a larger K retrieves all of them and is stored as that number)")
    p.add_argument("--image-size", type=image_side, default=None,
                   help="model input side in pixels, a multiple of 16 (default 320)")
    p.add_argument("--texture-dir", default=None,
                   help="folder of anomaly textures for synthetic defects (e.g. DTD images); default: derived "
                        "from the training images themselves")
    p.add_argument("--texture", choices=("auto", "yes", "no"), default="auto",
                   help="auto (default): decided from the training images - the foreground branch is fitted and "
                        "kept only when it helps on the validation split; yes: texture, no foreground branch; "
                        "no: same as auto")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")


def add_split_args(p, n_default: int | None, n_help: str, seed_default: str) -> None:
    """--n-anomaly, --split-seed: the supervised benchmark protocol (method page, section 7b).

    ``p``: a parser or argument group; ``seed_default``: what the help says a missing seed means.
    """
    p.add_argument("--n-anomaly", type=nonnegative_int, default=n_default, metavar="N", help=n_help)
    p.add_argument("--split-seed", type=nonnegative_int, default=None, metavar="SEED",
                   help=f"seed of the shuffle of the defective test images for --n-anomaly (default: {seed_default})")


def config_overrides(args) -> dict:
    """CPRConfig overrides given on the command line."""
    pairs = {"backbone": args.backbone, "steps": args.steps, "time_budget": args.time_budget,
             "descriptor": args.descriptor, "batch_size": args.train_batch, "top_k": args.top_k,
             "image_size": args.image_size, "seed": args.seed}
    return {k: v for k, v in pairs.items() if v is not None}


def is_texture(choice: str) -> bool:
    """Resolve --texture: only "yes" forces the texture setting; otherwise the data decide."""
    return choice == "yes"


def resolve_categories(root: str, dataset: str, wanted: list[str] | None) -> tuple[str, list[str]]:
    """(dataset layout, categories) for --data/--dataset/--category."""
    from ..data import detect_dataset, list_categories

    layout = detect_dataset(root) if dataset == "auto" else dataset
    found = list_categories(root, layout)
    if not wanted:
        return layout, found
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise SystemExit(f"error: categories {unknown} not found under {root} ({layout}); found: {found}")
    return layout, wanted


def setup_logging(quiet: bool) -> None:
    """INFO logs to stderr (WARNING with --quiet)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
