"""The results as a printed table (markdown, so docs/BENCHMARKS.md can take it as it is) and targets."""

from __future__ import annotations

from typing import Any

WARM_P50_SHIPPED = 1.5
WARM_P99_SHIPPED = 3.0
WARM_P50_LARGE = 2.0
COLD_OVER_FLOOR_S = 0.5
SERVED_S = 0.5
STARTUP_S = 0.3
BUILD_RATIO = 0.9
INCREMENTAL_SHARE = 0.05
RSS_MB = 800
RECALL_FP16 = 0.99
RECALL_ANN = 0.98


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f}"


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _n(value: Any) -> str:
    return "–" if value is None else f"{value:,}"


def columns(results: dict[str, Any]) -> list[str]:
    names = ["shipped"] + [f"syn-{n}" for n in results["plan"]["sizes"]]
    names += [n for n in results.get("warm", {}) if n not in names]  # e.g. the largest size with IVF
    present = set(results.get("warm", {})) | set(results.get("build", {}).get("sizes", {}))
    present |= set(results.get("memory", {}).get("sizes", {})) | set(results.get("cold", {}).get("sizes", {}))
    return [n for n in names if n in present]


def table(results: dict[str, Any]) -> str:
    """One column per corpus size; rows for every cost, each with its floor or its share."""
    names = columns(results)
    warm = results.get("warm", {})
    cold = results.get("cold", {})
    build = results.get("build", {}).get("sizes", {})
    memory = results.get("memory", {}).get("sizes", {})
    ann = results.get("ann", {})
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row("passages", [_n(build.get(n, {}).get("passages") or warm.get(n, {}).get("passages")) for n in names])
    row("sentences (vectors)", [_n(build.get(n, {}).get("sentences")) for n in names])
    row("vectors", [_vectors(build.get(n, {})) for n in names])
    row("dense index", [warm.get(n, {}).get("dense", "–") for n in names])
    if warm:
        row("**warm question** p50 ms", [_ms(warm.get(n, {}).get("total", {}).get("median")) for n in names])
        row(
            "  floor: model encode p50 ms",
            [_ms(warm.get(n, {}).get("floor", {}).get("median")) for n in names],
        )
        row(
            "  (floor with torch on 1 thread)",
            [_ms(warm.get(n, {}).get("floor_torch_one_thread", {}).get("median")) for n in names],
        )
        row("  p50 ÷ floor p50", [_x(warm.get(n, {}).get("p50_over_floor")) for n in names])
        row("  p95 / p99 ms", [_p95_99(warm.get(n, {}).get("total", {})) for n in names])
        row("  p99 ÷ floor p99", [_x(warm.get(n, {}).get("p99_over_floor_p99")) for n in names])
        for stage in ("embed", "search", "fuse", "read", "quote", "render", "other"):
            row(
                f"  {stage} p50 ms",
                [_ms(warm.get(n, {}).get("stages", {}).get(stage, {}).get("median")) for n in names],
            )
        row("  samples (questions × rounds)", [_n(warm.get(n, {}).get("total", {}).get("n")) for n in names])
    if cold:
        floor = cold.get("floor", {})
        row("**cold `ask`** s (median)", [_s(cold.get("sizes", {}).get(n, {}).get("median")) for n in names])
        row(f"  floor: load model s = {_s(floor.get('median'))}", [_delta(cold, n) for n in names])
    served = results.get("served", {})
    if served.get("n"):
        row(
            "**served `ask`** s (warm `serve`)",
            [_s(served["median"]) if n == "shipped" else "–" for n in names],
        )
    if build:
        row("**build** pipeline s (no model)", [_s(build.get(n, {}).get("pipeline_seconds")) for n in names])
        row(
            "  model s (est., this run's rate)",
            [_s(build.get(n, {}).get("model_seconds_estimated")) for n in names],
        )
        row(
            "  full build passages/s (est.)",
            [_f(build.get(n, {}).get("passages_per_s_estimated")) for n in names],
        )
        row("  index on disk MB", [_mb(build.get(n, {}).get("index_bytes")) for n in names])
    incremental = results.get("incremental", {})
    if incremental:
        by_name = {
            f"syn-{v['articles']}": v
            for k, v in incremental.items()
            if isinstance(v, dict) and "articles" in v
        }
        row(
            "**+1 article** s (median)",
            [_s(by_name.get(n, {}).get("update", {}).get("median")) for n in names],
        )
        row("  ÷ full build", [_pct(by_name.get(n, {}).get("share_of_full_build")) for n in names])
    if memory:
        row("**serving peak RSS** MB (chat)", [_f(memory.get(n, {}).get("peak_rss_mb")) for n in names])
    if ann:
        row("recall@10 float16 exact", [_r(ann.get(n, {}).get("float16 exact")) for n in names])
        row("recall@10 IVF", [_r(ann.get(n, {}).get("ivf (float16)")) for n in names])
        row("  IVF, 10 of 50 rescored exactly", [_r50(ann.get(n, {}).get("ivf (float16)")) for n in names])
        row("  IVF search ms (1 thread)", [_ms_s(ann.get(n, {}).get("ivf (float16)")) for n in names])
        row("  exact f16 / f32 search ms", [_exact_ms(ann.get(n, {})) for n in names])

    width = max(len(label) for label, _ in rows)
    header = "| " + " | ".join(["".ljust(width), *[_title(results, n) for n in names]]) + " |"
    lines = [header, "|" + "|".join(["-" * (width + 2)] + ["---:"] * len(names)) + "|"]
    lines += ["| " + " | ".join([label.ljust(width), *values]) + " |" for label, values in rows]
    return "\n".join(lines)


