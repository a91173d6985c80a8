"""The Tracr study as ``interp.sweeps`` jobs (protocol §2): baselines of the compiled programs, the
fine-tuning grid (each run analysed against its exact starting point), a longer Counter arm, and reverse
fine-tuning of Counter back to count a at eta_VS beside the Scr.+FT control.

Every job runs in a directory keyed by a hash of its arguments, so a re-run skips finished work. Jobs are
deterministic functions of their JSON-native arguments, run in worker processes.
"""

from pathlib import Path
from typing import Any

from analyses.tracr.config import TracrStudyConfig
from analyses.tracr.report import write_study_report
from analyses.tracr.results import STUDY, summarise
from interp.config import from_dict, to_dict
from interp.errors import ConfigError, DataError
from interp.evaluation import evaluate
from interp.jsonio import read_json, write_json
from interp.revival import log_spaced_steps
from interp.study_runs import StudySweep, SweepOptions, run_study_sweep
from interp.sweeps import Job, run_dir
from procedural_tasks.tracr_analysis import TracrAnalysisConfig, analyse_finetuned, gradient_share
from procedural_tasks.tracr_batches import dataset_batch, make_eval_data, tracr_eval_sets
from procedural_tasks.tracr_finetuning import (
    SUMMARY,
    TracrFinetuneConfig,
    TracrReverseFTConfig,
    finetune_lr,
    run_finetune,
    run_reverse_ft,
    sgd_train_config,
)
from procedural_tasks.tracr_models import load_compiled, load_tracr_checkpoint
from procedural_tasks.tracr_preparation import (
    STUDY_NOISE_STD,
    add_weight_noise,
    balance_mlp_neurons,
    prepared_model,
)
from procedural_tasks.tracr_programs import program_config

JOBS = "analyses.tracr.jobs"  # the module the sweep workers import the job functions from
CONTROL = "Scr.+FT control"  # the reverse fine-tuning arm that starts from the compiled program for O_FT


# --- jobs: top-level functions of JSON-native arguments, run in worker processes ------------------------


def job_finetune(*, out_dir: Path, finetune: dict, analysis: dict | None) -> dict:
    """Fine-tune one compiled program (TracrFinetuneConfig as a dict); analyse it unless it diverged."""
    config = from_dict(TracrFinetuneConfig, finetune)
    result = run_finetune(config, out_dir)
    if result.status == "ok" and analysis is not None:
        analyse_finetuned(out_dir, config=from_dict(TracrAnalysisConfig, analysis))
    return {"status": result.status, "final_accuracy": result.final_accuracy}


def job_reverse_ft(
    *, out_dir: Path, reverse: dict, start_dir: str | None, control: dict | None, name: str
) -> dict:
    """Reverse fine-tune a fine-tuned run (``start_dir``) or the Scr.+FT control (``control``) to O_PT.

    The control is the compiled program for O_FT (``swap_operand``), balanced and noised as the
    fine-tuned runs were: it counts b exactly and has never counted a.
    """
    config = from_dict(TracrReverseFTConfig, reverse)
    if start_dir is not None:
        summary = read_json(Path(start_dir) / SUMMARY)
        if summary["status"] != "ok":
            raise DataError(
                f"the fine-tuned run {start_dir} {summary['status']}; nothing to reverse fine-tune"
            )
        model = load_tracr_checkpoint(start_dir).model
    elif control is not None:
        model, _ = prepared_model(
            config.program,
            noise_std=control["noise_std"],
            seed=control["seed"],
            balance=control["balance"],
            operand=program_config(config.program).default_operand_ft,
        )
    else:
        raise ConfigError("job_reverse_ft needs start_dir or control")
    result, curve = run_reverse_ft(config, model, out_dir, name=name)
    return {
        "status": result.status,
        "steps_to_threshold": None if curve is None else curve.steps_to_threshold,
    }


