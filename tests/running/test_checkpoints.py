"""Cell checkpoints on disk: the newest two kept, a damaged or foreign one passed over, the final one kept."""

import torch

from protobench.running.checkpoints import KEEP, CellCheckpoints, describe_position

CPU = torch.device("cpu")


def state(step: int, epoch: int = 1, batch: int = 0) -> dict:
    return {"loop": {"step": step, "epoch": epoch, "batch": batch}, "weights": torch.full((3,), float(step))}


def cell(tmp_path, digest="a" * 64) -> CellCheckpoints:
    return CellCheckpoints(tmp_path / "m" / f"d2_s0_{digest[:10]}.json", digest, {"dim": 2})


def test_newest_kept_and_loaded(tmp_path):
    checkpoints = cell(tmp_path)
    for step in (5, 10, 15):
        checkpoints.save(state(step))
    assert [p.name for p in checkpoints.files()] == [
        "d2_s0_aaaaaaaaaa.ckpt-000000010.pt",
        "d2_s0_aaaaaaaaaa.ckpt-000000015.pt",
    ]
    assert KEEP == 2
    warnings = []
    loaded, path = checkpoints.load(CPU, warnings.append)
    assert loaded["loop"]["step"] == 15 and loaded["weights"][0] == 15 and path.name.endswith("015.pt")
    assert loaded["config"] == {"dim": 2} and warnings == []


def test_a_truncated_checkpoint_falls_back_to_the_previous_then_starts_over(tmp_path):
    checkpoints = cell(tmp_path)
    checkpoints.save(state(5))
    newest = checkpoints.save(state(10))
    newest.write_bytes(newest.read_bytes()[:100])  # cut short
    warnings = []
    loaded, path = checkpoints.load(CPU, warnings.append)
    assert loaded["loop"]["step"] == 5
    assert len(warnings) == 1 and str(newest) in warnings[0] and "trying the previous one" in warnings[0]
    path.write_bytes(b"not a checkpoint")
    warnings.clear()
    assert checkpoints.load(CPU, warnings.append) is None
    assert len(warnings) == 2 and warnings[-1].endswith("the cell starts over")


def test_a_checkpoint_of_another_configuration_is_never_used(tmp_path):
    mine = cell(tmp_path, "a" * 64)
    theirs = cell(tmp_path, "b" * 64)
    theirs.save(state(7))
    # The same file name as this cell's (e.g. copied in by hand), but made for the other config.
    theirs.files()[0].rename(mine.folder / "d2_s0_aaaaaaaaaa.ckpt-000000007.pt")
    warnings = []
    assert mine.load(CPU, warnings.append) is None
    assert "made for another configuration (hash bbbbbbbbbb, this cell aaaaaaaaaa)" in warnings[0]


def test_discard_and_keep_final(tmp_path):
    checkpoints = cell(tmp_path)
    checkpoints.save(state(5))
    checkpoints.save(state(10))
    assert checkpoints.keep_final() == "d2_s0_aaaaaaaaaa.pt"
    kept = torch.load(checkpoints.folder / "d2_s0_aaaaaaaaaa.pt", weights_only=True)
    assert kept["loop"]["step"] == 10
    checkpoints.discard()
    assert checkpoints.files() == [] and (checkpoints.folder / "d2_s0_aaaaaaaaaa.pt").exists()
    assert checkpoints.keep_final() is None


def test_describe_position():
    assert describe_position(state(12, epoch=2, batch=3), 5) == "epoch 3/5, after batch 3"
    assert describe_position(state(12, epoch=2, batch=0), 5) == "the end of epoch 2/5"
