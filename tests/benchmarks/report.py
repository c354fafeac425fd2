"""The benchmark's results: what was measured, the issue's targets, and their markdown and JSON forms."""

from __future__ import annotations

import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

OURS, MINIMAL, TUTORIAL, MLSERVER = "drybeans", "minimal BentoML", "tutorial Flask", "MLServer 1.7"
ONE_BEAN = "one bean @32"
# The V2 scenarios (issue #20), run on ours and on MLServer: one bean at 32 concurrent requests, 10,000 beans one at
# a time, over each transport.
V2_JSON, V2_BINARY, V2_GRPC = "V2 REST JSON", "V2 REST binary", "V2 gRPC"
V2_ONE, V2_LARGE = "one bean @32", "10,000 beans"
BALANCED_SHARE = 0.35  # each worker's least share of the server's CPU under load
# The shadow scenario (issue #21): the champion's one bean store:true @32 with no shadow, a linear or an RBF one.
NO_SHADOW, LINEAR_SHADOW, RBF_SHADOW = "no shadow", "linear shadow", "RBF shadow"
SHADOW_TARGET_COST = 0.10  # the most of the champion's one-bean throughput a linear shadow at share 1.0 may cost


@dataclass(frozen=True)
class Scenario:
    """One measured load scenario on one server."""

    server: str
    name: str  # e.g. "one bean @32", "10,000 beans x5"
    store: bool
    beans_per_request: int
    connections: int
    requests: int
    seconds: float
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    rows_stored: int
    server_cpu_cores: float
    database_cpu_cores: float
    client_cpu_cores: float  # the load generator: wrk, the gRPC driver processes, or the harness's own requests
    other_cpu_cores: float  # the rest of the machine: anything else running (noise)
    worker_cpu_cores: tuple[float, ...]  # each BentoML worker's share of server_cpu_cores

    @property
    def cpu_ms_per_request(self) -> float:
        """Server CPU time per completed request, in milliseconds."""
        return self.server_cpu_cores * self.seconds * 1000 / self.requests if self.requests else 0.0

    @property
    def least_worker_share(self) -> float | None:
        """The least busy worker's share of the server's CPU (None: one process, or one connection at a time)."""
        if self.connections < 2 or len(self.worker_cpu_cores) < 2 or not self.server_cpu_cores:
            return None
        return min(self.worker_cpu_cores) / self.server_cpu_cores

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds

    @property
    def beans_per_second(self) -> float:
        """Beans classified per second, end to end, counting only 2xx answers."""
        return self.ok * self.beans_per_request / self.seconds

    @property
    def rows_expected(self) -> int:
        """Rows the 2xx answers promised: every bean of every answered request, when stored."""
        return self.ok * self.beans_per_request if self.store else 0


@dataclass(frozen=True)
class ShadowPhase:
    """One pass of the shadow scenario: the champion's load with a shadow (or none) in force, and what became of
    the second opinions over it."""

    shadow: str  # NO_SHADOW, LINEAR_SHADOW or RBF_SHADOW
    share: float | None  # of the requests the shadow scores; None without a shadow
    scenario: Scenario
    beans: dict[str, int]  # drybeans_shadow_beans_total's increase over the pass, by result
    rows_recorded: int  # rows the pass added to shadow_predictions (the shadow's tag; any tag without a shadow)

    @property
    def rows_missing(self) -> int:
        """Answered beans whose second opinion is not recorded, when the shadow was to score every request."""
        return max(0, self.scenario.ok - self.rows_recorded) if self.share == 1.0 else 0