def job_baseline(
    *,
    out_dir: Path,
    program: str,
    seeds: list[int],
    noise_sweep: list[float],
    n_letters: int | None,
    eval_n: int,
) -> dict:
    """The compiled program before fine-tuning: accuracy under each noise std (balanced or not), and where
    the fine-tuning gradient points at the start (its share per block component)."""
    compiled, info = load_compiled(program)
    balanced = balance_mlp_neurons(compiled)
    sweep = []
    for std in noise_sweep:
        for label, model in (("compiled", compiled), ("balanced", balanced)):
            accs = []
            for seed in seeds:
                sets = tracr_eval_sets(info.config, eval_n, seed=seed, n_letters=n_letters)
                noisy = add_weight_noise(model, std=std, seed=seed)
                accs.append(evaluate(noisy, sets[2]).accuracy)  # o_pt@cte0
            sweep.append({"std": std, "weights": label, "acc_o_pt_cte0": accs})
    shares = []
    for seed in seeds:
        start, _ = prepared_model(program, noise_std=STUDY_NOISE_STD, seed=seed)
        data = make_eval_data(info.config, eval_n, seed=seed, c_te=0, n_letters=n_letters)
        shares.append(gradient_share(start, dataset_batch(data, target="ft")))
    result = {"program": program, "noise_sweep": sweep, "gradient_share_ft_loss": shares}
    write_json(out_dir / "baseline.json", result)
    return {"program": program}


# --- the sweep -----------------------------------------------------------------------------------------


def finetune_config(
    config: TracrStudyConfig, program: str, level: str, c_tr: float, seed: int, steps: int | None = None
) -> TracrFinetuneConfig:
    steps = steps or config.steps_for(program)
    return TracrFinetuneConfig(
        program=program,
        train=sgd_train_config(lr=finetune_lr(level), steps=steps, seed=seed, grad_clip=config.grad_clip),
        c_tr=c_tr,
        q=config.q,
        lr_level=level,
        n_letters=config.n_letters_for(program),
        noise_std=config.noise_std,
        balance_mlps=config.balance_mlps,
        eval_n=config.eval_n,
    )


def reverse_config(config: TracrStudyConfig, seed: int) -> TracrReverseFTConfig:
    steps = config.reverse_steps
    train = sgd_train_config(
        lr=finetune_lr(config.reverse_lr_level),
        steps=steps,
        seed=seed,
        grad_clip=config.grad_clip,
        eval_steps=log_spaced_steps(steps, 12),
    )
    return TracrReverseFTConfig(
        program="counter",
        train=train,
        threshold=config.reverse_threshold,
        n_letters=config.counter_letters,
        q=config.q,
        eval_n=config.eval_n,
    )


def _job(out: Path, stage: str, key: str, fn: str, kwargs: dict[str, Any], deps: tuple[str, ...] = ()) -> Job:
    """A job of ``stage`` with its training steps (for the plan) read off its fine-tuning or reverse config."""
    train = next(
        (kwargs[k]["train"] for k in ("finetune", "reverse") if isinstance(kwargs.get(k), dict)), None
    )
    return Job(
        key=key,
        fn=f"{JOBS}:{fn}",
        out_dir=run_dir(out, stage, kwargs),
        kwargs=kwargs,
        deps=deps,
        stage=stage,
        steps=None if train is None else train["steps"],
    )


def ft_key(program: str, level: str, c_tr: float, seed: int) -> str:
    return f"finetune/{program}/{level}/{c_tr:g}/{seed}"


def _baseline_jobs(config: TracrStudyConfig, out: Path) -> list[Job]:
    jobs = []
    for program in config.programs:
        kwargs = {
            "program": program,
            "seeds": list(config.seeds),
            "noise_sweep": list(config.noise_sweep),
            "n_letters": config.n_letters_for(program),
            "eval_n": config.eval_n,
        }
        jobs.append(_job(out, "baseline", f"baseline/{program}", "job_baseline", kwargs))
    return jobs


def _grid_jobs(config: TracrStudyConfig, out: Path, analysis: dict | None) -> list[Job]:
    """One fine-tuning job per program x eta x C_Tr x seed."""
    jobs = []
    for program in config.programs:
        for level in config.lr_levels:
            for c_tr in config.c_trs:
                for seed in config.seeds:
                    kwargs = {
                        "finetune": to_dict(finetune_config(config, program, level, c_tr, seed)),
                        "analysis": analysis,
                    }
                    key = ft_key(program, level, c_tr, seed)
                    jobs.append(_job(out, "finetune", key, "job_finetune", kwargs))
    return jobs


