"""Train a probe module on packed shards with Lightning and record what each rank trained on.

Run as a script (``python shard_probe.py ROOT SHARDS OUT DEVICES [CKPT]``) so that Lightning's DDP
launcher can start the other rank by running it again; the tests import ``make_datamodule`` and
``Probe`` for one process. Each rank writes ``OUT/rank{r}.json``: per training step the epoch, the
caption ids and which items were real.
"""
import json
import os
import sys

import lightning as L
import torch


def make_datamodule(root, shards, **overrides):
    from surgclip.data.datamodule import SurgLaViDataModule

    kwargs = dict(root=str(root), read_from="shards", shards=None if shards is None else str(shards), num_frames=2,
                  batch_size=8,
                  num_workers=0, seed=5)
    kwargs.update(overrides)
    dm = SurgLaViDataModule(**kwargs)
    dm.set_model(lambda texts: torch.zeros(len(texts), 4, dtype=torch.long), {"image_size": 32})
    return dm


class Probe(L.LightningModule):
    """One weight; its loss touches every clip so that DDP has a gradient to reduce."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.out_dir, self.steps = out_dir, []

    def training_step(self, batch, batch_idx):
        self.steps.append({"epoch": self.current_epoch, "caption_id": batch["caption_id"].tolist(),
                           "valid": batch["valid"].tolist(), "level": batch["level"].tolist()})
        return (self.w * batch["video"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def on_fit_end(self):
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{self.global_rank}.json"), "w") as f:
            json.dump(self.steps, f)


def trainer(devices: int = 1, max_epochs: int = 2, callbacks=(), default_root_dir=None) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                     max_epochs=max_epochs, limit_val_batches=0, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, enable_checkpointing=bool(callbacks), callbacks=list(callbacks),
                     reload_dataloaders_every_n_epochs=1, default_root_dir=default_root_dir)


if __name__ == "__main__":
    root, shards, out, devices = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    trainer(devices).fit(Probe(out), datamodule=make_datamodule(root, shards))
