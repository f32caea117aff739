"""Commands about data: ``simulate``, ``validate`` and ``describe`` (the dMRI features are
``mrharmony dmri prepare``).

Each command's ``add_<name>(parser)`` sits beside its handler; the handlers import the data,
simulation and feature modules when they run.
"""

from __future__ import annotations

from pathlib import Path

from mrharmony.cli.common import add_force, say, usage_error

#: the site effects of the structural simulator (its EFFECTS), named here so that --help imports nothing heavy
STRUCTURAL_EFFECTS = ("contrast", "blur", "noise", "bias", "ringing", "ghosting")


def add_simulate(sp) -> None:
    sp.set_defaults(func=run_simulate)
    sp.add_argument("out", help="output folder (must not exist, or be empty, unless --force)")
    sp.add_argument(
        "--kind",
        default="dmri",
        choices=["dmri", "structural", "study"],
        help="dmri: traveling-heads diffusion MRI (default); structural: multi-site T1-weighted MRI; study: a "
        "multi-site diffusion study, different people at every site (platforms drawn from a distribution)",
    )
    sp.add_argument(
        "--preset",
        default="demo",
        choices=["tiny", "small", "demo", "mushac", "full", "1mm"],
        help="size: tiny (tests, seconds), demo, and mushac (dmri: 10 subjects, whole brain) or, structural, "
        "small (the demo's brain at 3 mm, for tests), full (16 subjects, whole brain at 1.5 mm) and 1mm "
        "(8 subjects, whole brain at 1 mm)",
    )
    sp.add_argument("--sites", help="structural: sites YAML (default: the packaged sites.yaml)")
    sp.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    sp.add_argument(
        "--platforms",
        help="platforms YAML describing the scanners, or a packaged set: mushac (the default, one shell) or "
        "multishell (b=1200 and 3000 s/mm^2); study: the YAML of the distribution the sites' platforms are "
        "drawn from (default: the packaged platform-distribution.yaml)",
    )
    sp.add_argument(
        "--design",
        help="study: YAML of the study's design (sites, controls and patients per site, ages, confounds; "
        "default: 6 sites of 16 controls and 8 patients aged 20 to 80)",
    )
    sp.add_argument("--subjects", type=int, help="number of subjects (default: the preset's)")
    sp.add_argument("--jobs", type=int, help="subjects rendered in parallel (default: CPU cores, at most 4)")
    sp.add_argument(
        "--cohort",
        type=int,
        metavar="N",
        help="dmri: a study cohort of N other subjects (alternately controls and patients, scanned on "
        "every platform) instead of the traveling heads",
    )
    sp.add_argument(
        "--effect",
        type=float,
        default=0.08,
        help="dmri cohort: the patients' lower intra-axonal fraction in the region (default 0.08)",
    )
    sp.add_argument(
        "--global-md-effect",
        type=float,
        metavar="FRACTION",
        help="dmri cohort: the patients' higher diffusivities everywhere in the brain's tissue, a "
        "fraction: MD rises about that much, FA stays (default 0.10; 0: none)",
    )
    sp.add_argument(
        "--only-effect",
        choices=list(STRUCTURAL_EFFECTS),  # mrharmony.simulate.structural.EFFECTS (tested)
        help="structural: sites that differ in this effect alone (every other parameter the first site's)",
    )
    sp.add_argument(
        "--no-rescans",
        action="store_true",
        help="structural: no second session of each subject on each site (<site>/rescan/)",
    )
    add_force(sp, "replace an existing output folder")