@dataclass
class Results:
    """Everything one run measured."""

    header: dict[str, str]
    settings: dict[str, object]
    scenarios: list[Scenario] = field(default_factory=list)
    training: dict[str, float | str] = field(default_factory=dict)
    cold_start_seconds: dict[str, float] = field(default_factory=dict)
    memory_mib: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    profile: dict[str, object] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # what could not be measured, and checks beside the load
    image_mb: float | None = None
    shadow_phases: list[ShadowPhase] = field(default_factory=list)

    def find(self, server: str, name: str, *, store: bool) -> Scenario | None:
        """The scenario measured on `server` under `name` with this `store` flag, if it ran."""
        return next((s for s in self.scenarios if (s.server, s.name, s.store) == (server, name, store)), None)


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, what this run measured for it, and whether that met it (None: not measured)."""

    description: str
    value: float | None
    unit: str
    met: bool | None

    @property
    def measured(self) -> str:
        """The value with its unit, for reading."""
        return "not measured" if self.value is None else f"{_number(self.value)}{self.unit}"


def machine_header() -> dict[str, str]:
    """Date, machine, versions and commit, so that a result can be told apart from another."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_nproc()} CPUs ({cpu}), {memory_kib / 1024**2:.1f} GiB memory",
        "load average at start (1, 5, 15 min)": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "versions": f"python {platform.python_version()}, bentoml {version('bentoml')}, "
                    f"scikit-learn {version('scikit-learn')}, wrk {_wrk_version()}",
        "commit": _git_commit(),
    }


def _nproc() -> str:
    return subprocess.run(["nproc"], capture_output=True, text=True, check=True, timeout=10).stdout.strip()


def _wrk_version() -> str:
    output = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    return output.split()[1] if len(output.split()) > 1 else "?"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()

    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{dirty}"


def ratios(results: Results) -> dict[str, float | None]:
    """Our store:true one-bean scenario against the baselines measured in the same run."""
    ours = results.find(OURS, ONE_BEAN, store=True)
    minimal = results.find(MINIMAL, ONE_BEAN, store=False)
    tutorial = results.find(TUTORIAL, ONE_BEAN, store=False)
    return {
        "ours(store:true) / minimal": _ratio(ours, minimal),
        "ours(store:true) / tutorial(store:false)": _ratio(ours, tutorial),
        "server CPU per request: ours(store:true) / minimal": _cpu_ratio(ours, minimal),
        "server CPU per request: ours(store:true) / tutorial(store:false)": _cpu_ratio(ours, tutorial),
        **v2_ratios(results),
    }


def v2_name(transport: str, size: str) -> str:
    """A V2 scenario's name, e.g. "V2 gRPC, one bean @32"."""
    return f"{transport}, {size}"


def v2_ratios(results: Results) -> dict[str, float | None]:
    """The V2 scenarios side by side, in 2xx answers (beans) per second: ours store:false against MLServer (which
    records nothing) over each transport, binary against JSON, and what recording every bean costs."""
    found: dict[str, float | None] = {}
    for size in (V2_ONE, V2_LARGE):
        for transport in (V2_JSON, V2_BINARY, V2_GRPC):
            name = v2_name(transport, size)
            found[f"{name}: ours(store:false) / {MLSERVER}"] = _beans_ratio(
                results.find(OURS, name, store=False), results.find(MLSERVER, name, store=False))
        for transport in (V2_BINARY, V2_GRPC):
            found[f"{size}: ours {transport} / ours {V2_JSON} (store:false)"] = _beans_ratio(
                results.find(OURS, v2_name(transport, size), store=False),
                results.find(OURS, v2_name(V2_JSON, size), store=False))
        for transport in (V2_JSON, V2_BINARY, V2_GRPC):
            name = v2_name(transport, size)
            found[f"{name}: ours store:true / store:false"] = _beans_ratio(
                results.find(OURS, name, store=True), results.find(OURS, name, store=False))
    return found


def _beans_ratio(numerator: Scenario | None, denominator: Scenario | None) -> float | None:
    if numerator is None or denominator is None or not denominator.beans_per_second:
        return None
    return numerator.beans_per_second / denominator.beans_per_second


def _ratio(numerator: Scenario | None, denominator: Scenario | None) -> float | None:
    if numerator is None or denominator is None or not denominator.requests_per_second:
        return None
    return numerator.requests_per_second / denominator.requests_per_second


def _cpu_ratio(numerator: Scenario | None, denominator: Scenario | None) -> float | None:
    if numerator is None or denominator is None or not denominator.cpu_ms_per_request:
        return None
    return numerator.cpu_ms_per_request / denominator.cpu_ms_per_request


