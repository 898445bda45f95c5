import dataclasses
import json
import os
import re
import shutil
import signal

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError, DataConfig, ExperimentConfig, TrainConfig
from tf_pix2pix.models import load_config
from tf_pix2pix.models.pix2pix import Pix2PixConfig
from tf_pix2pix.metrics.scoring import evaluate
from tf_pix2pix.runtime.checkpointing import checkpoint_dir
from tf_pix2pix.runtime.training import TrainingDivergedError, build_trainer, train

from conftest import event_tags


def tiny_config(records_dir, model_dir, **options):
    options = {"summary_every_steps": 2, "image_every_steps": 4, "save_every_steps": 4,
               "val_max_examples": 4, "n_epochs": 2, "n_epochs_decay": 2, **options}
    return models.resolve("pix2pix", data_dir=records_dir, load_size=36, crop_size=32,
                          batch_size=2, seed=3, netG="unet_32", ngf=8, ndf=8,
                          model_dir=str(model_dir), **options)


def test_end_to_end_writes_checkpoints_config_events_and_samples(records_dir, tmp_path):
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=8)
    result = train(cfg, progress=False)
    assert result.step == 8 and result.total_steps == 8
    assert set(result.losses) == {"G_GAN", "G_L1", "D_real", "D_fake"}
    ckpts = tf.train.get_checkpoint_state(checkpoint_dir(cfg.train.model_dir))
    # every 4 steps, and at the end of epoch 1 (12 examples / batch 2 = 6 steps)
    assert [os.path.basename(p) for p in ckpts.all_model_checkpoint_paths] == [
        "ckpt-4", "ckpt-6", "ckpt-8"]
    assert load_config(cfg.train.model_dir) == cfg
    assert event_tags(tmp_path / "m" / "train") >= {
        "loss/G_GAN", "loss/G_L1", "loss/D_real", "loss/D_fake", "learning_rate",
        "steps_per_sec", "images_per_sec", "train/input_output_target"}
    assert event_tags(tmp_path / "m" / "val") >= {
        "metrics/l1", "metrics/psnr", "metrics/ssim", "val/input_output_target"}
    assert set(result.val_metrics) == {"l1", "psnr", "ssim", "count"}
    samples = os.listdir(tmp_path / "m" / "samples")
    assert {"train_latest.png", "val_latest.png", "train_step0000004.png"} <= set(samples)
    png = tf.io.decode_png(open(tmp_path / "m" / "samples" / "val_latest.png", "rb").read())
    # Eval-mode val batches hold 4 rows: input | output | target, under a strip naming them;
    # the 32-px tiles enlarged 4x (nearest) to 128.
    assert png.shape == (16 + 4 * 128, 3 * 128, 3)


def test_resume_continues_the_step_and_restores_optimizer_state(records_dir, tmp_path):
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=4)
    first = build_trainer(cfg, progress=False)
    first.run()
    slots = [v.numpy().copy() for v in first.model.g_optimizer.variables]
    again = build_trainer(tiny_config(records_dir, tmp_path / "m", max_steps=6), progress=False)
    assert again.restore() == 4
    assert int(again.model.g_optimizer.iterations.numpy()) == 4
    for a, b in zip(slots, again.model.g_optimizer.variables):
        np.testing.assert_array_equal(a, b.numpy())
    result = again.run()
    assert result.step == 6


