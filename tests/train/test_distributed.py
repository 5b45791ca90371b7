"""Distributed training: the pieces in two gloo processes, and ``torchrun`` with 2 processes against 1 on
a tiny tone corpus (same final weights for ``sum`` and ``gr``, uneven shares, references on some
utterances only, resume). Dropout and SpecAugment are off in the end-to-end comparison: ranks draw other
masks than a single process would."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from gradremedy.errors import UserError
from gradremedy.surgery import AllReduceTasks, GradientEngine, build_method, gradient_remedy
from gradremedy.surgery.steps import _buckets
from gradremedy.train import distributed, train
from gradremedy.train.checkpoint import load_checkpoint, load_model

from .helpers import make_tone_corpus, write_config

# ---------------------------------------------------------------------------------------------------
# Single process: no process group


def test_single_process_needs_no_process_group(monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = distributed.setup(torch.device("cpu"))
    assert (context.rank, context.world_size, context.enabled) == (0, 1, False)
    assert not dist.is_initialized()
    has_text, has_clean = torch.ones(3, dtype=torch.bool), torch.tensor([True, False, True])
    assert distributed.loss_weights(has_text, has_clean, 1) == (1.0, 1.0)
    assert distributed.sum_over_ranks([1, 2.5], 1, torch.device("cpu")) == [1.0, 2.5]
    assert distributed.gather_over_ranks(["a"], 1) == ["a"]
    state = {"torch": torch.get_rng_state()}
    assert distributed.gather_rng_states(state, 1) is state


def test_world_size_without_torchrun_variables_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with pytest.raises(UserError, match="LOCAL_RANK is not.*torchrun"):
        distributed.setup(torch.device("cpu"))
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(UserError, match="MASTER_ADDR is not set"):
        distributed.setup(torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE='two' is not an integer"):
        distributed.setup(torch.device("cpu"))


def test_buckets_respect_the_size_cap_the_dtype_and_the_order() -> None:
    params = [nn.Parameter(torch.zeros(n)) for n in (10, 10, 30, 5)]
    params.insert(2, nn.Parameter(torch.zeros(4, dtype=torch.float64)))
    buckets = _buckets(params, bucket_bytes=80)  # 20 float32 elements
    assert [[p.numel() for p in b] for b in buckets] == [[10, 10], [4], [30], [5]]
    assert [p for b in buckets for p in b] == params


def test_rng_state_for_rank_picks_the_saved_stream() -> None:
    saved = {"per_rank": [{"r": 0}, {"r": 1}]}
    assert distributed.rng_state_for_rank(saved, 1, 2) == {"r": 1}
    assert distributed.rng_state_for_rank(saved, 2, 3) == {"r": 0}  # another world size: wraps
    assert distributed.rng_state_for_rank({"r": 9}, 1, 2) == {"r": 9}  # a single-process checkpoint


# ---------------------------------------------------------------------------------------------------
# Two gloo processes: the pieces


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _TwoTasks(nn.Module):
    """A shared front end (both losses reach it) and a head (only the main loss reaches it)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.unused = nn.Linear(1, 1)  # reached by neither loss on rank 1 (see _losses)

    def losses(self, x: torch.Tensor, target: torch.Tensor, has_clean: torch.Tensor, use_unused: bool):
        hidden = torch.tanh(self.front(x))  # (B, 4)
        main = ((self.head(hidden) - target) ** 2).sum(1).sum() / len(x)  # per-utterance average
        aux_per_utt = (hidden**2).sum(1) * has_clean
        aux = aux_per_utt.sum() / has_clean.sum().clamp(min=1)  # average over utterances with reference
        if use_unused:
            main = main + 0.0 * self.unused(x[:, :1]).sum()
        return main, aux


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=generator)
    target = torch.randn(5, 2, generator=generator)
    has_clean = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    return x, target, has_clean


