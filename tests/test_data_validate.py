import json

import numpy as np
from PIL import Image

from data_prep import synthetic, validate


def test_clean_synthetic_dataset_passes(tmp_path, capsys):
    synthetic.generate_dataset(tmp_path / "d", num_videos=5, seed=0)
    assert validate.main(["--format", "groundmore", "--root", str(tmp_path / "d"), "--images", "full"]) == 0
    assert "0 problems" in capsys.readouterr().out


def test_every_problem_is_listed(tmp_path, capsys):
    root = tmp_path / "d"
    synthetic.generate_dataset(root, num_videos=5, seed=0)
    meta = json.loads((root / "train.json").read_text())
    videos = meta["videos"]
    vid, other = sorted(videos)[:2]
    q = next(iter(videos[vid]["questions"].values()))
    q["obj_id"] = "9"  # absent from the masks
    del next(iter(videos[other]["questions"].values()))["q_type"]  # missing field
    videos["../escape_0000_0004"] = {"questions": {}}
    (root / "train.json").write_text(json.dumps(meta))
    frames = sorted((root / "annotations" / other / "images").iterdir())
    frames[3].write_bytes(b"garbage")  # unreadable image
    for f in frames[-7:]:  # more than a second short of the clip length in the id
        f.unlink()
    (root / "extra.json").write_text("[1, 2]")  # a meta JSON at the root that is not GroundMoRe
    rc = validate.main(["--format", "groundmore", "--root", str(root)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "obj_id [9] absent" in out
    assert "lacks ['q_type']" in out
    assert "escapes the dataset root" in out
    assert "unreadable image" in out and frames[3].name in out
    assert "frames, but the id's clip lasts" in out
    assert "extra.json" in out


def test_referring_formats_and_bad_arguments(tmp_path, capsys):
    split = tmp_path / "train"
    (split / "JPEGImages" / "v").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(split / "JPEGImages" / "v" / "00000.jpg")
    meta = {
        "videos": {
            "v": {
                "frames": ["00000", "00001"],
                "expressions": {"0": {"exp": "x", "obj_id": [1], "anno_id": [5]}},
            }
        }
    }
    (split / "meta_expressions.json").write_text(json.dumps(meta))
    (split / "mask_dict.json").write_text(json.dumps({"5": [None, None]}))
    assert validate.main(["--format", "mevis", "--root", str(tmp_path), "--split", "train"]) == 1
    out = capsys.readouterr().out
    assert "00001.jpg: frame file is missing" in out and "empty on every frame" in out
    assert validate.main(["--format", "groundmore", "--root", str(tmp_path / "nope")]) == 2
    assert "--root" in capsys.readouterr().err
