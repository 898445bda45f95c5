import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, os.path.join(REPO, "run_train.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def test_dry_run_prints_the_pinned_counts():
    result = _run("--dry_run")
    assert result.returncode == 0, result.stderr
    assert "generator_params=54413955 discriminator_params=2768705" in result.stdout


def test_flagfile_and_preset_values(tmp_path):
    flagfile = tmp_path / "flags.txt"
    flagfile.write_text("--netG=resnet_6blocks\n--ngf=16\n--norm=instance\n")
    result = _run(f"--flagfile={flagfile}", "--dry_run", "--preset=demo")
    assert result.returncode == 0, result.stderr
    # The preset does not override flags given explicitly (here through the flagfile).
    assert "generator_params=494083 " in result.stdout


def test_bad_values_give_one_line_errors(tmp_path):
    result = _run("--crop_size=300", "--dry_run")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: crop_size=300 is larger than load_size=286; set load_size >= crop_size")
    result = _run("--data_dir", str(tmp_path), "--model_dir", str(tmp_path / "m"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {tmp_path}/manifest.json not found" in result.stderr


def test_train_then_architecture_mismatch_from_the_command_line(records_dir, tmp_path):
    common = ["--data_dir", records_dir, "--model_dir", str(tmp_path / "m"), "--netG=unet_32",
              "--ngf=8", "--ndf=8", "--load_size=36", "--crop_size=32", "--batch_size=2",
              "--noprogress", "--val_max_examples=2"]
    result = _run(*common, "--max_steps=2")
    assert result.returncode == 0, result.stderr
    assert "step=2/2" in result.stdout and "val_l1=" in result.stdout
    assert os.path.exists(tmp_path / "m" / "config.json")
    result = _run(*common, "--max_steps=4", "--ngf=16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model.ngf: 8 -> 16" in result.stderr.strip().splitlines()[-1]


def test_demo_preset_generates_its_data_and_trains(tmp_path):
    result = _run("--preset=demo", "--max_steps=2", "--val_max_examples=4",
                  f"--demo_data_dir={tmp_path / 'demo'}", f"--model_dir={tmp_path / 'run'}",
                  "--noprogress")
    assert result.returncode == 0, result.stderr
    assert os.path.exists(tmp_path / "demo" / "tfrecords" / "manifest.json")
    assert os.path.exists(tmp_path / "run" / "samples" / "val_latest.png")


def test_cycle_gan_dry_run_prints_the_four_reference_counts():
    result = _run("--model=cycle_gan", "--dry_run")
    assert result.returncode == 0, result.stderr
    assert ("G_A_params=11378179 G_B_params=11378179 D_A_params=2764737 D_B_params=2764737"
            in result.stdout)
    result = _run("--model=cycle_gan", "--test_mode=paper", "--dry_run")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "paper and eval modes compute the same function" in result.stderr


def test_cycle_gan_demo_preset_generates_unpaired_data_and_trains(tmp_path):
    result = _run("--model=cycle_gan", "--preset=demo", "--max_steps=2", "--val_max_examples=2",
                  f"--demo_data_dir={tmp_path / 'demo'}", f"--model_dir={tmp_path / 'run'}",
                  "--noprogress")
    assert result.returncode == 0, result.stderr
    manifest = json.load(open(tmp_path / "demo" / "tfrecords" / "manifest.json"))
    assert manifest["layout"] == "unaligned"
    assert manifest["splits"]["train"]["A"]["num_examples"] == 400
    saved = json.load(open(tmp_path / "run" / "config.json"))
    # The model's defaults (the reference's) under the demo's smaller sizes.
    assert saved["model"]["model"] == "cycle_gan" and saved["model"]["norm"] == "instance"
    assert saved["model"]["no_dropout"] and saved["model"]["gan_mode"] == "lsgan"
    assert saved["model"]["lambda_A"] == 10.0 and "lambda_l1" not in saved["model"]
    assert saved["model"]["netG"] == "resnet_6blocks" and saved["data"]["crop_size"] == 64
    assert "real_A | fake_B | rec_A" in result.stdout and "val_rec_A_l1=" in result.stdout
    assert os.path.exists(tmp_path / "run" / "samples" / "val_latest.png")
    # Issue 36: an objective measure for the unpaired demo, its A -> B translations against
    # the true renderings the synthetic generator knows (valAB, never read by training).
    line = [x for x in result.stdout.splitlines() if x.startswith("val A->B against the true")]
    assert line and "(50 label maps the unpaired set leaves out): L1=" in line[0], result.stdout
    assert float(line[0].split("SSIM=")[1]) < 1.0


def test_dry_run_of_the_paper_ablations():
    result = _run("--dry_run", "--netG=encoder_decoder_256", "--lambda_gan=0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "generator_params=39075459"
    result = _run("--dry_run", "--netD=n_layers", "--n_layers_D=1", "--no_condition_D")
    assert "discriminator_params=" in result.stdout and "receptive_field=16" in result.stdout
    result = _run("--dry_run", "--lambda_gan=0", "--lambda_l1=0")
    assert result.returncode == 1 and "no objective" in result.stderr.splitlines()[-1]


# Every flag run_train.py had before its flags were generated from the config fields.
_FLAGS_USERS_TYPE = (
    "model data_dir tfds_name tfds_data_dir direction preprocess load_size crop_size input_nc "
    "output_nc no_flip batch_size shuffle_buffer netG ngf netD ndf n_layers_D norm no_dropout "
    "init_gain upsample model_dir gan_mode lambda_l1 lambda_gan no_condition_D lambda_A lambda_B "
    "lambda_identity pool_size lr beta1 beta2 lr_policy n_epochs n_epochs_decay max_steps "
    "save_every_steps summary_every_steps image_every_steps keep_checkpoints val_max_examples "
    "test_mode strategy precision seed preset demo_data_dir dry_run progress").split()
# ... of which these were other models' options: the flags of --model=pix2pix (the default) are
# pix2pix's own now.
_OTHER_MODELS = ("lambda_A", "lambda_B", "lambda_identity", "pool_size")


def test_helpfull_lists_every_flag_with_its_default():
    result = _run("--helpfull")  # absl prints the usage and exits with 1
    assert "Traceback" not in result.stderr
    text = result.stdout
    start = text.index("run_train.py:")
    section = text[start:text.index("\n\n", start)] if "\n\n" in text[start:] else text[start:]
    blocks = {}
    for block in ("\n" + section).split("\n  --")[1:]:
        name = block.split(":", 1)[0].strip()
        blocks[name.replace("[no]", "")] = block
    for name in _FLAGS_USERS_TYPE:
        if name in _OTHER_MODELS:
            assert name not in blocks, name
            continue
        assert name in blocks, name
        assert "(default:" in blocks[name] or name == "preset", (name, blocks[name])
    assert "(default: '100.0')" in blocks["lambda_l1"] and "(default: 'unet_256')" in blocks[
        "netG"]


def test_a_corrupt_shard_is_one_line_naming_it(records_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(records_dir, data)
    shard = data / json.load(open(data / "manifest.json"))["splits"]["train"]["shards"][1]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 40] = bytes(40)
    shard.write_bytes(bytes(raw))
    result = _run("--data_dir", str(data), "--model_dir", str(tmp_path / "m"), "--netG=unet_32",
                  "--ngf=8", "--ndf=8", "--load_size=36", "--crop_size=32", "--batch_size=2",
                  "--shuffle_buffer=2", "--max_steps=20", "--noprogress",
                  "--val_max_examples=0")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {shard} has a corrupted record at ") and (
        "python -m data_prep.verify" in last)
