"""What a row run directory holds, and whether a rerun of ``scripts/run_row.sh`` may reuse it.

The row driver records the exact ``fairseq-train`` command (shell-quoted, one line) of a
training: ``train.cmd`` when an attempt starts, ``train.done`` (the command, then the training
seconds) when it exits 0; ``results.json`` records the command it answers and the decoding
settings. A rerun (:func:`decide`) compares them with what is asked:

* results.json's command and decoding settings equal the asked ones: ``reuse`` (print it);
* the finished training matches, the results do not (or are missing): ``decode`` again;
* only ``--max-update`` / ``--max-epoch`` grew: ``train`` (fairseq continues from
  ``checkpoint_last.pt``), then decode;
* anything else differs, or a limit is below what the run has already trained: a
  :class:`RunMismatch` whose message names the difference and how to start afresh.

Flags that say where a run lives or how it logs (:data:`IGNORED_FLAGS`) are not settings: a
moved run directory or another ``LOG_INTERVAL`` is the same run.
"""
import contextlib
import io
import json
import os
import shlex
import sys

# Where the run lives and how it logs, not what it computes.
IGNORED_FLAGS = ("--save-dir", "--user-dir", "--log-interval", "--log-format", "--no-progress-bar")
LIMIT_FLAGS = {"--max-update": "MAX_UPDATE", "--max-epoch": "MAX_EPOCH"}
# The row driver's environment variable behind a flag, to name it in messages.
ENV_OF = {"DATA": "DATA", "--update-freq": "UPDATE_FREQ", "--seed": "SEED", "--distributed-world-size": "NPROC",
          "--cpu": "CPU", **LIMIT_FLAGS}
# Before the driver always passed it, a command without --distributed-world-size trained one
# worker (the row scripts' default NPROC=1 on a CPU or single-GPU machine).
IMPLIED = {"--distributed-world-size": ("1",)}

RESULTS, DONE, ATTEMPT, LAST = "results.json", "train.done", "train.cmd", "checkpoint_last.pt"


class RunMismatch(ValueError):
    """The run directory holds a run that the asked one cannot reuse or continue; one line."""


def parse_command(argv):
    """``{name: values}`` of a ``fairseq-train`` argv (program first): the positional data
    directory under ``"DATA"``, every ``--flag`` with the tuple of values after it (``()`` for a
    switch; the last occurrence wins, as in argparse; ``--flag=value`` is split)."""
    out, flag = {}, "DATA"
    values = []
    for token in list(argv[1:]) + ["--"]:
        if token.startswith("--"):
            if flag is not None and (flag != "DATA" or values):
                out[flag] = tuple(values)
            flag, values = token, []
            if "=" in token:
                flag, value = token.split("=", 1)
                values.append(value)
        else:
            values.append(token)
    out.pop("--", None)
    return out


def settings(argv):
    """:func:`parse_command` without :data:`IGNORED_FLAGS`, with :data:`IMPLIED` defaults."""
    parsed = {k: v for k, v in parse_command(argv).items() if k not in IGNORED_FLAGS}
    for flag, value in IMPLIED.items():
        parsed.setdefault(flag, value)
    return parsed


def _show(values):
    if values is None:
        return "not set"
    return " ".join(values) if values else "set"


def _name(flag):
    env = ENV_OF.get(flag)
    if flag == "DATA":
        return "DATA (the data directory)"
    return f"{env} ({flag})" if env else flag


def differences(old, new, skip=()):
    """``["NAME: OLD in the run, NEW asked", ...]`` for the settings (dicts of :func:`settings`)
    that differ, except the flags in ``skip``."""
    out = []
    for flag in list(old) + [f for f in new if f not in old]:
        if flag in skip or old.get(flag) == new.get(flag):
            continue
        if flag == "DATA" and _same_directory(old.get(flag), new.get(flag)):
            continue
        out.append(f"{_name(flag)}: {_show(old.get(flag))} in the run, {_show(new.get(flag))} asked")
    return out