def test_two_n_steps_equal_n_plus_restart_plus_n(records_dir, tmp_path):
    straight = build_trainer(tiny_config(records_dir, tmp_path / "a", max_steps=10),
                             progress=False)
    straight.run()
    train(tiny_config(records_dir, tmp_path / "b", max_steps=5), progress=False)
    resumed = build_trainer(tiny_config(records_dir, tmp_path / "b", max_steps=10),
                            progress=False)
    resumed.run()
    for a, b in zip(straight.model.generator.weights, resumed.model.generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_another_architecture_in_the_model_dir_is_refused(records_dir, tmp_path):
    train(tiny_config(records_dir, tmp_path / "m", max_steps=2), progress=False)
    other = tiny_config(records_dir, tmp_path / "m", max_steps=4)
    other = other.replace(ngf=16, norm="instance")
    with pytest.raises(ConfigError, match=r"model.ngf: 8 -> 16; model.norm: 'batch' -> "
                                          r"'instance'"):
        train(other, progress=False)
    # Non-architecture changes (learning rate, steps) are fine.
    lr = tiny_config(records_dir, tmp_path / "m", max_steps=3, lr=1e-4)
    assert train(lr, progress=False).step == 3


def test_other_input_pipeline_flags_are_refused_on_resume(records_dir, tmp_path):
    train(tiny_config(records_dir, tmp_path / "m", max_steps=2), progress=False)
    other = tiny_config(records_dir, tmp_path / "m", max_steps=4)
    other = other.replace(batch_size=3)
    with pytest.raises(ConfigError, match=r"input-pipeline position for other data flags "
                                          r"\(data.batch_size: 2 -> 3\)"):
        train(other, progress=False)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(records_dir, tmp_path):
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=3, save_every_steps=1)
    train(cfg, progress=False)
    # An absurd learning rate makes the weights overflow within a step or two. The config
    # refuses rates above 1 (issue 33), so it is set behind the frozen dataclass's back.
    bad = tiny_config(records_dir, tmp_path / "m", max_steps=20, save_every_steps=1)
    object.__setattr__(bad.train, "lr", 1e30)
    with pytest.raises(TrainingDivergedError, match="Last good checkpoint") as err:
        train(bad, progress=False)
    latest = tf.train.latest_checkpoint(checkpoint_dir(cfg.train.model_dir))
    assert latest in str(err.value)
    for name, _ in tf.train.list_variables(latest):
        if name.startswith(("generator", "discriminator")) and "VARIABLE_VALUE" in name:
            value = tf.train.load_variable(latest, name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.isfinite(value).all(), name


def test_sigterm_saves_a_checkpoint_and_stops(records_dir, tmp_path):
    trainer = build_trainer(tiny_config(records_dir, tmp_path / "m", max_steps=20),
                            progress=False)
    step_fn = trainer.model.train_step

    def step_then_signal(batch):
        out = step_fn(batch)
        if int(trainer.model.step.numpy()) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    trainer.model.train_step = step_then_signal
    result = trainer.run()
    assert result.stopped_by_signal and result.step == 3
    assert result.checkpoint.endswith("ckpt-3")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_learnable_toy_case_l1_falls(records_dir, tmp_path):
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=150, summary_every_steps=50,
                      image_every_steps=150, save_every_steps=150, lr=1e-3, lr_policy="constant")
    trainer = build_trainer(cfg, progress=False)
    val = trainer.val_dataset
    before = evaluate(lambda x: trainer.model.generate(x), val)["l1"]
    result = trainer.run()
    after = evaluate(lambda x: trainer.model.generate(x), val)["l1"]
    assert after < 0.6 * before, (before, after)
    assert result.val_metrics["l1"] == pytest.approx(after, rel=1e-5)


def test_missing_data_and_model_dir_are_clear(tmp_path):
    cfg = ExperimentConfig(data=DataConfig(data_dir=str(tmp_path)), model=Pix2PixConfig(),
                           train=TrainConfig(model_dir=str(tmp_path / "m")))
    from tf_pix2pix.data import DataError
    with pytest.raises(DataError, match="manifest.json not found"):
        train(cfg, progress=False)
    with pytest.raises(ConfigError, match="pass --model_dir"):
        train(ExperimentConfig(data=DataConfig(data_dir="x"), model=Pix2PixConfig()),
              progress=False)
    # A section that is not the model's is refused before anything is written.
    with pytest.raises(ConfigError, match="takes its options as Pix2PixConfig"):
        train(ExperimentConfig(data=DataConfig(data_dir=str(tmp_path)),
                               train=TrainConfig(model_dir=str(tmp_path / "n"))),
              progress=False)
    assert not os.path.exists(tmp_path / "n")