def _combined_gradients(method: str, rank: int, world_size: int) -> tuple[list[torch.Tensor], dict]:
    """One engine step on the 5-utterance batch: rank 0 takes utterances 0-2, rank 1 takes 3-4."""
    torch.manual_seed(0)
    model = _TwoTasks()
    x, target, has_clean = _batch()
    rows = slice(0, 5) if world_size == 1 else [slice(0, 3), slice(3, 5)][rank]
    x, target, has_clean = x[rows], target[rows], has_clean[rows]
    settings = {"K": 1.5} if method == "gr" else {}  # a low K: the rescale branch fires too
    # The losses are weighted by each rank's share of the global batch: the ranks' gradients are summed.
    reducer = AllReduceTasks(op="sum", bucket_bytes=16)
    engine = GradientEngine(
        model.parameters(),
        model.front.parameters(),
        build_method(method, **settings),
        before_combination=[reducer],
    )
    has_text = torch.ones(len(x), dtype=torch.bool)
    main_weight, aux_weight = distributed.loss_weights(has_text, has_clean.bool(), world_size)
    main, aux = model.losses(x, target, has_clean, use_unused=rank == 0)
    engine.backward(main * main_weight, aux * aux_weight)
    engine.combine()
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
    info = {}
    if world_size > 1:
        info = {"bytes": reducer.bytes_last_call, "layout": engine.layout.padded}
    return grads, info


def _averaged_gradients(rank: int) -> list[torch.Tensor]:
    """AllReduceTasks(op="mean") as a plain DDP user would: every rank its own unweighted batch."""
    torch.manual_seed(0)
    model = _TwoTasks()
    x, target, has_clean = _batch()
    engine = GradientEngine(
        model.parameters(),
        model.front.parameters(),
        build_method("gr", K=1.5),
        before_combination=[AllReduceTasks()],
    )
    main, aux = model.losses(x * (1 + rank), target, has_clean, use_unused=False)
    engine.backward(main, aux)
    engine.combine()
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    context = distributed.setup(torch.device("cpu"))
    results: dict = {"context": (context.rank, context.world_size, context.local_rank)}
    results["weights"] = distributed.loss_weights(
        torch.ones([3, 2][rank], dtype=torch.bool),
        torch.tensor([[True, False, False], [True, True]][rank]),
        world_size,
    )
    # SE-only utterances (no transcript) do not count for the main weight: 2 of 3 transcribed here.
    results["text_weights"] = distributed.loss_weights(
        torch.tensor([[True, False, True], [False, False]][rank]), torch.ones([3, 2][rank]).bool(), world_size
    )
    for method in ("sum", "gr", "pcgrad"):
        results[method] = _combined_gradients(method, rank, world_size)
    results["mean"] = _averaged_gradients(rank)
    results["sums"] = distributed.sum_over_ranks([rank + 1.0, 10.0], world_size, context.device)
    results["gathered"] = distributed.gather_over_ranks([f"r{rank}a", f"r{rank}b"], world_size)
    logged = {"loss": torch.tensor(float(rank)), "acc": torch.tensor(4.0)}
    distributed.average_over_ranks(logged, world_size, context.device)
    results["logged"] = {k: float(v) for k, v in logged.items()}
    results["rng"] = distributed.gather_rng_states({"rank": rank}, world_size)
    module = nn.Linear(2, 2)
    with torch.no_grad():
        module.weight.fill_(float(rank))
    distributed.broadcast_state(module, world_size)
    results["broadcast"] = float(module.weight.detach().sum())
    with distributed.main_process_first(context):
        marker = Path(out_dir) / "first"
        results["saw_marker"] = marker.exists()
        if context.is_main:
            marker.write_text("rank 0 was here")
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    distributed.shutdown()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def test_context_and_loss_weights_count_the_global_batch(two_rank_results) -> None:
    assert [r["context"] for r in two_rank_results] == [(0, 2, 0), (1, 2, 1)]
    # 3 + 2 utterances, 1 + 2 references.
    weights = [float(w) for r in two_rank_results for w in r["weights"]]
    assert weights == pytest.approx([0.6, 1 / 3, 0.4, 2 / 3], rel=1e-6)
    text_weights = [float(w) for r in two_rank_results for w in r["text_weights"]]
    assert text_weights == pytest.approx([1.0, 0.6, 0.0, 0.4], rel=1e-6)