def shadow_cost(results: Results, shadow: str, share: float) -> float | None:
    """1 - the champion's one-bean req/s with this shadow in force / without a shadow, each the mean of its passes
    in the same server (None: not measured)."""
    baseline = [p.scenario.requests_per_second for p in results.shadow_phases if p.shadow == NO_SHADOW]
    shadowed = [p.scenario.requests_per_second for p in results.shadow_phases
                if (p.shadow, p.share) == (shadow, share)]
    if not baseline or not shadowed:
        return None
    return 1 - statistics.mean(shadowed) / statistics.mean(baseline)


def shadow_costs(results: Results) -> dict[str, float | None]:
    """The cost of each shadow measured: the linear one (the target), the RBF one at two shares (information)."""
    return {f"{shadow}, share {share}": shadow_cost(results, shadow, share)
            for shadow, share in ((LINEAR_SHADOW, 1.0), (RBF_SHADOW, 1.0), (RBF_SHADOW, 0.1))}


def targets(results: Results) -> list[Target]:
    """The issue's targets, each met, not met, or not measured in this run."""
    ours = results.find(OURS, ONE_BEAN, store=True)
    found = ratios(results)
    big_false = results.find(OURS, "10,000 beans", store=False)
    big_true = results.find(OURS, "10,000 beans", store=True)
    training = results.training.get("train.py wall seconds")
    shares = [s.least_worker_share for s in results.scenarios if s.server == OURS and s.connections > 1]
    known_shares = [share for share in shares if share is not None]
    linear_cost = shadow_cost(results, LINEAR_SHADOW, 1.0)
    linear = [p for p in results.shadow_phases if p.shadow == LINEAR_SHADOW]
    return [
        _at_least("one bean store:true @32 ≥ 1.8x tutorial store:false",
                  found["ours(store:true) / tutorial(store:false)"], 1.8, "x"),
        _at_least("one bean store:true @32 ≥ 2.0x minimal", found["ours(store:true) / minimal"], 2.0, "x"),
        _below("one bean store:true @32: p99 < 50 ms", ours.p99_ms if ours else None, 50, " ms"),
        _below("one bean store:true @32: errors = 0", float(ours.errors) if ours else None, 1, ""),
        _below("one bean store:true @32: rows missing = 0",
               float(max(0, ours.rows_expected - ours.rows_stored)) if ours else None, 1, ""),
        _at_least("each worker ≥ 35% of server CPU, every load scenario",
                  min(known_shares) if shares and len(known_shares) == len(shares) else None, BALANCED_SHARE, ""),
        _below("server CPU per request, store:true ≤ 0.75x tutorial store:false",
               found["server CPU per request: ours(store:true) / tutorial(store:false)"], 0.75, "x", inclusive=True),
        _at_least("10,000 beans store:false ≥ 150,000 beans/s", big_false.beans_per_second if big_false else None,
                  150_000, " beans/s"),
        _at_least("10,000 beans store:true ≥ 40,000 beans/s", big_true.beans_per_second if big_true else None, 40_000,
                  " beans/s"),
        _below("training (train.py, wall) < 5 s", training if isinstance(training, float) else None, 5, " s"),
        _below("cold start (launch to /readyz 200) < 4 s", results.cold_start_seconds.get(OURS), 4, " s"),
        _below("image < 600 MB", results.image_mb, 600, " MB"),
        _at_least(f"V2 REST JSON one bean @32, store:false ≥ 2.5x {MLSERVER}",
                  found[f"{v2_name(V2_JSON, V2_ONE)}: ours(store:false) / {MLSERVER}"], 2.5, "x"),
        _at_least(f"V2 gRPC one bean @32, store:false ≥ 2.0x {MLSERVER} gRPC",
                  found[f"{v2_name(V2_GRPC, V2_ONE)}: ours(store:false) / {MLSERVER}"], 2.0, "x"),
        _at_least("V2 10,000 beans, REST binary ≥ 2.0x our REST JSON (store:false)",
                  found[f"{V2_LARGE}: ours {V2_BINARY} / ours {V2_JSON} (store:false)"], 2.0, "x"),
        _below(f"shadow (linear, share 1.0) costs the champion ≤ {SHADOW_TARGET_COST:.0%} of one-bean throughput",
               None if linear_cost is None else 100 * linear_cost, 100 * SHADOW_TARGET_COST, " %", inclusive=True),
        _below("shadow (linear, share 1.0): answered beans without a recorded second opinion = 0",
               float(sum(p.rows_missing for p in linear)) if linear else None, 1, ""),
    ]