def test_two_replica_training_checkpoints_and_resumes(records_dir, tmp_path, monkeypatch):
    """MirroredStrategy over the two logical CPUs: sync BN, distributed input, resume."""
    from tf_pix2pix.runtime import workers

    monkeypatch.setattr(workers, "make_strategy",
                        lambda name: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=4, strategy="mirrored")
    first = build_trainer(cfg, progress=False)
    assert first.strategy.num_replicas_in_sync == 2
    assert first.model.generator.get_layer("down1_norm").synchronized
    result = first.run()
    assert result.step == 4 and all(np.isfinite(list(result.losses.values())))
    assert os.path.exists(tmp_path / "m" / "samples" / "train_step0000004.png")
    resumed = build_trainer(tiny_config(records_dir, tmp_path / "m", max_steps=6,
                                        strategy="mirrored"), progress=False)
    assert resumed.restore() == 4
    assert resumed.run().step == 6
    # The resumed run continues exactly where 6 uninterrupted steps would be.
    straight = build_trainer(tiny_config(records_dir, tmp_path / "s", max_steps=6,
                                         strategy="mirrored"), progress=False)
    straight.run()
    for a, b in zip(straight.model.generator.weights, resumed.model.generator.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


@pytest.mark.parametrize("damage", ["truncate_data", "remove_index"])
def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(records_dir, tmp_path, capfd,
                                                                 damage):
    straight = build_trainer(tiny_config(records_dir, tmp_path / "a", max_steps=10),
                             progress=False)
    straight.run()
    train(tiny_config(records_dir, tmp_path / "b", max_steps=8), progress=False)
    prefix = os.path.join(checkpoint_dir(str(tmp_path / "b")), "ckpt-8")
    if damage == "truncate_data":
        data = prefix + ".data-00000-of-00001"
        with open(data, "r+b") as f:
            f.truncate(os.path.getsize(data) // 2)
    else:
        os.remove(prefix + ".index")
    resumed = build_trainer(tiny_config(records_dir, tmp_path / "b", max_steps=10),
                            progress=False)
    assert resumed.restore() == 6  # ckpt-6 (end of epoch 1) is the newest readable one
    err = capfd.readouterr().err
    assert f"warning: checkpoint {prefix} is unreadable" in err and "ckpt-6 instead" in err
    resumed.run()
    for a, b in zip(straight.model.generator.weights, resumed.model.generator.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_partial_writes_of_an_interrupted_save_are_removed_before_resuming(records_dir, tmp_path,
                                                                          capfd):
    from tf_pix2pix.runtime.checkpointing import remove_partial_saves

    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=4)
    train(cfg, progress=False)
    folder = checkpoint_dir(cfg.train.model_dir)
    # What a SIGKILL during the save of step 6 leaves: TensorFlow's temporary folder and state file.
    os.makedirs(os.path.join(folder, "ckpt-6_temp"))
    with open(os.path.join(folder, "ckpt-6_temp", "part-00000-of-00001.data-00000-of-00001"),
              "wb") as f:
        f.write(b"\0" * 100)
    with open(os.path.join(folder, "checkpoint.tmp0123abcd"), "w") as f:
        f.write("model_checkpoint_path: \"ckpt")
    kept = sorted(os.listdir(folder))
    result = train(tiny_config(records_dir, tmp_path / "m", max_steps=6), progress=False)
    assert result.step == 6
    out = capfd.readouterr().out
    assert "Removed 2 partial checkpoint write(s) of an interrupted save: checkpoint.tmp0123abcd, " \
           "ckpt-6_temp" in out
    assert "Resumed from" in out and "ckpt-4 at step 4" in out
    names = os.listdir(folder)
    assert not [n for n in names if n.endswith("_temp") or ".tmp" in n]
    assert set(kept) - {"ckpt-6_temp", "checkpoint.tmp0123abcd"} <= set(names)
    assert remove_partial_saves(str(tmp_path / "nothing")) == []


def _copy_with_bad_shard(records_dir, dest, how):
    """A copy of the records whose first train shard has 40 bytes flipped in its middle
    (``flip``) or lost its second half (``truncate``); returns (copy, shard path)."""
    shutil.copytree(records_dir, dest)
    manifest = json.load(open(os.path.join(dest, "manifest.json")))
    shard = os.path.join(dest, manifest["splits"]["train"]["shards"][0])
    data = bytearray(open(shard, "rb").read())
    middle = len(data) // 2
    if how == "flip":
        data[middle:middle + 40] = bytes(b ^ 0xFF for b in data[middle:middle + 40])
    else:
        del data[middle:]
    open(shard, "wb").write(bytes(data))
    return str(dest), shard


def test_a_corrupt_record_mid_epoch_stops_with_a_checkpoint_and_resumes_exactly(records_dir,
                                                                                tmp_path):
    from tf_pix2pix.data import CorruptDataError

    def config(data_dir, model_dir):  # a small shuffle buffer: records are read as needed
        cfg = tiny_config(data_dir, model_dir, max_steps=10)
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, shuffle_buffer=2))

    straight = train(config(records_dir, tmp_path / "a"), progress=False)
    data_dir, shard = _copy_with_bad_shard(records_dir, tmp_path / "bad", "flip")
    cfg = config(data_dir, tmp_path / "b")
    with pytest.raises(CorruptDataError) as error:
        train(cfg, progress=False)
    message = str(error.value)
    match = re.search(r"training stopped at step (\d+), saved in (\S+ckpt-\d+)", message)
    assert match, message
    assert message.startswith(f"{shard} has a corrupted record at ")
    assert "python -m data_prep.verify --data_dir" in message and "\n" not in message
    step = int(match.group(1))
    assert 0 < step < 10  # in the middle of the run, not at its start
    assert tf.train.latest_checkpoint(checkpoint_dir(cfg.train.model_dir)).endswith(
        f"ckpt-{step}")
    # The shard rebuilt (here: copied again), the same command continues exactly.
    shutil.copy(os.path.join(records_dir, os.path.basename(shard)), shard)
    resumed = train(cfg, progress=False)
    assert resumed.step == 10 and resumed.weights_sha256 == straight.weights_sha256