def run_simulate(args) -> int:
    if args.design and args.kind != "study":
        raise usage_error("--design describes a multi-site study; it needs --kind study")
    if args.kind == "study":
        from mrharmony.simulate.study import simulate_study

        given = [
            option
            for option, value in (
                ("--cohort", args.cohort),
                ("--subjects", args.subjects),
                ("--sites", args.sites),
                ("--only-effect", args.only_effect),
                ("--no-rescans", args.no_rescans),
                ("--global-md-effect", args.global_md_effect),
            )
            if value is not None and value is not False
        ]
        if given:
            raise usage_error(f"{given[0]} does not apply to --kind study; its people are set by --design")
        out = simulate_study(
            args.out,
            preset=args.preset,
            seed=args.seed,
            design=args.design,
            distribution=args.platforms,
            force=args.force,
            quiet=args.quiet,
            jobs=args.jobs,
        )
        say(args, f"wrote the {args.preset} multi-site study to {out}")
        return 0
    if args.kind == "structural":
        from mrharmony.simulate.structural import simulate_structural

        if args.platforms:
            raise usage_error("--platforms describes dMRI platforms; structural sites come from --sites")
        if args.cohort is not None or args.global_md_effect is not None:
            raise usage_error(
                "--cohort and --global-md-effect make a dMRI study cohort; they do not apply to --kind structural"
            )
        out = simulate_structural(
            args.out,
            preset=args.preset,
            seed=args.seed,
            sites_file=args.sites,
            n_subjects=args.subjects,
            rescans=not args.no_rescans,
            only_effect=args.only_effect,
            force=args.force,
            quiet=args.quiet,
        )
        say(args, f"wrote the {args.preset} multi-site structural dataset to {out}")
        return 0
    from mrharmony.simulate import simulate

    if args.only_effect or args.no_rescans:
        raise usage_error("--only-effect and --no-rescans shape structural sites; they do not apply to --kind dmri")
    if args.sites:
        raise usage_error("--sites describes structural sites; dMRI platforms come from --platforms")
    if args.global_md_effect is not None and args.cohort is None:
        raise usage_error("--global-md-effect sets the patients' effect in a cohort; it needs --cohort")
    extra = {} if args.global_md_effect is None else {"global_md_effect": args.global_md_effect}
    out = simulate(
        args.out,
        preset=args.preset,
        seed=args.seed,
        platforms_file=args.platforms,
        n_subjects=args.subjects,
        force=args.force,
        quiet=args.quiet,
        jobs=args.jobs,
        cohort=args.cohort,
        effect=args.effect,
        **extra,
    )
    what = "traveling-heads dataset" if args.cohort is None else f"cohort of {args.cohort} subjects"
    say(args, f"wrote the {args.preset} {what} to {out}")
    return 0


def add_validate(sp) -> None:
    sp.set_defaults(func=run_validate)
    sp.add_argument("dataset", help="traveling-heads dataset folder (with dataset.yaml)")
    sp.add_argument("--headers-only", action="store_true", help="skip reading voxel data (NaN/Inf, empty masks)")


def run_validate(args) -> int:
    from mrharmony.data import load_dataset

    ds = load_dataset(args.dataset, check_data=not args.headers_only)
    targets = ", ".join(p.name for p in ds.target_platforms)
    say(
        args,
        f"{ds.root}: valid traveling-heads dataset, {len(ds.subjects)} subjects, "
        f"input {ds.input_platform.name}, targets {targets}",
    )
    return 0


def add_describe(sp) -> None:
    sp.set_defaults(func=run_describe)
    sp.add_argument("data", help="the BIDS dataset or the MUSHAC-layout folder")
    sp.add_argument("--layout", required=True, choices=["bids", "mushac"])
    sp.add_argument(
        "--input",
        required=True,
        help="the input platform: the entity value (BIDS, e.g. ge) or scanner/protocol (MUSHAC, e.g. ge/st)",
    )
    sp.add_argument("--entity", choices=["ses", "acq", "run"], help="BIDS: the entity that names the platform")
    sp.add_argument("--out", required=True, help="folder for dataset.yaml (and later the derivatives)")
    sp.add_argument("--name", help="dataset name (default: the data folder's)")
    add_force(sp, "overwrite an existing dataset.yaml")


def run_describe(args) -> int:
    from mrharmony.data.describe import describe

    path = describe(
        args.data,
        args.out,
        layout=args.layout,
        input_platform=args.input,
        entity=args.entity,
        name=args.name,
        force=args.force,
    )
    say(args, f"wrote {path}; check it, then: mrharmony validate {Path(path).parent}")
    return 0