def _at_least(description: str, value: float | None, bound: float, unit: str) -> Target:
    return Target(description, value, unit, None if value is None else value >= bound)


def _below(description: str, value: float | None, bound: float, unit: str, *, inclusive: bool = False) -> Target:
    return Target(description, value, unit, None if value is None else value <= bound if inclusive else value < bound)


def _number(value: float) -> str:
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.2f}"


def summary(runs: list[Results]) -> list[tuple[str, list[Target], float | None, bool | None]]:
    """Per target: each run's measurement, their median, and whether every run met it (None: some run did not
    measure it)."""
    rows = []
    for same_target in zip(*(targets(run) for run in runs), strict=True):
        found = list(same_target)
        values = [t.value for t in found if t.value is not None]
        verdicts = [t.met for t in found]
        every = None if None in verdicts else all(verdicts)
        rows.append((found[0].description, found, statistics.median(values) if values else None, every))
    return rows


def summary_markdown(runs: list[Results]) -> str:
    """The targets over consecutive runs: a target counts only when every run met it."""
    header = " | ".join(f"run {index}" for index in range(1, len(runs) + 1))
    lines = [f"# Benchmark: {len(runs)} consecutive runs", ""]
    lines += [f"- {key}: {value}" for key, value in runs[0].header.items() if not key.startswith("load average")]
    lines += ["", "## The issue's targets", "", f"| target | {header} | median | met in every run |",
              "| --- | " + "---: | " * len(runs) + "---: | --- |"]
    for description, found, median, every in summary(runs):
        unit = found[0].unit
        median_text = "not measured" if median is None else f"{_number(median)}{unit}"
        cells = " | ".join(t.measured + ("" if t.met in (True, None) else " ✗") for t in found)
        lines.append(f"| {description} | {cells} | {median_text} | {_verdict(every)} |")
    if any(run.shadow_phases for run in runs):
        lines += ["", "## The shadow's cost to the champion (one bean store:true; information beside the target)", "",
                  f"| shadow | {header} | median |", "| --- |" + " ---: |" * (len(runs) + 1)]
        for name in shadow_costs(runs[0]):
            costs = [shadow_costs(run)[name] for run in runs]
            found_costs = [cost for cost in costs if cost is not None]
            median_cost = statistics.median(found_costs) if found_costs else None
            lines.append(f"| {name} | {' | '.join(_percent(cost) for cost in costs)} | {_percent(median_cost)} |")
    return "\n".join(lines) + "\n"


def _percent(fraction: float | None) -> str:
    return "not measured" if fraction is None else f"{100 * fraction:.1f} %"