def _title(results: dict[str, Any], name: str) -> str:
    if name == "shipped":
        return "shipped corpus"
    if name.endswith(" ivf"):
        return f"{_title(results, name.removesuffix(' ivf'))}, IVF"
    passages = results.get("build", {}).get("sizes", {}).get(name, {}).get("passages")
    articles = name.split("-", 1)[1]
    return f"{articles} art. (~{_round(passages)})" if passages else f"{articles} articles"


def _round(passages: int) -> str:
    return f"{passages / 1000:.0f}k" if passages >= 1000 else str(passages)


def _vectors(build: dict[str, Any]) -> str:
    counts = build.get("vectors", {})
    if not counts:
        return "–"
    kinds = [k for k in ("cached", "derived", "encoded") if counts.get(k)]
    label = "+".join(kinds) or "–"
    return label + (" (index from earlier run)" if build.get("reused_from_earlier_run") else "")


def _s(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _mb(value: int | None) -> str:
    return "–" if value is None else f"{value / 1e6:,.1f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f} %"


def _r(entry: dict[str, Any] | None) -> str:
    return "–" if not entry else f"{entry['recall_at_10']:.3f}"


def _r50(entry: dict[str, Any] | None) -> str:
    return "–" if not entry else f"{entry['recall_at_10_of_50_rescored']:.3f}"


def _ms_s(entry: dict[str, Any] | None) -> str:
    return "–" if not entry else f"{entry['search_ms']['median']:.2f}"


def _exact_ms(entry: dict[str, Any]) -> str:
    f16, f32 = entry.get("float16 exact"), entry.get("float32 exact")
    if not f16 or not f32:
        return "–"
    return f"{f16['search_ms']['median']:.2f} / {f32['search_ms']['median']:.2f}"


def _p95_99(total: dict[str, Any]) -> str:
    if not total.get("n"):
        return "–"
    return f"{total['p95'] * 1000:.0f} / {total['p99'] * 1000:.0f}"


def _delta(cold: dict[str, Any], name: str) -> str:
    entry = cold.get("sizes", {}).get(name, {})
    if entry.get("over_floor_s") is None:
        return "–"
    return f"floor {entry['over_floor_s']:+.2f}"


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Each target of issue 5: what it asks, what was measured, whether it holds (None: not measured)."""
    out: list[tuple[str, str, bool | None]] = []
    warm = results.get("warm", {})
    shipped = warm.get("shipped", {})
    if shipped:
        p50 = shipped.get("p50_over_floor")
        p99 = shipped.get("p99_over_floor_p99")
        out.append((f"warm p50 ≤ {WARM_P50_SHIPPED}× floor (shipped)", _x(p50), _le(p50, WARM_P50_SHIPPED)))
        out.append(
            (f"warm p99 ≤ {WARM_P99_SHIPPED}× floor p99 (shipped)", _x(p99), _le(p99, WARM_P99_SHIPPED))
        )
    large = [n for n in warm if n != "shipped" and (warm[n].get("passages") or 0) >= 90_000]
    for name in large:
        p50 = warm[name].get("p50_over_floor")
        label = (
            f"warm p50 ≤ {WARM_P50_LARGE}× floor ({warm[name]['passages']:,} passages, {warm[name]['dense']})"
        )
        out.append((label, _x(p50), _le(p50, WARM_P50_LARGE)))
    cold = results.get("cold", {}).get("sizes", {}).get("shipped", {})
    if cold:
        delta = cold.get("over_floor_s")
        out.append(
            (
                f"cold ask ≤ floor + {COLD_OVER_FLOOR_S} s (shipped)",
                f"floor {delta:+.2f} s",
                _le(delta, COLD_OVER_FLOOR_S),
            )
        )
    served = results.get("served", {})
    if served.get("n"):
        torch = "imported" if served["imports_torch"] else "not imported"
        beside = _s(cold.get("median")) if cold else "–"
        measured = f"{served['median']:.2f} s (cold `ask` {beside} s), torch {torch}"
        holds = served["median"] <= SERVED_S and not served["imports_torch"]
        out.append((f"`ask --server` to a warm server ≤ {SERVED_S} s, no torch", measured, holds))
    for command, entry in results.get("startup", {}).items():
        measured = (
            f"{entry['median']:.2f} s, torch {'imported' if entry['imports_torch'] else 'not imported'}"
        )
        holds = entry["median"] < STARTUP_S and not entry["imports_torch"]
        out.append((f"`{command}` < {STARTUP_S} s, no torch", measured, holds))
    real = results.get("build", {}).get("real", {})
    if real:
        ratio = real.get("ratio_to_floor")
        out.append(
            (
                f"build ≥ {BUILD_RATIO}× raw-encode throughput (passage texts)",
                _x(ratio),
                _ge(ratio, BUILD_RATIO),
            )
        )
        every = real.get("ratio_to_floor_all_texts")
        if every is not None:
            label = "  the same, against raw encode of every text a build embeds (passages and sentences)"
            out.append((label, _x(every), _ge(every, BUILD_RATIO)))
    updates = [e for e in results.get("incremental", {}).values() if isinstance(e, dict) and "runs" in e]
    for entry in sorted(updates, key=lambda e: e["articles"]):
        share, articles = entry["share_of_full_build"], entry["articles"]
        # The target is for 10,000 articles (the largest size); smaller ones are shown for the curve.
        judged = articles == max(e["articles"] for e in updates)
        label = f"+1 article to {articles:,} articles" + (
            f" ≤ {INCREMENTAL_SHARE:.0%} of a full build" if judged else ", share of a full build"
        )
        out.append((label, _pct(share), _le(share, INCREMENTAL_SHARE) if judged else None))
    if updates:
        unchanged = all(r["kept_faiss_ids_unchanged"] for e in updates for r in e["runs"])
        embedded = all(0 < r["texts_embedded"] <= r["new_texts"] for e in updates for r in e["runs"])
        out.append(("updates keep every FAISS id, add the new ones (no rebuild)", str(unchanged), unchanged))
        out.append(("updates embed only the new article's texts", str(embedded), embedded))
    for entry in results.get("memory", {}).get("sizes", {}).values():
        if (entry.get("passages") or 0) >= 90_000:
            rss = entry["peak_rss_mb"]
            out.append(
                (
                    f"serving RSS ≤ {RSS_MB} MB ({entry['passages']:,} passages)",
                    f"{rss:.0f} MB",
                    rss <= RSS_MB,
                )
            )
    measured = [e for e in results.get("ann", {}).values() if isinstance(e, dict) and "float16 exact" in e]
    for entry in measured:
        f16 = entry["float16 exact"]["recall_at_10"]
        label = f"float16 recall@10 ≥ {RECALL_FP16} ({entry['passages']:,} passages)"
        out.append((label, f"{f16:.3f}", f16 >= RECALL_FP16))
    if measured:
        # IVF serves only above exact_search_limit: judged at the largest size measured.
        largest = max(measured, key=lambda e: e["passages"])
        ivf = largest["ivf (float16)"]["recall_at_10"]
        label = f"IVF recall@10 ≥ {RECALL_ANN} ({largest['passages']:,} passages)"
        out.append((label, f"{ivf:.3f}", ivf >= RECALL_ANN))
    return out


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else value >= limit


def targets_table(results: dict[str, Any]) -> str:
    lines = ["| target | measured | holds |", "|---|---:|:---:|"]
    for label, measured, holds in targets(results):
        mark = "–" if holds is None else ("yes" if holds else "**no**")
        lines.append(f"| {label} | {measured} | {mark} |")
    return "\n".join(lines)


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, {m['os']}, Python {m['python']}; "
        f"{versions}. Load average at start {m['load_average_at_start']}, at end "
        f"{m.get('load_average_at_end')} (a shared machine: other jobs ran alongside)."
    )


def render(results: dict[str, Any]) -> str:
    parts = [
        f"protest-bot benchmark ({results['plan']['name']}), {results['started']} – "
        f"{results.get('finished')}, commit {results.get('commit')}",
        machine_line(results),
        "",
        table(results),
        "",
        targets_table(results),
    ]
    if results.get("notes"):
        parts += ["", "Notes:", *[f"- {n}" for n in results["notes"]]]
    parts += ["", f"Section seconds: {results.get('section_seconds')}"]
    return "\n".join(parts)
