"""Failure drills: the timeline, the canary rule, withdraw in the registry, and
two drills run for real (Redis killed; a broken canary rolled back)."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import redis
import torch

from mlsd_lib.adclick.drills import ads_request_bodies, arm_log_loss
from mlsd_lib.adclick.experiment import sample_requests
from mlsd_lib.errors import MlsdError
from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.broken_model import InvertedLogit, mean_logit
from mlsd_lib.serving.canary_rollback import (
    ArmMetrics,
    CanaryGuard,
    CanaryRule,
    CanaryRuleError,
)
from mlsd_lib.serving.fault_drill import (
    OUTCOME_KINDS,
    DrillLoad,
    DrillOutcome,
    DrillRun,
    DrillScheduleError,
    drill_timeline,
    outcome_kind,
    plot_drill,
    run_drill,
    time_to_first,
)
from mlsd_lib.serving.gateway import Deployment, Deployments, GatewayConfig, create_app
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.gateway.deploy import RegistryDeployer, torch_infer_fn
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry, RegistryError
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.worlds.ads import AdsWorld

KEY = "drill-key"
HEADERS = {"X-API-Key": KEY}
REFS = tuple(CANDIDATE_REFS)
SPECS = (
    (TensorSpec("features", np.float32, (len(REFS),)),),
    (TensorSpec("score", np.float32, (1,)),),
)


def outcome(sent: float, status: int = 200, **body) -> DrillOutcome:
    return DrillOutcome(sent, 0.01, status, dict(body))


# -- the timeline ---------------------------------------------------------------


def test_outcome_kind_names_every_answer():
    assert outcome_kind(outcome(0, degraded=False, fallback=False)) == "full"
    assert outcome_kind(outcome(0, degraded=True, fallback=False)) == "degraded"
    assert outcome_kind(outcome(0, degraded=True, fallback=True)) == "fallback"
    assert outcome_kind(outcome(0, status=503)) == "503"
    assert outcome_kind(outcome(0, status=0)) == "failed"
    assert outcome_kind(outcome(0, status=500)) == "failed"


def test_timeline_counts_each_kind_in_its_bucket():
    origin = 100.0
    outcomes = [
        outcome(origin + 0.01, degraded=False),
        outcome(origin + 0.05, degraded=False),
        outcome(origin + 0.15, degraded=True),
        outcome(origin + 0.31, status=503),
    ]
    run = DrillRun(outcomes, origin, {"fault": origin + 0.1})
    timeline = drill_timeline(run, bucket_s=0.1)
    assert list(timeline.columns) == list(OUTCOME_KINDS)
    assert list(timeline.index) == [0.0, 0.1, 0.2, 0.3]
    assert timeline["full"].tolist() == [2, 0, 0, 0]
    assert timeline["degraded"].tolist() == [0, 1, 0, 0]
    assert timeline["503"].tolist() == [0, 0, 0, 1]
    assert int(timeline.to_numpy().sum()) == len(outcomes)
    assert run.kinds()["full"] == 2
    assert time_to_first(run, "fault", "degraded") == pytest.approx(0.06)
    assert time_to_first(run, "fault", "fallback") is None
    assert plot_drill(run, timeline, title="t") is not None
    with pytest.raises(DrillScheduleError, match="unknown outcome kind 'ok'"):
        time_to_first(run, "fault", "ok")
    with pytest.raises(DrillScheduleError, match="bucket_s must be positive"):
        drill_timeline(run, bucket_s=0)


def test_run_drill_refuses_a_schedule_out_of_order():
    load = DrillLoad("http://127.0.0.1:9", HEADERS, [{}])
    with pytest.raises(DrillScheduleError, match=r"0 < fault_at_s <= recover_at_s"):
        run_drill(load, lambda: None, fault_at_s=2, duration_s=1)
    with pytest.raises(DrillScheduleError, match="recover and recover_at_s together"):
        run_drill(load, lambda: None, fault_at_s=1, duration_s=2, recover_at_s=1.5)
    assert issubclass(DrillScheduleError, MlsdError)


# -- the canary rule --------------------------------------------------------------


def test_canary_rule_waits_holds_and_rolls_back():
    rule = CanaryRule(max_relative_excess=0.1, min_samples=100)
    assert rule.judge(ArmMetrics(0.5, 5.0, 1000, 99)) == "wait"
    assert rule.judge(ArmMetrics(0.5, 0.549, 1000, 100)) == "hold"
    assert rule.judge(ArmMetrics(0.5, 0.551, 1000, 100)) == "rollback"
    assert rule.judge(ArmMetrics(0.5, float("nan"), 1000, 100)) == "rollback"
    with pytest.raises(CanaryRuleError, match="min_samples >= 1"):
        CanaryRule(min_samples=0)


def test_guard_rolls_back_once_on_the_first_bad_check():
    calls = []
    metrics = iter([None, ArmMetrics(0.5, 0.5, 300, 300)])

    def measure(since, until):
        assert until - since == pytest.approx(2.0)
        return next(metrics, ArmMetrics(0.5, 0.9, 300, 300))

    guard = CanaryGuard(
        CanaryRule(min_samples=200), measure, lambda: calls.append(1), window_s=2.0
    )
    assert [guard.check() for _ in range(4)] == ["wait", "hold", "rollback", "rollback"]
    assert calls == [1]
    assert guard.rolled_back_at is not None
    with pytest.raises(CanaryRuleError, match="must be positive"):
        CanaryGuard(CanaryRule(), measure, lambda: None, window_s=0)


# -- the broken model and the registry's withdraw -----------------------------------


def test_inverted_logit_keeps_the_mean_and_reverses_the_ranking():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid()).eval()
    x = torch.randn(500, 4)
    broken = InvertedLogit(model, mean_logit(model, x)).eval()
    with torch.inference_mode():
        good, bad = model(x).ravel().numpy(), broken(x).ravel().numpy()
    good_logit, bad_logit = np.log(good / (1 - good)), np.log(bad / (1 - bad))
    assert bad_logit.mean() == pytest.approx(good_logit.mean(), abs=1e-4)
    assert np.array_equal(np.argsort(good), np.argsort(-bad))
    torch.jit.script(broken)  # exportable as TorchScript, like any served model


def _register_linear(registry: ModelRegistry, tmp_path, module, number: int) -> None:
    path = tmp_path / f"m{number}.pt"
    torch.jit.save(torch.jit.script(module.eval()), str(path))
    registry.register(
        "ctr",
        path,
        input_schema=[(ref, "float32") for ref in REFS],
        training_window=("2026-01-01", "2026-01-28"),
        metrics={},
        format="torchscript",
    )


class Scores(torch.nn.Module):
    """``p = sigmoid(log1p(x) . w - 3)``: a small, low pCTR."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w", torch.linspace(-0.2, 0.2, len(REFS)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.log1p(features.clamp(min=0)) @ self.w - 3.0)