def to_markdown(results: Results, title: str = "Benchmark results") -> str:
    """One run's whole report as markdown."""
    lines = [f"# {title}", ""]
    lines += [f"- {key}: {value}" for key, value in results.header.items()]
    lines += [f"- settings: {', '.join(f'{k} {v}' for k, v in results.settings.items())}", ""]
    lines += ["## Load", "", "| server | scenario | store | requests | req/s | beans/s | p50 ms | p99 ms | errors "
              "| rows stored / expected | CPU cores: server (per worker) | DB | load generator | rest of machine "
              "| least busy worker's share | server CPU ms per request |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: |"]
    lines += [_scenario_row(scenario) for scenario in results.scenarios]
    lines += ["", "## Training, start, memory", "", "| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in results.training.items()]
    lines += [f"| cold start, {server} (launch to ready) | {seconds:.2f} s |"
              for server, seconds in results.cold_start_seconds.items()]
    lines += [f"| memory, {server} worker {index} | RSS {worker['rss_mib']:.0f} MiB, PSS {worker['pss_mib']:.0f} MiB |"
              for server, workers in results.memory_mib.items() for index, worker in enumerate(workers, start=1)]
    if results.image_mb is not None:
        lines.append(f"| image size | {results.image_mb:,.0f} MB |")
    if results.notes:
        lines += ["", "## Notes", "", "| about | note |", "| --- | --- |"]
        lines += [f"| {about} | {note} |" for about, note in results.notes.items()]
    if results.shadow_phases:
        lines += shadow_markdown(results)
    lines += ["", "## Ratios (same run)", "",
              "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {'not measured' if value is None else f'{value:.2f}x'} |"
              for name, value in ratios(results).items()]
    lines += ["", "## The issue's targets", "", "| target | measured | met |", "| --- | ---: | --- |"]
    lines += [f"| {t.description} | {t.measured} | {_verdict(t.met)} |" for t in targets(results)]
    return "\n".join(lines) + "\n"


def shadow_markdown(results: Results) -> list[str]:
    """The shadow scenario's passes in the order run, with each shadow's cost and its second opinions' fate."""
    baseline = [p.scenario.requests_per_second for p in results.shadow_phases if p.shadow == NO_SHADOW]
    lines = ["", "## Shadow scoring (issue #21): the champion's one bean store:true, roles changed live", "",
             "| pass | shadow | share | req/s | p99 ms | cost vs no shadow (mean) | server CPU ms per request "
             "| rest of machine, cores | beans scored | dropped | failed | lost | shadow rows recorded / answered |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for number, phase in enumerate(results.shadow_phases, start=1):
        s = phase.scenario
        cost = ("-" if phase.shadow == NO_SHADOW or not baseline
                else _percent(1 - s.requests_per_second / statistics.mean(baseline)))
        beans = " | ".join(f"{phase.beans.get(result, 0):,}" for result in ("scored", "dropped", "failed", "lost"))
        lines.append(f"| {number} | {phase.shadow} | {'-' if phase.share is None else phase.share} "
                     f"| {s.requests_per_second:,.0f} | {s.p99_ms:.1f} | {cost} | {s.cpu_ms_per_request:.2f} "
                     f"| {s.other_cpu_cores:.2f} | {beans} | {phase.rows_recorded:,} / {s.ok:,} |")
    lines += ["", "| shadow | cost: 1 - req/s with it / without (means of the passes) |", "| --- | ---: |"]
    lines += [f"| {name} | {_percent(cost)} |" for name, cost in shadow_costs(results).items()]
    return lines


def _scenario_row(s: Scenario) -> str:
    rows = f"{s.rows_stored:,} / {s.rows_expected:,}"
    return (f"| {s.server} | {s.name} | {str(s.store).lower()} | {s.requests:,} | {s.requests_per_second:,.0f} "
            f"| {s.beans_per_second:,.0f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.errors:,} | {rows} "
            f"| {_cores(s)} | {s.database_cpu_cores:.2f} | {s.client_cpu_cores:.2f} | {s.other_cpu_cores:.2f} "
            f"| {_share(s.least_worker_share)} | {s.cpu_ms_per_request:.2f} |")


def _share(share: float | None) -> str:
    if share is None:
        return "-"
    return f"{share:.2f}" if share >= BALANCED_SHARE else f"**{share:.2f} unbalanced**"


def _cores(s: Scenario) -> str:
    workers = " + ".join(f"{value:.2f}" for value in s.worker_cpu_cores)
    return f"{s.server_cpu_cores:.2f} ({workers})" if workers else f"{s.server_cpu_cores:.2f}"


def _cell(value: float | str) -> str:
    return f"{value:.2f} s" if isinstance(value, float) else value


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def to_json(results: Results) -> dict[str, object]:
    """The whole report as plain data, with the derived figures spelled out."""
    scenarios = [{**asdict(s), "requests_per_second": s.requests_per_second, "beans_per_second": s.beans_per_second,
                  "rows_expected": s.rows_expected, "cpu_ms_per_request": s.cpu_ms_per_request,
                  "least_worker_share": s.least_worker_share}
                 for s in results.scenarios]
    return {"header": results.header, "settings": results.settings, "scenarios": scenarios,
            "training": results.training, "cold_start_seconds": results.cold_start_seconds,
            "memory_mib": results.memory_mib, "ratios": ratios(results),
            "image_mb": results.image_mb, "targets": [asdict(t) for t in targets(results)],
            "profile": results.profile, "notes": results.notes,
            "shadow": {"phases": [{**asdict(p), "rows_missing": p.rows_missing} for p in results.shadow_phases],
                       "costs": shadow_costs(results)}}
