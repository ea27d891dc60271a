"""Tokenizers: plain callables ``list[str] -> LongTensor [N, L]``.

The BERT tokenizer reads the bert-base-uncased vocabulary shipped inside the package, so
tokenizing never needs a download. The published SurgCLIP tokenizer writes ``[CLS] tokens`` with
no ``[SEP]`` and pads with 0 to 77 tokens; ``append_sep=False`` reproduces that exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

ASSETS = Path(__file__).parent / "assets"
VOCABS = {"bert-base-uncased": ASSETS / "bert-base-uncased-vocab.txt"}


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ValueError("tokenize() got an empty list of texts; pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is a {type(text).__name__}, expected str: {text!r}")
    return texts


def _registered_vocab(name: str) -> Path | None:
    """A vocabulary registered as a downloadable file (``pretrained.VOCAB_FILES``: Bio_ClinicalBERT's, which
    is not shipped), resolved like weights: cache, else download; offline a clear error."""
    from .pretrained import VOCAB_FILES, resolve_file

    return resolve_file(name, VOCAB_FILES[name], "vocabulary") if name in VOCAB_FILES else None


class BertTokenizer:
    """WordPiece tokenizer for BERT text towers (lower-cased, accents stripped).

    Args:
        vocab: a registered vocabulary name (``bert-base-uncased``) or a path to a vocab.txt.
        context_length: tokens per text after padding/truncation.
        append_sep: end each text with ``[SEP]`` (standard BERT); the published SurgCLIP does not.
    """

    pad_id = 0

    def __init__(self, vocab: str = "bert-base-uncased", context_length: int = 77, append_sep: bool = False):
        from tokenizers import BertWordPieceTokenizer
        from tokenizers.processors import TemplateProcessing

        path = VOCABS.get(vocab) or _registered_vocab(vocab) or Path(vocab)
        if not path.is_file():
            raise FileNotFoundError(f"BERT vocabulary not found: {path} (known names: {sorted(VOCABS)})")
        self._tok = BertWordPieceTokenizer(str(path), lowercase=True)
        cls_id, sep_id = self._tok.token_to_id("[CLS]"), self._tok.token_to_id("[SEP]")
        single = "[CLS] $A [SEP]" if append_sep else "[CLS] $A"
        self._tok.post_processor = TemplateProcessing(
            single=single, pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        self.context_length = context_length
        self.vocab = vocab
        self.append_sep = append_sep
        self.vocab_size = self._tok.get_vocab_size()

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        texts = _check_texts(texts)
        length = context_length or self.context_length
        self._tok.enable_truncation(length)
        self._tok.enable_padding(length=length, pad_id=self.pad_id, pad_token="[PAD]")
        return torch.tensor([enc.ids for enc in self._tok.encode_batch(texts)], dtype=torch.long)

    def config(self) -> dict:
        return {"type": "bert", "vocab": self.vocab, "context_length": self.context_length,
                "append_sep": self.append_sep}


class OpenCLIPTokenizer:
    """open_clip's tokenizer for a given open_clip model name (BPE, 77 tokens)."""

    pad_id = 0

    def __init__(self, model: str = "ViT-B-16", context_length: int = 77):
        import open_clip

        self._tok = open_clip.get_tokenizer(model)
        self.model = model
        self.context_length = context_length

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        return self._tok(_check_texts(texts), context_length=context_length or self.context_length)

    def config(self) -> dict:
        return {"type": "open_clip", "model": self.model, "context_length": self.context_length}


class HFTokenizer:
    """A Hugging Face tokenizer read from a local folder (MedSigLIP's), padded to ``context_length``.

    Args:
        path: folder holding the tokenizer files (``tokenizer.json`` / ``tokenizer_config.json`` ...).
        context_length: tokens per text; every text is padded to it (SigLIP towers pool the last
            position, so they are run on texts padded as in training).
    """

    def __init__(self, path: str, context_length: int = 64):
        from transformers import AutoTokenizer

        if not Path(path).is_dir():
            raise FileNotFoundError(f"tokenizer folder not found: {path}")
        self._tok = AutoTokenizer.from_pretrained(str(path))
        self.path, self.context_length = str(path), int(context_length)
        self.pad_id = int(self._tok.pad_token_id or 0)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.LongTensor:
        enc = self._tok(_check_texts(texts), padding="max_length", truncation=True,
                        max_length=context_length or self.context_length, return_tensors="pt")
        return enc["input_ids"].long()

    def config(self) -> dict:
        return {"type": "hf", "path": self.path, "context_length": self.context_length}


def build_tokenizer(cfg: dict):
    """Tokenizer from the ``tokenizer`` section of an architecture config."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "bert")
    if kind == "bert":
        return BertTokenizer(**cfg)
    if kind == "open_clip":
        return OpenCLIPTokenizer(**cfg)
    if kind == "hf":
        return HFTokenizer(**cfg)
    raise ValueError(f"unknown tokenizer type {kind!r}; expected 'bert', 'open_clip' or 'hf'")


def tokenize(texts: str | Sequence[str], tokenizer, device: str | torch.device = "cpu", max_length: int = 77,
             truncate: bool = True) -> torch.LongTensor:
    """Tokenize texts for ``model.encode_text`` (the published SurgCLIP signature).

    Args:
        texts: one string or a list of strings.
        tokenizer: the tokenizer returned by ``surgclip.load`` / ``get_tokenizer``.
        device: where to put the ids.
        max_length: tokens per text (padding and truncation).
        truncate: kept for API compatibility; texts are always truncated to ``max_length``.
    Returns:
        LongTensor [N, max_length]; padding is 0, so the attention mask is ``ids != 0``.
    """
    return tokenizer(texts, context_length=max_length).to(device)
