"""The ESPnet adapter with the real ``espnet`` package: a tiny ``ESPnetEnhS2TModel`` trained on CPU for a few
steps on a synthetic Kaldi-style corpus, through ESPnet's own command line, data loading and trainer loop.

(a) ``gradient_method: sum`` gives the weights of ESPnet's stock ``EnhS2TTask`` trainer (1e-6), with
    ``accum_grad`` and ``grad_clip`` acting;
(b) ``gradient_method: gr``: the update of the enhancement (shared) parameters equals the functional
    ``gradient_remedy()`` applied to the per-task gradients of ESPnet's own model on the batch ESPnet's
    own data loading produces;
(c) ``gr`` with 2 gloo processes (``torchrun``, DistributedDataParallel, ESPnet splitting each batch over
    the ranks) gives the weights of 1 process: each task is averaged over the ranks before the combination.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("espnet2")

from espnet2.tasks.enh_s2t import EnhS2TTask  # noqa: E402
from espnet2.torch_utils.set_all_random_seed import set_all_random_seed  # noqa: E402

from gradremedy.integrations.espnet import EnhS2TTwoLossModel, GradientMethodEnhS2TTask  # noqa: E402
from gradremedy.surgery import gradient_remedy  # noqa: E402

from .examples import EXAMPLES, assert_example_trains_sum_then_gr  # noqa: E402

sys.path.insert(0, str(EXAMPLES))
from espnet_gradient_remedy import tiny_config, write_corpus  # noqa: E402

LR = 0.05


@pytest.fixture(autouse=True)
def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("espnet")
    write_corpus(root)
    return root


def _train(task: type, config: Path, out: Path, *extra: str) -> dict[str, torch.Tensor]:
    task.main(cmd=["--config", str(config), "--output_dir", str(out), *extra])
    return torch.load(out / "latest.pth")


def test_sum_equals_the_stock_trainer(corpus: Path) -> None:
    config = tiny_config(corpus, max_epoch=2, accum_grad=2, grad_clip=1.0)  # 2 optimizer steps, clipped
    stock = _train(EnhS2TTask, config, corpus / "exp-stock")
    ours = _train(GradientMethodEnhS2TTask, config, corpus / "exp-sum", "--gradient_method", "sum")
    assert set(ours) == set(stock)
    for name in stock:
        torch.testing.assert_close(ours[name], stock[name], rtol=1e-6, atol=1e-6, msg=name)
    set_all_random_seed(0)
    initial = GradientMethodEnhS2TTask.build_model(_args(config, corpus / "exp-sum"))
    moved = [n for n, p in initial.state_dict().items() if not torch.equal(p, stock[n])]
    assert any(n.startswith("enh_model.") for n in moved) and any(n.startswith("s2t_model.") for n in moved)


def _args(config: Path, out: Path) -> argparse.Namespace:
    parser = GradientMethodEnhS2TTask.get_parser()
    return parser.parse_args(["--config", str(config), "--output_dir", str(out)])


def test_gr_update_of_the_enhancement_model_equals_the_functional_form(corpus: Path) -> None:
    # One step on one batch holding the whole corpus; an enhancement loss large enough for GR to act.
    config = tiny_config(
        corpus, enh_weight=300.0, batch_size=4, accum_grad=1, grad_clip=1e9,
        gradient_method="gr", gradient_method_conf={"K": 1.0},
    )
    out = corpus / "exp-gr"
    trained = _train(GradientMethodEnhS2TTask, config, out)

    args = _args(config, out)
    set_all_random_seed(args.seed)  # as ESPnet does before building the model: the initial weights
    model = GradientMethodEnhS2TTask.build_model(args)
    assert isinstance(model, EnhS2TTwoLossModel)
    model.train()
    loader = GradientMethodEnhS2TTask.build_streaming_iterator(
        data_path_and_name_and_type=args.train_data_path_and_name_and_type,
        preprocess_fn=GradientMethodEnhS2TTask.build_preprocess_fn(args, train=True),
        collate_fn=GradientMethodEnhS2TTask.build_collate_fn(args, train=True),
        key_file=args.train_shape_file[0],
        batch_size=4,
        dtype="float32",
        num_workers=0,
    )
    [(keys, batch)] = list(loader)
    retval = model(**batch, utt_id=keys)
    shared_names, shared = zip(*model.enh_model.named_parameters())
    a = torch.autograd.grad(retval["loss_main"].sum(), shared, retain_graph=True)
    s = torch.autograd.grad(retval["loss_aux"].sum(), shared)
    expected = gradient_remedy(list(a), list(s), K=1.0)
    assert any(not torch.allclose(e, ai + si, rtol=1e-3) for e, ai, si in zip(expected, a, s))  # GR acted
    for name, p, g in zip(shared_names, shared, expected):
        torch.testing.assert_close(trained[f"enh_model.{name}"], p.detach() - LR * g, rtol=1e-5, atol=1e-6)

    # ESPnet's stock task (and so its inference) loads what the adapter trained.
    stock, _ = EnhS2TTask.build_model_from_file(out / "config.yaml", out / "latest.pth", "cpu")
    assert type(stock).__name__ == "ESPnetEnhS2TModel"
    assert all(torch.equal(stock.state_dict()[k], v) for k, v in trained.items())


def test_unknown_method_setting_is_refused_in_one_line(corpus: Path, tmp_path: Path) -> None:
    config = tiny_config(corpus, gradient_method="gr", gradient_method_conf={"beta": 0.1})
    with pytest.raises(ValueError, match="method 'gr' has no setting beta"):
        _train(GradientMethodEnhS2TTask, config, tmp_path / "exp")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gr_with_two_gloo_processes_equals_one_process(corpus: Path) -> None:
    config = tiny_config(
        corpus, enh_weight=300.0, batch_size=4, accum_grad=1, grad_clip=5.0, max_epoch=2,
        gradient_method="gr", gradient_method_conf={"K": 1.0},
    )
    one = _train(GradientMethodEnhS2TTask, config, corpus / "exp-gr-1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "gradremedy.integrations.espnet", "--config", str(config),
           "--output_dir", str(corpus / "exp-gr-2"), "--dist_backend", "gloo",
           "--multiprocessing_distributed", "false"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    # Known, on this CPU + gloo set-up: a rank sometimes aborts while the process exits, after training
    # finished and the weights were saved ("terminate called without an active exception"; about 1 run
    # in 5 here). Tolerated only in exactly that case: the weights below are still compared.
    teardown_abort = (
        "The training was finished" in done.stderr
        and "terminate called without an active exception" in done.stderr
    )
    assert done.returncode == 0 or teardown_abort, done.stderr[-4000:]
    two = torch.load(corpus / "exp-gr-2" / "latest.pth")
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=2e-5, msg=name)


def test_the_rats_recipe_config_builds_the_papers_model(corpus: Path, tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "configs" / "espnet" / "train_enh_asr_rats_gr.yaml"
    args = GradientMethodEnhS2TTask.get_parser().parse_args(
        ["--config", str(recipe), "--output_dir", str(tmp_path), "--token_list", str(corpus / "tokens.txt")]
    )
    assert args.gradient_method == "gr"
    assert args.gradient_method_conf == {"K": 5.0, "max_stretch": float("inf")}
    assert (args.accum_grad, args.grad_clip, args.optim_conf["lr"]) == (4, 5.0, 0.002)
    model = GradientMethodEnhS2TTask.build_model(args)
    blstm = model.enh_model.separator.rnn.nbrnn  # BLSTM 3x896 mask
    assert (blstm.num_layers, blstm.hidden_size, blstm.bidirectional) == (3, 896, True)
    assert len(model.s2t_model.encoder.encoders) == 12 and len(model.s2t_model.decoder.decoders) == 6
    assert model.s2t_model.ctc_weight == 0.3
    assert model.enh_model.loss_wrappers[0].weight == 0.3


def test_the_example_runs() -> None:
    assert_example_trains_sum_then_gr("espnet_gradient_remedy.py", "--epochs", "1")