def _same_directory(old, new):
    """Two spellings of one data directory (a link, e.g. a queued run's code snapshot links
    this checkout's ``data-bin/``; or relative and absolute): the same data, not another setting."""
    if not old or not new or len(old) != 1 or len(new) != 1:
        return False
    try:
        return os.path.samefile(old[0], new[0])
    except OSError:  # one of them is gone: only the text can tell
        return False


def _limit(values):
    return None if values is None else int(values[0])


def read_command(path):
    """The argv on the first line of a ``train.done`` / ``train.cmd`` file, or None."""
    try:
        with open(path, encoding="utf-8") as f:
            return shlex.split(f.readline())
    except (OSError, ValueError):
        return None


def trained_position(checkpoint):
    """``(updates, epochs)`` trained into a fairseq checkpoint: ``epochs`` counts the epochs
    begun (an epoch-end checkpoint has finished all of them); memory-mapped, so a large
    checkpoint costs little."""
    import torch

    from pn_fairseq.checkpoints import serialization

    serialization.allow_fairseq_checkpoint_globals()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    updates = int(state["optimizer_history"][-1]["num_updates"])
    iterator = (state.get("extra_state") or {}).get("train_iterator") or {}
    # fairseq stores the *next* epoch after an epoch end, the current one mid-epoch
    epoch = int(iterator.get("epoch", 1))
    epochs = epoch - 1 if not iterator.get("iterations_in_epoch") else epoch
    return updates, epochs


def _afresh(save_dir):
    return f"use another SAVE_DIR, or delete {save_dir} to start afresh"


def _check_limits(old, new, save_dir, position):
    """Raise :class:`RunMismatch` when an asked limit is below what the run has trained;
    return the limits that grew (``["MAX_UPDATE 60 -> 600", ...]``)."""
    grown = []
    for flag, env in LIMIT_FLAGS.items():
        was, asked = _limit(old.get(flag)) if old is not None else None, _limit(new.get(flag))
        if asked is not None and (old is None or was is None or asked < was) and position() is not None:
            done = position()[0 if flag == "--max-update" else 1]
            if done > asked:
                unit = "updates" if flag == "--max-update" else "epochs"
                raise RunMismatch(f"{env}={asked} is below the {done} {unit} {save_dir} has already trained: "
                                  f"a shorter run needs its own directory; {_afresh(save_dir)}")
        if old is not None and was is not None and (asked is None or asked > was):
            grown.append(f"{env} {was} -> {'no limit' if asked is None else asked}")
    return grown


def decide(save_dir, argv, decoding):
    """What a rerun with the training command ``argv`` and the decoding settings ``decoding``
    (a dict, see :func:`decoding_settings`) does in ``save_dir``: ``(action, message)`` with
    action ``"reuse"``, ``"decode"`` or ``"train"``; raises :class:`RunMismatch`."""
    new = settings(argv)
    last = os.path.join(save_dir, LAST)
    cache = {}

    def position():
        if "p" not in cache:
            cache["p"] = trained_position(last) if os.path.isfile(last) else None
        return cache["p"]

    done = read_command(os.path.join(save_dir, DONE))
    if done is not None:
        old = settings(done)
        diff = differences(old, new, skip=LIMIT_FLAGS)
        if diff:
            raise RunMismatch(f"{save_dir} holds a finished training with other settings: {'; '.join(diff)}; "
                              f"rerun with its settings, or {_afresh(save_dir)}")
        grown = _check_limits(old, new, save_dir, position)
        if grown and not os.path.isfile(last):
            raise RunMismatch(f"{', '.join(grown)} asks to continue the training in {save_dir}, but its {LAST} is "
                              f"gone: {_afresh(save_dir)}")
        if grown:
            return "train", f"{', '.join(grown)}: training continues from {last}"
        stale = _stale_results(save_dir, new, decoding, done)
        if stale is None:
            return "reuse", "the recorded training command and decoding settings are the ones asked"
        return "decode", f"training already finished ({os.path.join(save_dir, DONE)}); {stale}"
    if not os.path.isfile(last):
        return "train", f"training from scratch -> {save_dir}"
    attempt = read_command(os.path.join(save_dir, ATTEMPT))
    old = settings(attempt) if attempt is not None else None
    if old is not None:
        diff = differences(old, new, skip=LIMIT_FLAGS)
        if diff:
            raise RunMismatch(f"{save_dir} holds an unfinished training with other settings: {'; '.join(diff)}; "
                              f"rerun with its settings to resume it, or {_afresh(save_dir)}")
    _check_limits(old, new, save_dir, position)
    return "train", f"resuming the unfinished training from {last}"


