"""CholecT50: the label JSON and the challenge .txt files agree on the real data."""
import numpy as np

from surgclip import datasets as D
from surgclip.datasets import protocols as P
from surgclip.datasets.cholect50 import read_cholect50_json, read_cholect50_txt


def test_real_cholect50_json_matches_challenge_txt(realdata):
    protocol = D.load_protocol("cholect50")
    comps = {k: P.class_names(v) for k, v in protocol["components"].items()}
    sizes = {k: len(v) for k, v in comps.items()}
    for comp in ("triplet", "instrument", "verb", "target"):
        js = read_cholect50_json(realdata / "labels/cholect50_val/labels/VID73.json", sizes, comp)
        txt = read_cholect50_txt(realdata / f"labels/peskavlp/cholect50_challenge_train/{comp}/VID73.txt",
                                   comps[comp], component=comp)
        common = np.intersect1d(js.frame, txt.frame)
        assert len(common) > 50
        a = js.targets[np.searchsorted(js.frame, common)]
        b = txt.targets[np.searchsorted(txt.frame, common)]
        if comp == "triplet":
            assert (a == b).mean() > 0.99
        else:  # the challenge txt also marks components seen outside any annotated triplet instance
            assert (a <= b).mean() > 0.99, comp


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=True)


def test_real_cholect50_json_and_challenge_txt(realdata, tmp_path):
    _link(realdata / "labels/cholect50_val/labels", tmp_path / "json/labels")
    for comp in ("triplet", "instrument", "verb", "target"):
        _link(realdata / f"labels/peskavlp/cholect50_challenge_train/{comp}", tmp_path / f"txt/{comp}")
    ids = [73, 74]
    (tmp_path / "ids.txt").write_text("\n".join(map(str, ids)))
    for sub in ("json", "txt"):
        for vid in ids:
            (tmp_path / sub / "videos" / f"VID{vid}").mkdir(parents=True)
    for comp in ("triplet", "instrument", "verb", "target"):
        js = D.load_benchmark("cholect50", tmp_path / "json", split=str(tmp_path / "ids.txt"), task=comp)
        tx = D.load_benchmark("cholect50-txt", tmp_path / "txt", split=str(tmp_path / "ids.txt"), task=comp)
        assert js.classes == tx.classes and js.multilabel and tx.multilabel
        both = {(v, f) for v, f in zip(js.video, js.frame)} & {(v, f) for v, f in zip(tx.video, tx.frame)}
        assert len(both) > 300  # the JSON's annotated frames of VID73 + VID74
        a = {(v, f): t for v, f, t in zip(js.video, js.frame, js.targets)}
        b = {(v, f): t for v, f, t in zip(tx.video, tx.frame, tx.targets)}
        agree = np.mean([np.array_equal(a[k], b[k]) for k in both])
        print(f"{comp}: JSON and challenge .txt identical on {agree:.1%} of {len(both)} frames")
        # the challenge files mark more components than the JSON (known), never fewer
        assert all(np.all(a[k] <= b[k]) for k in both), comp
        assert agree > 0.5, (comp, agree)