def test_a_truncated_shard_is_refused_at_start_up_naming_it(records_dir, tmp_path):
    from tf_pix2pix.data import DataError

    data_dir, shard = _copy_with_bad_shard(records_dir, tmp_path / "cut", "truncate")
    with pytest.raises(DataError, match=rf"shard {shard} is \d+ bytes, the manifest says \d+ .*"
                                        r"python -m data_prep.verify"):
        train(tiny_config(data_dir, tmp_path / "m", max_steps=2), progress=False)
    assert not os.path.exists(tmp_path / "m" / "checkpoints")


def test_a_failed_checkpoint_write_is_one_line_and_leaves_the_last_complete_one(
        records_dir, tmp_path, monkeypatch):
    from tf_pix2pix.runtime.checkpointing import CheckpointWriteError

    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=8)
    real_save = tf.train.CheckpointManager.save

    def full_disk(manager, checkpoint_number=None, **kwargs):
        if int(checkpoint_number) < 8:
            return real_save(manager, checkpoint_number=checkpoint_number, **kwargs)
        # What a full disk leaves: a partial copy of the weights, then the error.
        os.makedirs(os.path.join(manager.directory, f"ckpt-{int(checkpoint_number)}_temp"))
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointWriteError) as error:
        train(cfg, progress=False)
    message = str(error.value)
    folder = checkpoint_dir(cfg.train.model_dir)
    assert message.startswith(f"could not write checkpoint {folder}/ckpt-8 (ResourceExhausted"
                              "Error: No space left on device; it needs about ")
    assert "MiB free); the newest complete checkpoint is " + f"{folder}/ckpt-6" in message
    assert "rerun the same command to resume from it" in message and "\n" not in message
    assert "ckpt-8_temp" not in os.listdir(folder)  # the partial write is gone at once
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    resumed = build_trainer(cfg, progress=False)
    assert resumed.restore() == 6 and resumed.run().step == 8


