"""The PCFG study's claims checked on our numbers: each finding says what was measured and whether it held
(True), did not (False) or is inconclusive (None, where censored revival times leave it open)."""

FAST_SPEEDUP = 5.0  # "fast revival": at least this many times fewer steps than the Scr.+FT control


def _horizon(results: dict) -> int:
    """The reverse fine-tuning horizon: the last evaluated step of the revival curves."""
    return max(c["steps"][-1] for c in results["revival"]["curves"].values())


def _speed_status(item: dict, factor: float) -> str:
    """fast (speed-up >= factor), slow (never revived, or a measured speed-up below it), or censored (only a
    lower bound below it is known, because the control never reached the threshold)."""
    if item["value"] is None:
        return "slow"
    if item["value"] >= factor:
        return "fast"
    return "censored" if item["lower_bound"] else "slow"


def _faster_than_control(item: dict) -> bool:
    """Revived, and sooner than the control (which, when censored, had not revived by the horizon)."""
    return item["value"] is not None and (item["value"] > 1 or (item["lower_bound"] and item["value"] >= 1))


def _later(damaged: int | None, wrapped: int | None) -> bool | None:
    """Whether the eta_L model reached the threshold later than the eta_M model (None: both never did)."""
    if damaged is None:
        return None if wrapped is None else True
    return False if wrapped is None else damaged > wrapped


def _steps(value: int | None, horizon: int) -> str:
    return f">{horizon}" if value is None else str(value)


def _three_valued(statuses: list, *, want) -> bool | None:
    """True if every seed is ``want``; False if any seed is a definite counter-example; None (inconclusive)
    when the remaining seeds are censored."""
    if all(s == want for s in statuses):
        return True
    definite_other = [s for s in statuses if s not in (want, None, "censored")]
    return False if definite_other else None


def _wrapper_findings(results: dict) -> list[dict]:
    """The wrapper signature and the behavioural loss of O_PT, per low-prior C_Tr = 1 model at eta_M / eta_S."""
    out: list[dict] = []
    ft = {(r["prior"], r["lr_level"], r["c_tr"]): r for r in results["finetune"]}

    def mean(row, name):
        return row["final"].get(name, {}).get("mean") if row and row["final"] else None

    small = [k for k in ft if k[0] == "low" and k[2] == 1.0 and k[1] in ("S", "M")]
    for key in small:
        row = ft[key]
        b1, b0, a0 = mean(row, "count_b@cte1"), mean(row, "count_b@cte0"), mean(row, "count_a@cte0")
        if b1 is None:
            continue
        floor = row["shortcut_floor_b0"]["mean"]
        out.append(
            {
                "claim": f"wrapper signature ({row['name']}): O_FT >= 90% at C_Te=1 but <= 30% at C_Te=0",
                "measured": f"O_FT@C_Te=1 {b1:.1%}, O_FT@C_Te=0 {b0:.1%} (shortcut floor {floor:.1%})",
                "holds": bool(b1 >= 0.9 and b0 <= 0.3),
            }
        )
        pt_a0 = results["pretrain"]["low"]["final"]["count_a@cte0"]["mean"]
        out.append(
            {
                "claim": f"behavioural loss of O_PT ({row['name']}): count-a accuracy at C_Te=0 collapses",
                "measured": f"O_PT@C_Te=0 {a0:.1%} after fine-tuning vs {pt_a0:.1%} pretrained",
                "holds": bool(a0 <= 0.5 * pt_a0),
            }
        )
    return out


def _revival_findings(results: dict) -> list[dict]:
    """Fast revival (and revival sooner than Scr.+FT) per model; no fast revival after eta_L."""
    out: list[dict] = []
    steps = {n: v.get("steps_to_threshold") for n, v in results["revival"]["metrics"].items()}
    horizon = _horizon(results)
    note = f"; '>=': the control never reached the threshold in {horizon} steps (a lower bound)"
    for name, vs in results["revival"]["speedups"].items():
        s = vs.get("Scr.+FT")
        if not s:
            continue
        measured = "speed-up per seed: " + ", ".join(
            "not revived" if i["value"] is None else f"{'>=' if i['lower_bound'] else ''}{i['value']:.1f}x"
            for i in s["per_seed"]
        )
        statuses = [_speed_status(i, FAST_SPEEDUP) for i in s["per_seed"]]
        if "eta_L" not in name:
            out.append(
                {
                    "claim": f"fast revival ({name}): reverse FT reaches the threshold >= {FAST_SPEEDUP:g}x faster than Scr.+FT",
                    "measured": measured + note,
                    "holds": _three_valued(statuses, want="fast"),
                }
            )
            out.append(
                {
                    "claim": f"revival ({name}): reverse FT reaches the threshold sooner than Scr.+FT in every seed",
                    "measured": measured + note,
                    "holds": all(_faster_than_control(i) for i in s["per_seed"]),
                }
            )
            continue
        # The study: after eta_L the capability is truly damaged, so no fast revival.
        out.append(
            {
                "claim": f"damage at eta_L ({name}): reverse FT does NOT revive >= {FAST_SPEEDUP:g}x faster than Scr.+FT",
                "measured": measured + note,
                "holds": _three_valued(statuses, want="slow"),
            }
        )
        ref = next((n for n in steps if "eta_M" in n and n.startswith("FT(low")), None)
        if ref is not None and steps[name] is not None and steps[ref] is not None:
            pairs = list(zip(steps[name], steps[ref], strict=True))
            out.append(
                {
                    "claim": f"damage at eta_L: revival after eta_L is slower than after eta_M ({ref}) in every seed",
                    "measured": "steps to threshold per seed, eta_L vs eta_M: "
                    + ", ".join(f"{_steps(d, horizon)} vs {_steps(w, horizon)}" for d, w in pairs),
                    "holds": _three_valued([_later(d, w) for d, w in pairs], want=True),
                }
            )
    return out


def _ordering_finding(results: dict) -> list[dict]:
    """The higher pretraining prior revives faster than the low one."""
    out: list[dict] = []
    m = results["revival"]["metrics"]
    low, med = m.get("FT(low, eta_M, C_Tr=1)"), m.get("FT(medium, eta_M, C_Tr=1)")
    if low and med and low.get("auc_agg") and med.get("auc_agg"):
        out.append(
            {
                "claim": "ordering: the higher prior revives faster than the low prior (larger log-step AUC)",
                "measured": f"AUC medium {med['auc_agg']['mean']:.3f} vs low {low['auc_agg']['mean']:.3f}",
                "holds": bool(med["auc_agg"]["mean"] > low["auc_agg"]["mean"]),
            }
        )
    return out


def findings(results: dict) -> list[dict]:
    """The study's claims checked on our numbers; each says what was measured and whether it held."""
    return [*_wrapper_findings(results), *_revival_findings(results), *_ordering_finding(results)]