def test_withdraw_empties_a_first_canary_and_records_why(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    for number in (1, 2, 3):
        _register_linear(registry, tmp_path, Scores(), number)
    registry.promote("ctr", 1, "production")
    registry.promote("ctr", 2, "canary")
    with pytest.raises(RegistryError, match="no earlier version"):
        registry.rollback("ctr", "canary")  # why withdraw exists
    assert registry.withdraw("ctr", "canary", reason="log loss").version == 2
    assert registry.stage_version("ctr", "canary") is None
    assert registry.stage_version("ctr", "production") == 1
    last = registry.stage_history("ctr", "canary")[-1]
    assert (last["action"], last["version"], last["from_version"]) == (
        "withdraw",
        None,
        2,
    )
    assert last["reason"] == "log loss"
    with pytest.raises(RegistryError, match="no version is there"):
        registry.withdraw("ctr", "canary")
    # a stage with an earlier version falls back to it
    registry.promote("ctr", 3, "production")
    assert registry.withdraw("ctr", "production").version == 3
    assert registry.stage_version("ctr", "production") == 1


# -- the ad-click canary metric ---------------------------------------------------


def test_arm_log_loss_prefers_the_arm_that_serves_the_truth():
    world = AdsWorld(seed=0)
    requests = sample_requests(world, 40, num_candidates=5, day=3, seed=0)
    bodies = ads_request_bodies(requests)
    assert bodies[0]["ad_ids"] == requests.candidates[0].tolist()
    outcomes = []
    for i, body in enumerate(bodies):
        truth = world.click_probability(
            np.full(5, requests.user_id[i]),
            np.array(body["ad_ids"]),
            np.full(5, requests.hour[i]),
            np.full(5, requests.device[i]),
            np.zeros(5, dtype=int),
            requests.day,
        )
        route = "canary" if i % 2 else "production"
        served = 1 - truth if route == "canary" else truth
        ads = [
            {"ad_id": a, "pctr": float(p)}
            for a, p in zip(body["ad_ids"], served, strict=True)
        ]
        outcomes.append(
            DrillOutcome(0.0, 0.01, 200, {"route": route, "ads": ads}, index=i)
        )
    metrics = arm_log_loss(world, requests, outcomes)
    assert (metrics.stable_samples, metrics.canary_samples) == (100, 100)
    assert metrics.canary > 3 * metrics.stable
    assert arm_log_loss(world, requests, outcomes[::2]) is None  # no canary answers


# -- drills run for real ------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    return make_ads_example(num_users=200, num_ads=30, seed=0)


def _materialize(store: OnlineStore, example) -> None:
    materialize_replayed(store, example.tables, example.end)


def _bodies(n: int = 200) -> list[dict]:
    return [{"user_id": u % 200, "candidate_ids": list(range(10))} for u in range(n)]


def _config(tmp_path) -> GatewayConfig:
    return GatewayConfig(
        impression_log_path=str(tmp_path / "impressions.jsonl"),
        api_key=KEY,
        feature_timeout_s=0.05,
        model_timeout_s=0.3,
    )


@pytest.mark.faults
@pytest.mark.redis
def test_redis_drill_degrades_then_recovers_without_a_failed_request(
    tmp_path, example, private_redis
):
    server = private_redis
    client = redis.Redis.from_url(
        server.url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    store = OnlineStore(client, example.registry)
    _materialize(store, example)
    model = InProcessModelServer("test")
    model.bind("m", torch_infer_fn(Scores().eval()), *SPECS, 512)
    app = create_app(
        _config(tmp_path), store, Deployments(Deployment("v1", model, "m", REFS))
    )

    def restart() -> None:
        server.start(port=server.port)
        _materialize(store, example)

    with GatewayServer(app) as gateway:
        load = DrillLoad(gateway.url, HEADERS, _bodies(), clients=2, pace_s=0.02)
        run = run_drill(
            load,
            server.kill,
            fault_at_s=0.6,
            recover=restart,
            recover_at_s=1.4,
            duration_s=2.2,
        )
    client.close()
    kinds = run.kinds()
    assert kinds["503"] == kinds["failed"] == 0, kinds
    timeline = drill_timeline(run)
    before = timeline.loc[: run.seconds("fault") - 0.1]
    during = timeline.loc[run.seconds("fault") + 0.1 : run.seconds("repair started")]
    after = timeline.loc[run.seconds("recovered") + 0.2 :]
    # A read may miss its 50 ms budget on a busy machine even before the kill.
    assert before["full"].sum() > 10 * before["degraded"].sum()
    assert during["degraded"].sum() >= 10 * max(1, during["full"].sum())
    assert after["full"].sum() > 0 and after["degraded"].sum() <= 2
    assert time_to_first(run, "fault", "degraded") < 0.5


def test_a_late_repair_still_gets_load_after_it():
    load = DrillLoad("http://127.0.0.1:9", HEADERS, [{}], clients=1, pace_s=0.05)
    run = run_drill(
        load,
        lambda: None,
        fault_at_s=0.05,
        recover=lambda: time.sleep(0.3),  # runs past duration_s
        recover_at_s=0.1,
        duration_s=0.2,
        observe_after_repair_s=0.2,
    )
    assert run.seconds("recovered") >= 0.4
    assert max(o.sent_at for o in run.outcomes) > run.marks["recovered"]
    assert {o.status for o in run.outcomes} == {0}  # nothing listens on port 9
    assert all(o.error for o in run.outcomes)


@pytest.mark.faults
def test_broken_canary_is_caught_withdrawn_and_reloaded_away(tmp_path, example):
    import fakeredis

    store = OnlineStore(fakeredis.FakeRedis(), example.registry)
    _materialize(store, example)
    registry = ModelRegistry(tmp_path / "registry")
    _register_linear(registry, tmp_path, Scores(), 1)
    _register_linear(registry, tmp_path, InvertedLogit(Scores(), 0.0), 2)
    registry.promote("ctr", 1, "production")
    registry.promote("ctr", 2, "canary")
    server = InProcessModelServer("test")
    deployer = RegistryDeployer(registry, "ctr", server, canary_fraction=0.3)
    app = create_app(
        _config(tmp_path), store, deployer.deployments(), reload=deployer.deployments
    )
    with GatewayServer(app) as gateway:
        load = DrillLoad(gateway.url, HEADERS, _bodies(), clients=2, pace_s=0.02)

        def measure(since: float, until: float) -> ArmMetrics | None:
            # A stand-in loss: the mean served score (the good model's is ~0.1,
            # the broken one's ~0.9). The ad-click chapter uses the log loss.
            window = [o for o in list(load.outcomes) if since <= o.done_at < until]
            arms: dict[str, list[float]] = {"production": [], "canary": []}
            for o in window:
                if o.status == 200:
                    arms[o.body["route"]].extend(o.body["scores"])
            if not arms["canary"]:
                return None
            return ArmMetrics(
                float(np.mean(arms["production"])),
                float(np.mean(arms["canary"])),
                len(arms["production"]),
                len(arms["canary"]),
            )

        def rollback() -> None:
            registry.withdraw("ctr", "canary", reason="canary loss above stable")
            httpx.post(
                f"{gateway.url}/admin/reload", headers=HEADERS, timeout=30
            ).raise_for_status()

        guard = CanaryGuard(CanaryRule(min_samples=30), measure, rollback, window_s=0.5)
        with guard:
            run = run_drill(load, lambda: None, fault_at_s=0.1, duration_s=2.5)
    assert guard.rolled_back_at is not None, guard.checks[-3:]
    assert registry.stage_version("ctr", "canary") is None
    assert registry.stage_history("ctr", "canary")[-1]["action"] == "withdraw"
    assert run.kinds()["503"] == run.kinds()["failed"] == 0
    routes_after = {
        o.body["route"] for o in run.outcomes if o.sent_at > guard.rolled_back_at
    }
    assert routes_after == {"production"}
    assert any(o.body["route"] == "canary" for o in run.outcomes)
    assert not server.has_model("ctr-v2")  # drained, then unloaded