def test_a_full_disk_at_the_first_checkpoint_is_one_line(records_dir, tmp_path, monkeypatch):
    """Issue 33, part of fault 13: with no checkpoint yet, the error handler estimated the size
    from ``v.dtype.size`` and raised (Keras 3 names a variable's dtype as a string)."""
    from tf_pix2pix.runtime.checkpointing import CheckpointWriteError

    def full_disk(manager, checkpoint_number=None, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", full_disk)
    cfg = tiny_config(records_dir, tmp_path / "m", max_steps=2)
    with pytest.raises(CheckpointWriteError, match=r"ckpt-2 \(ResourceExhaustedError: No space "
                                                   r"left on device; it needs about [0-9.]+ MiB"
                                                   r".*the newest complete checkpoint is none "
                                                   r"yet"):
        train(cfg, progress=False)


def test_sample_grids_that_cannot_be_written_are_reported_once(records_dir, tmp_path,
                                                               monkeypatch, capsys):
    from tf_pix2pix import visualize

    def full(path, png):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(visualize, "save_png", full)
    result = train(tiny_config(records_dir, tmp_path / "m", max_steps=8), progress=False)
    assert result.step == 8  # training and checkpoints went on
    err = capsys.readouterr().err
    assert err.count("warning: could not write the sample grids to") == 1
    assert "No space left on device" in err


def test_skipping_corrupt_records_counts_them_and_resumes_exactly(records_dir, tmp_path,
                                                                   capsys):
    data_dir, shard = _copy_with_bad_shard(records_dir, tmp_path / "bad", "flip")

    def config(model_dir, max_steps):
        cfg = tiny_config(data_dir, model_dir, max_steps=max_steps)
        return dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, shuffle_buffer=2, on_corrupt_record="skip"))

    straight = train(config(tmp_path / "a", 10), progress=False)
    assert straight.step == 10
    err = capsys.readouterr().err
    assert err.count(f"warning: skipping 1 corrupt record(s) of {shard} (corrupted record at ") \
        == 1
    assert "data/skipped_records" in event_tags(tmp_path / "a" / "train")
    train(config(tmp_path / "b", 4), progress=False)
    resumed = train(config(tmp_path / "b", 10), progress=False)
    assert resumed.weights_sha256 == straight.weights_sha256


def test_data_of_another_layout_and_a_model_dir_of_another_model_are_named(records_dir,
                                                                           tmp_path):
    """Issue 33, part of fault 13: an unpaired model on aligned data said "no training
    examples"; resuming a model_dir with another --model listed every field as differing."""
    from tf_pix2pix.data import DataError

    cycle = models.resolve("cycle_gan", data_dir=records_dir, model_dir=str(tmp_path / "c"),
                           max_steps=1)
    with pytest.raises(DataError, match=r"holds aligned data, but cycle_gan trains on unaligned "
                                        r"data: build it with `python -m "
                                        r"data_prep.build_tfrecords --layout=unaligned` from "
                                        r"IN/trainA and IN/trainB"):
        build_trainer(cycle, progress=False)
    train(tiny_config(records_dir, tmp_path / "m", max_steps=1), progress=False)
    other = models.resolve("cut", data_dir=records_dir, model_dir=str(tmp_path / "m"))
    with pytest.raises(ConfigError, match=r"holds a pix2pix model, not cut; resume it with "
                                          r"--model=pix2pix, or use a new --model_dir"):
        build_trainer(other, progress=False)


def test_a_folder_of_images_as_data_dir_and_a_failed_start_leave_nothing(synthetic_dir,
                                                                          records_dir, tmp_path):
    """Issue 36: an images folder given as --data_dir suggested writing the TFRecords into that
    same folder; a failed start left an empty model_dir behind."""
    from tf_pix2pix.data import DataError

    config = tiny_config(synthetic_dir, tmp_path / "new", max_steps=1)
    with pytest.raises(DataError, match=rf"--data_dir {synthetic_dir} holds images, not "
                                        rf"TFRecords: build them into another folder .* "
                                        rf"--output_dir {synthetic_dir}_tfrecords"):
        build_trainer(config, progress=False)
    assert not (tmp_path / "new").exists()  # created by the failed start: removed
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    cycle = models.resolve("cycle_gan", data_dir=records_dir, model_dir=str(tmp_path / "mine"),
                           max_steps=1)
    with pytest.raises(DataError, match="holds aligned data"):
        build_trainer(cycle, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "kept"  # not ours: kept
    assert sorted(os.listdir(tmp_path / "mine")) == ["notes.txt"]  # and its lock released