@pytest.mark.parametrize("method", ["sum", "gr", "pcgrad"])
def test_two_ranks_combine_the_single_process_gradients(two_rank_results, method) -> None:
    single, _ = _combined_gradients(method, 0, 1)
    for result in two_rank_results:
        grads, _ = result[method]
        for got, want in zip(grads, single):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_all_reduce_mean_combines_the_rank_average_of_each_task(two_rank_results) -> None:
    """Each task's gradient is averaged over the ranks first, then GR combines the averages."""
    torch.manual_seed(0)
    model = _TwoTasks()
    x, target, has_clean = _batch()
    shared = list(model.front.parameters())
    task_grads = []
    for scale in (1, 2):  # what rank 0 and rank 1 see
        main, aux = model.losses(x * scale, target, has_clean, use_unused=False)
        params = list(model.parameters())
        main_grads = torch.autograd.grad(main, params, retain_graph=True, allow_unused=True)
        main_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, main_grads)]
        task_grads.append((main_grads, torch.autograd.grad(aux, shared)))
    mean_main = [(g0 + g1) / 2 for g0, g1 in zip(task_grads[0][0], task_grads[1][0])]
    mean_aux = [(g0 + g1) / 2 for g0, g1 in zip(task_grads[0][1], task_grads[1][1])]
    combined = gradient_remedy(mean_main[: len(shared)], mean_aux, K=1.5)
    for result in two_rank_results:
        for got, want in zip(result["mean"], [*combined, *mean_main[len(shared) :]]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_bytes_per_step_are_plain_ddp_plus_the_shared_auxiliary_gradient(two_rank_results) -> None:
    torch.manual_seed(0)
    model = _TwoTasks()
    ddp = distributed.ddp_bytes_per_step(list(model.parameters()))
    shared = sum(p.numel() for p in model.front.parameters())
    for result in two_rank_results:
        info = result["gr"][1]
        # Non-shared main gradients (DDP's bytes minus the shared ones) + both padded flat buffers.
        assert info["bytes"] == ddp - 4 * shared + 2 * 4 * info["layout"]
        assert info["layout"] >= shared


def test_sums_gathers_averages_broadcast_and_order(two_rank_results) -> None:
    for result in two_rank_results:
        assert result["sums"] == [3.0, 20.0]
        assert result["gathered"] == ["r0a", "r0b", "r1a", "r1b"]
        assert result["logged"] == {"loss": 0.5, "acc": 4.0}
        assert result["rng"] == {"per_rank": [{"rank": 0}, {"rank": 1}]}
        assert result["broadcast"] == 0.0  # rank 0's weights everywhere
    assert [r["saw_marker"] for r in two_rank_results] == [False, True]


# ---------------------------------------------------------------------------------------------------
# torchrun, 2 processes against 1


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = make_tone_corpus(tmp_path_factory.mktemp("tones"), num_train=8, num_valid=4)
    spk1 = root / "train" / "spk1.scp"
    lines = spk1.read_text().splitlines()
    spk1.write_text("\n".join(lines[::3]) + "\n")  # clean references for 3 of the 8 utterances only
    return root


NO_RANDOMNESS = {
    "enhancer": {"dropout": 0.0},
    "frontend": {"specaugment": False},
    "encoder": {"dropout": 0.0},
    "decoder": {"dropout": 0.0},
}


def _config(path: Path, method: str, accum_grad: int) -> Path:
    config = write_config(
        path,
        surgery={"method": method},
        data={"batch_size": 3},  # global batches of 3, 3, 2: shares of 2 + 1 and 1 + 1
        train={"accum_grad": accum_grad, "max_steps": 4, "log_every": 1},
    )
    import yaml

    values = yaml.safe_load(config.read_text())
    for part, settings in NO_RANDOMNESS.items():
        values["model"].setdefault(part, {}).update(settings)
    config.write_text(yaml.safe_dump(values))
    return config


def _torchrun(config: Path, corpus: Path, exp: Path, *extra: str) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "gradremedy",
        "train",
        "--config",
        str(config),
        "--data",
        str(corpus),
        "--out",
        str(exp),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


GRADIENT_COLUMNS = ("grad_norm", "aux_norm", "main_norm", "cos_mean", "norm_ratio_median", "clip_frac")


def _assert_same_training(exp_one: Path, exp_two: Path) -> None:
    """Same gradients at every step, same validation results, same final weights (see below)."""
    for name, columns in (("metrics.csv", GRADIENT_COLUMNS), ("valid.csv", ("loss", "acc", "wer", "utts"))):
        one, two = _rows(exp_one / "logs" / name), _rows(exp_two / "logs" / name)
        if name == "valid.csv":  # a run stopped early by --max-steps validated once more when it stopped
            two = [r for r in two if r["step"] in {row["step"] for row in one}]
        assert [r["step"] for r in one] == [r["step"] for r in two] != []
        for row_one, row_two in zip(one, two):
            for column in columns:  # written with 6 significant digits
                want, got = float(row_one[column] or "nan"), float(row_two[column] or "nan")
                assert got == pytest.approx(want, rel=1e-4, abs=1e-6, nan_ok=True), (name, row_one["step"])
    one = load_checkpoint(exp_one / "checkpoints" / "last.pt")
    two = load_checkpoint(exp_two / "checkpoints" / "last.pt")
    model, _, _ = load_model(exp_one, "last", torch.device("cpu"))
    names = [name for name, _ in model.named_parameters()]
    assert one["model"].keys() == two["model"].keys()
    close = total = 0
    for index, name in enumerate(names):
        a, b = one["model"][name], two["model"][name]
        # Adam divides each gradient entry by its own RMS, so entries whose gradient is rounding noise
        # (e.g. attention key biases: softmax ignores them; RMS ~1e-11) take noise-driven steps of up to
        # lr in either direction, in one process as in two. Compared: entries with a real gradient.
        real = one["optimizer"]["state"][index]["exp_avg_sq"].sqrt() > 1e-8
        difference = (a - b).abs()[real]
        assert bool((difference < 1e-4).all()), name  # 2 % of one step of lr 0.005
        close += int((difference <= 1e-6 + 1e-5 * a.abs()[real]).sum())
        total += int(real.sum())
    assert total > 0.9 * sum(one["model"][n].numel() for n in names)
    assert close >= 0.99 * total  # the rest: rounding differences of 1e-4 relative, amplified by Adam
    for name in ("enhancer.stat_count", "enhancer.stat_sum", "enhancer.stat_sq_sum"):
        torch.testing.assert_close(one["model"][name], two["model"][name], rtol=1e-9, atol=1e-9)


def test_torchrun_two_processes_train_the_single_process_weights_sum(tmp_path, corpus) -> None:
    config = _config(tmp_path / "c.yaml", "sum", accum_grad=1)
    train(config_path=config, data_dir=corpus, exp_dir=tmp_path / "one")
    _torchrun(config, corpus, tmp_path / "two")
    _assert_same_training(tmp_path / "one", tmp_path / "two")
    last = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert len(last["rng"]["per_rank"]) == 2
    assert last["progress"]["step"] == 4
    assert not list((tmp_path / "two").glob("**/*.tmp*"))  # nothing half-written left behind


@pytest.mark.slow
def test_torchrun_gr_with_accumulation_and_resume_matches_one_process(tmp_path, corpus) -> None:
    config = _config(tmp_path / "c.yaml", "gr", accum_grad=2)
    train(config_path=config, data_dir=corpus, exp_dir=tmp_path / "one")
    _torchrun(config, corpus, tmp_path / "two", "--max-steps", "3")  # stops mid-epoch
    _torchrun(config, corpus, tmp_path / "two")  # resumes on both ranks from last.pt
    _assert_same_training(tmp_path / "one", tmp_path / "two")


# ---------------------------------------------------------------------------------------------------
# CUDA: NCCL, cuda:LOCAL_RANK, and no host synchronisation in the reduction + surgery


def _cuda_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    if world_size == 1:  # one GPU: a one-rank NCCL group still runs the all-reduce through NCCL
        dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    context = distributed.setup(torch.device("cuda"))
    assert dist.get_backend() == "nccl"
    torch.manual_seed(0)
    model = _TwoTasks().to(context.device)
    x, target, has_clean = (t.to(context.device) for t in _batch())
    engine = GradientEngine(
        model.parameters(),
        model.front.parameters(),
        build_method("gr", K=1.5),
        before_combination=[AllReduceTasks(op="sum")],
    )
    has_text = torch.ones(len(x), dtype=torch.bool, device=context.device)
    main_weight, aux_weight = distributed.loss_weights(has_text, has_clean.bool(), world_size)
    main, aux = model.losses(x, target, has_clean, use_unused=True)
    engine.backward(main * main_weight, aux * aux_weight)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        engine.combine()
        sync_error = ""
    except RuntimeError as err:
        sync_error = str(err)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    grads = [p.grad.cpu() for p in model.parameters()]
    result = {"device": str(context.device), "sync": sync_error, "grads": grads}
    torch.save(result, Path(out_dir) / f"{rank}.pt")
    distributed.shutdown()


@pytest.mark.gpu
def test_nccl_reduction_and_surgery_have_no_host_sync(tmp_path) -> None:
    world_size = min(2, torch.cuda.device_count())
    mp.spawn(_cuda_worker, args=(world_size, _free_port(), str(tmp_path)), nprocs=world_size, join=True)
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=False) for r in range(world_size)]
    assert [r["device"] for r in results] == [f"cuda:{r}" for r in range(world_size)]
    assert [r["sync"] for r in results] == [""] * world_size
    for result in results[1:]:
        for a, b in zip(result["grads"], results[0]["grads"]):
            torch.testing.assert_close(a, b)