def _stale_results(save_dir, new, decoding, done):
    """Why results.json does not answer the asked run ("no results.json", what differs), or None."""
    path = os.path.join(save_dir, RESULTS)
    try:
        with open(path, encoding="utf-8") as f:
            result = json.load(f)
    except FileNotFoundError:
        return "decoding and scoring"
    except (OSError, ValueError):
        return f"{path} is unreadable: decoding and scoring again"
    if not isinstance(result, dict):
        return f"{path} is not a JSON object: decoding and scoring again"
    command = result.get("train_command")
    recorded = settings(shlex.split(command)) if isinstance(command, str) else settings(done)
    diff = differences(recorded, new)
    asked = decoding if "decoding" in result else {k: decoding[k] for k in ("beam", "lenpen")}
    had = result.get("decoding") if "decoding" in result else {k: result.get(k) for k in asked}
    diff += [f"{k}: {had.get(k) if isinstance(had, dict) else None} in {RESULTS}, {v} asked"
             for k, v in asked.items() if not isinstance(had, dict) or had.get(k) != v]
    if diff:
        return f"{RESULTS} was made with other settings ({'; '.join(diff)}): decoding and scoring again"
    return None


def decoding_settings(beam, lenpen, average_last, average_kind, scoring):
    """The decoding settings results.json records and :func:`decide` compares."""
    return {"beam": int(beam), "lenpen": float(lenpen), "average_last": int(average_last),
            "average_kind": average_kind, "scoring": scoring}


def recipe_differences(*, max_update, max_epoch, recipe_max_update, recipe_max_epoch, extra_args):
    """How a run departs from its row's recipe (``configs/<dataset>/<row>.conf``), in words:
    ``["MAX_UPDATE=60 (recipe: 600)", ...]``; [] for the recipe itself. UPDATE_FREQ and NPROC
    are not counted: the configs do not say on how many GPUs a recipe ran."""
    out = []
    for env, asked, recipe in (("MAX_UPDATE", max_update, recipe_max_update),
                               ("MAX_EPOCH", max_epoch, recipe_max_epoch)):
        if asked != recipe:
            shown = "no limit" if asked is None else asked
            out.append(f"{env}={shown} (recipe: {'no limit' if recipe is None else recipe})")
    if extra_args.strip():
        out.append(f"EXTRA_ARGS={extra_args.strip()}")
    return out


def check_train_args(argv):
    """Parse ``argv`` (``fairseq-train DATA --flag ...``) as fairseq-train would, without
    training: the one-line error it would stop with, or None. What a typo in EXTRA_ARGS
    costs before anything is created, instead of fairseq's usage text in a run's train.log."""
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    from pn_fairseq.hooks.errors import PNUserError, summarize
    from pn_fairseq.hooks.launch_check import check_launch, check_restore_file

    saved, sys.argv = sys.argv, ["fairseq-train"] + list(argv[1:])  # fairseq finds --user-dir in sys.argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            check_launch(sys.argv)
            check_restore_file(sys.argv)
            args = options.parse_args_and_arch(options.get_training_parser(), input_args=sys.argv[1:])
            convert_namespace_to_omegaconf(args)
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        line = lines[-1] if lines else "fairseq-train: error: the arguments were refused"
        return line if len(line) <= 300 else line[:300] + " ..."  # an --arch typo lists 200 choices
    except PNUserError as e:
        return f"fairseq-train: error: {e}"
    except Exception as e:  # what fairseq's own config conversion raises for bad values
        return f"fairseq-train: error: {summarize(e)}"
    finally:
        sys.argv = saved
    return None