def _long_jobs(config: TracrStudyConfig, out: Path, analysis: dict | None) -> list[tuple[Job, str, int]]:
    """The longer Counter arm: (job, reverse-arm name, seed) per setting x long seed."""
    if config.long_steps is None:
        return []
    jobs = []
    for level, c_tr in config.long_settings:
        for seed in config.long_seeds:
            finetune = finetune_config(config, "counter", level, c_tr, seed, steps=config.long_steps)
            kwargs = {"finetune": to_dict(finetune), "analysis": analysis}
            job = _job(out, "finetune", f"long/counter/{level}/{c_tr:g}/{seed}", "job_finetune", kwargs)
            jobs.append((job, f"after eta_{level} C_Tr={c_tr:g}, {config.long_steps} steps", seed))
    return jobs


def _reverse_job(
    out: Path, key: str, reverse: dict, start_dir: Path, name: str, deps: tuple[str, ...]
) -> Job:
    """Reverse fine-tuning of the fine-tuned run in ``start_dir``, once it has finished (``deps``)."""
    kwargs = {"reverse": reverse, "start_dir": str(start_dir), "control": None, "name": name}
    return _job(out, "reverse_ft", key, "job_reverse_ft", kwargs, deps)


def _reverse_jobs(
    config: TracrStudyConfig, out: Path, grid: list[Job], long: list[tuple[Job, str, int]]
) -> list[Job]:
    """Per seed: reverse fine-tuning after each long run, after each ``reverse_after`` grid run, and from
    the Scr.+FT control."""
    grid_dirs = {job.key: Path(job.out_dir) for job in grid}
    jobs = []
    for seed in sorted({*config.seeds, *(s for _, _, s in long)}):
        reverse = to_dict(reverse_config(config, seed))
        for job, name, long_seed in long:
            if long_seed == seed:
                jobs.append(
                    _reverse_job(out, f"reverse/{job.key}", reverse, Path(job.out_dir), name, (job.key,))
                )
        if seed not in config.seeds:
            continue
        for level in config.reverse_after:
            start = ft_key("counter", level, config.reverse_c_tr, seed)
            jobs.append(
                _reverse_job(
                    out, f"reverse/{level}/{seed}", reverse, grid_dirs[start], f"after eta_{level}", (start,)
                )
            )
        if config.reverse_after or long:
            control = {"noise_std": config.noise_std, "seed": seed, "balance": config.balance_mlps}
            kwargs = {"reverse": reverse, "start_dir": None, "control": control, "name": CONTROL}
            jobs.append(_job(out, "reverse_ft", f"reverse/control/{seed}", "job_reverse_ft", kwargs))
    return jobs


def build_jobs(config: TracrStudyConfig, out: Path) -> list[Job]:
    """Baselines, the fine-tuning grid, the longer arm, and the reverse fine-tuning runs with their controls."""
    analysis = (
        to_dict(TracrAnalysisConfig(prune_ks=config.prune_ks, score_n=config.score_n, eval_n=config.eval_n))
        if config.analyse
        else None
    )
    grid = _grid_jobs(config, out, analysis)
    long = _long_jobs(config, out, analysis)
    return [
        *_baseline_jobs(config, out),
        *grid,
        *(job for job, _, _ in long),
        *_reverse_jobs(config, out, grid, long),
    ]


def run_study(
    config: TracrStudyConfig, out: str | Path, options: SweepOptions | None = None
) -> dict[str, Any]:
    """Run (or finish) every job in ``out`` (``interp.study_runs``), then write results.json and report.html.

    Failed jobs are recorded in the results, and the next run retries them.
    """
    options = options or SweepOptions()
    sweep = StudySweep(
        STUDY,
        to_dict(config),
        plan=lambda: build_jobs(config, Path(out)),
        jobs=lambda jobs: jobs,
        summarise=lambda jobs, results, wall: summarise(
            config, jobs, results, wall_seconds=wall, workers=options.workers
        ),
        report=write_study_report,
        keep_failures=True,
    )
    return run_study_sweep(sweep, Path(out), options)
