import lightning as L
import pytest
import torch

from surgclip.checkpoint import CheckpointMismatchError
from surgclip.train.module import SurgCLIPModule
from surgclip.train.optim import param_groups, warmup_cosine
from helpers import TINY_TRAIN, synthetic_datamodule


def _module(optim: dict | None = None, **kwargs):
    return SurgCLIPModule(model="tiny", model_overrides=TINY_TRAIN, optim={"warmup_steps": 2, "lr": 1e-3, **(optim or {})},
                          **kwargs)


def _trainer(tmp_path, **kwargs):
    opts = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                default_root_dir=tmp_path, num_sanity_val_steps=0, limit_val_batches=0,
                reload_dataloaders_every_n_epochs=1)
    opts.update(kwargs)
    return L.Trainer(**opts)


def _params(module):
    return {k: v.detach().clone() for k, v in module.model.state_dict().items()}


def test_resume_from_checkpoint_is_exact(tmp_path):
    L.seed_everything(0)
    full = _module()
    _trainer(tmp_path / "a", max_epochs=3, enable_checkpointing=False).fit(full, synthetic_datamodule(full.tokenizer))

    class Interrupt(L.Callback):  # the same run (max_epochs=3) stopped after two epochs
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                trainer.should_stop = True

    L.seed_everything(0)
    first = _module()
    trainer = _trainer(tmp_path / "b", max_epochs=3, callbacks=[Interrupt()])
    trainer.fit(first, synthetic_datamodule(first.tokenizer))
    assert trainer.current_epoch == 2 and trainer.global_step == 8
    ckpt = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    ckpt = ckpt or str(next((tmp_path / "b").rglob("*.ckpt")))

    L.seed_everything(123)  # a different process state must not matter
    resumed = _module()
    _trainer(tmp_path / "c", max_epochs=3, enable_checkpointing=False).fit(
        resumed, synthetic_datamodule(resumed.tokenizer), ckpt_path=ckpt)

    a, b = _params(full), _params(resumed)
    assert any(not torch.equal(a[k], _params(_module())[k]) for k in a)  # training changed the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_nan_loss_stops_with_step_and_video_ids(tmp_path):
    module = _module()
    dm = synthetic_datamodule(module.tokenizer, n=16, nan_at=5)
    with pytest.raises(FloatingPointError, match=r"loss is nan at global step \d+ .*videos in the batch: \['v"):
        _trainer(tmp_path, max_epochs=1).fit(module, dm)


def test_resume_from_another_model_names_the_keys(tmp_path):
    other = SurgCLIPModule(model="tiny", model_overrides={**TINY_TRAIN, "embed_dim": 8})
    trainer = _trainer(tmp_path / "o", max_steps=1)
    trainer.fit(other, synthetic_datamodule(other.tokenizer, n=8))
    ckpt = next((tmp_path / "o").rglob("*.ckpt"))
    module = _module()
    with pytest.raises(CheckpointMismatchError, match=r"cannot resume.*mis-shaped: .*vision_proj.weight"):
        _trainer(tmp_path / "r", max_steps=2).fit(module, synthetic_datamodule(module.tokenizer), ckpt_path=str(ckpt))


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'; choose one of \['adam', 'adamw', 'sgd'\]"):
        _module(optim={"optimizer": "lamb"})
    with pytest.raises(ValueError, match=r"unknown model 'tinyy'"):
        SurgCLIPModule(model="tinyy")
    with pytest.raises(ValueError, match=r"unknown level 4"):
        _module(loss={"level_weights": {4: 1.0}})
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lr_rate'\] in model.optim"):
        _module(optim={"lr_rate": 1.0})
    with pytest.raises(ValueError, match=r"no parameters under 'visual'"):
        param_groups(_module().model, 1e-3, 0.1, lr_scale={"visual": 0.1})


