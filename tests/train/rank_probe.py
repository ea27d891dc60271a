"""A callback the multi-process tests add from the command line (``--trainer.callbacks+=rank_probe.RankProbe``):
each rank writes what it trained on, so the test can check that the ranks stayed in step."""
import json
import os

import lightning as L


class RankProbe(L.Callback):
    """Writes ``{out_dir}/rank{r}.json``: per training step the batch size, how many items were
    stand-ins for skipped ones and the caption ids, and the trainer's global step at the end of fit."""

    def __init__(self, out_dir: str):
        self.out_dir, self.batches, self.caption_ids = out_dir, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.batches.append([len(batch["video_id"]), int((~batch["valid"]).sum())])
        self.caption_ids.append(batch["caption_id"].tolist())

    def on_fit_end(self, trainer, module) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"global_step": trainer.global_step, "batches": self.batches, "caption_ids": self.caption_ids,
                       "frozen_trainable": [n for n, p in module.named_parameters()
                                            if n.startswith("model.text_encoder") and p.requires_grad]}, f)
