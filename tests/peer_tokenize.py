"""Run with the published SurgCLIP package on PYTHONPATH: tokenizes tricky texts with its tokenizer.

    PYTHONPATH=.peer/site python tests/peer_tokenize.py VOCAB OUT.pt
"""
import json
import pathlib
import sys

import torch

from surgclip.bert_tokenizer import BertTokenizer
from surgclip.tokenizer import tokenize

TEXTS = [
    "Café résumé: the surgeon's naïve approach!",
    "clipping of the cystic duct " * 30,  # longer than 77 tokens: truncation
    "Hook-dissection (monopolar) / irrigation 3x, 10ml; #5 trocar ~ 12mm",
    "",
    "   ",
    "胆囊 gallbladder",
]

vocab, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
folder = out.parent / "vocab"
folder.mkdir(parents=True, exist_ok=True)
(folder / "vocab.txt").write_text(vocab.read_text())
(folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
tok = BertTokenizer.from_pretrained(str(folder))
torch.save({"texts": TEXTS, "input_ids": tokenize(TEXTS, tok).input_ids}, out)