def test_param_groups_decay_scale_and_freeze():
    model = _module().model
    groups = param_groups(model, 1e-3, 0.05, lr_scale={"vision_encoder": 0.1}, freeze=["text_encoder"])
    by_name = {n: g for g in groups for n in g["names"]}
    assert not any(n.startswith("text_encoder") for n in by_name)
    assert all(not p.requires_grad for p in model.text_encoder.parameters())
    assert by_name["temp"]["weight_decay"] == 0.0
    assert by_name["vision_proj.bias"]["weight_decay"] == 0.0
    assert by_name["vision_proj.weight"]["weight_decay"] == 0.05 and by_name["vision_proj.weight"]["lr"] == 1e-3
    assert by_name["vision_encoder.trunk.pos_embed"]["weight_decay"] == 0.0
    assert by_name["vision_encoder.temporal.time_embed"]["weight_decay"] == 0.0
    trunk_w = next(n for n in by_name if n.startswith("vision_encoder.trunk.blocks") and n.endswith("qkv.weight"))
    assert by_name[trunk_w]["lr"] == pytest.approx(1e-4) and by_name[trunk_w]["weight_decay"] == 0.05
    assert any("norm" in n and by_name[n]["weight_decay"] == 0.0 for n in by_name)


def test_warmup_cosine_schedule():
    f = warmup_cosine(warmup_steps=4, total_steps=14, min_ratio=0.1)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.1 + 0.9 * 0.5)
    assert f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)


def test_level_weights_and_per_level_logging():
    module = _module(loss={"level_weights": {1: 1.0, 2: 0.0, 3: 0.0}})
    dm = synthetic_datamodule(module.tokenizer)
    batch = next(iter(dm.train_dataloader()))
    out = module.model_step(batch)
    only_level1 = out["per_sample"][batch["level"] == 1].mean()
    torch.testing.assert_close(out["loss"].detach(), only_level1)


@pytest.mark.slow
def test_resume_is_exact_with_the_real_datamodule(small_sample, tmp_path):
    """Random frame sampling + augmentation from the real pipeline, one worker process."""
    from surgclip.data.datamodule import SurgLaViDataModule

    def run(root, epochs, stop_after=None, ckpt=None):
        class Interrupt(L.Callback):
            def on_train_epoch_end(self, trainer, module):
                if stop_after is not None and trainer.current_epoch == stop_after - 1:
                    trainer.should_stop = True

        L.seed_everything(0)
        module = _module()
        dm = SurgLaViDataModule(root=str(small_sample), model_name="tiny", num_frames=2, batch_size=4, num_workers=1)
        trainer = _trainer(tmp_path / root, max_epochs=epochs, limit_train_batches=2, callbacks=[Interrupt()],
                           enable_checkpointing=ckpt is None)
        trainer.fit(module, dm, ckpt_path=ckpt)
        return module, trainer

    full, _ = run("full", 3)
    _, stopped = run("stopped", 3, stop_after=2)
    ckpt = stopped.checkpoint_callback.last_model_path or str(next((tmp_path / "stopped").rglob("*.ckpt")))
    resumed, _ = run("resumed", 3, ckpt=ckpt)
    a, b = _params(full), _params(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_uint8_batches_train_as_their_normalised_float_batches(small_sample):
    """A uint8 batch (``uint8_video``) reaches the model as it is, and the model (normalisation folded
    into its patch embedding) gives the embeddings and loss of the collate's normalised float batch."""
    from surgclip.data.datamodule import SurgLaViDataModule

    module = _module()
    batches = {}
    for uint8 in (False, True):
        dm = SurgLaViDataModule(root=str(small_sample), model_name="tiny", num_frames=2, batch_size=4,
                                num_workers=0, loader={"uint8_video": uint8})
        dm.set_model(module.tokenizer, module.model.preprocess_cfg.to_dict())
        dm.setup("fit")
        batches[uint8] = next(iter(dm.train_dataloader()))
    assert batches[True]["video"].dtype == torch.uint8 and batches[False]["video"].dtype == torch.float32
    assert module.on_after_batch_transfer(batches[True], 0)["video"].dtype == torch.uint8
    module.eval()
    with torch.no_grad():
        out = {uint8: module.model_step(batches[uint8]) for uint8 in (False, True)}
    torch.testing.assert_close(out[True]["video"], out[False]["video"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[True]["loss"], out[False]["loss"], rtol=1e-4, atol=1e-5)
