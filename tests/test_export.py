import base64
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from tf_pix2pix import models
from tf_pix2pix.configuration import ConfigError
from tf_pix2pix.serving.export import ExportConfig, export, next_version, read_export_info
from tf_pix2pix.inference import mode_call, padded_translate
from tf_pix2pix.models import restore_generator
from tf_pix2pix.runtime.training import train

from conftest import encode_special, png_header_only, random_image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(records_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export") / "model")
    cfg = models.resolve("pix2pix", data_dir=records_dir, load_size=36, crop_size=32,
                         batch_size=2, netG="unet_32", ngf=8, ndf=8, model_dir=out, max_steps=3,
                         val_max_examples=0)
    train(cfg, progress=False)
    return out


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("served"))
    path = export(ExportConfig(model_dir=model_dir, export_dir=base))
    return path, tf.saved_model.load(path)


def test_version_numbering(model_dir, tmp_path):
    base = str(tmp_path / "e")
    assert next_version(base) == 1
    first = export(ExportConfig(model_dir=model_dir, export_dir=base))
    second = export(ExportConfig(model_dir=model_dir, export_dir=base))
    fifth = export(ExportConfig(model_dir=model_dir, export_dir=base, version=5))
    assert [os.path.basename(p) for p in (first, second, fifth)] == ["1", "2", "5"]
    assert next_version(base) == 6
    with pytest.raises(ConfigError, match="already exists"):
        export(ExportConfig(model_dir=model_dir, export_dir=base, version=2))
    assert sorted(os.listdir(base)) == ["1", "2", "5"]  # no staging folders left behind


def test_translate_equals_the_in_memory_generator(model_dir, exported):
    _, loaded = exported
    generator, _, _ = restore_generator(model_dir)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
    out = loaded.signatures["translate"](images=x)["images"]
    np.testing.assert_allclose(out.numpy(), generator(x, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("h, w", [(40, 50), (7, 33), (1, 1)])
def test_translate_takes_any_size(model_dir, exported, h, w):
    _, loaded = exported
    generator, _, _ = restore_generator(model_dir)
    x = tf.constant(np.random.default_rng(1).uniform(-1, 1, (1, h, w, 3)), tf.float32)
    out = loaded.signatures["translate"](images=x)["images"]
    assert out.shape == (1, h, w, 3)
    expected = padded_translate(mode_call(generator, "eval"), x, 32)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), atol=1e-5)


def _decode(png_bytes):
    return tf.io.decode_png(png_bytes).numpy()


def test_serving_default_round_trips_jpeg_png_and_gray(exported):
    _, loaded = exported
    serve = loaded.signatures["serving_default"]
    images = [tf.io.encode_jpeg(random_image(256, 256)).numpy(),
              tf.io.encode_png(random_image(200, 300)).numpy(),
              tf.io.encode_png(random_image(30, 20, c=1)).numpy()]
    sizes = [(256, 256), (200, 300), (30, 20)]
    for data, (h, w) in zip(images, sizes):
        out = serve(image_bytes=tf.constant([data]))["image_bytes"]
        assert out.shape == (1,)
        assert _decode(out[0].numpy()).shape == (h, w, 3)
    batch = serve(image_bytes=tf.constant(images[1:]))["image_bytes"].numpy()
    assert [_decode(b).shape[:2] for b in batch] == sizes[1:]


def test_rest_json_body_gives_the_same_output(exported):
    _, loaded = exported
    serve = loaded.signatures["serving_default"]
    data = tf.io.encode_png(random_image(64, 48, seed=4)).numpy()
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode("ascii")}]})
    # What TF Serving does with a REST body: parse JSON, base64-decode {"b64": ...} strings.
    request = json.loads(body)
    decoded = [base64.b64decode(item["b64"]) for item in request["instances"]]
    via_rest = serve(image_bytes=tf.constant(decoded))["image_bytes"].numpy()
    direct = serve(image_bytes=tf.constant([data]))["image_bytes"].numpy()
    assert via_rest[0] == direct[0]
    # ... and the response encodes *_bytes outputs as {"b64": ...}.
    response = {"predictions": [{"b64": base64.b64encode(b).decode()} for b in via_rest]}
    assert _decode(base64.b64decode(response["predictions"][0]["b64"])).shape == (64, 48, 3)


def test_bad_bytes_raise_a_readable_invalid_argument(exported):
    _, loaded = exported
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError):  # an empty string
        loaded.signatures["serving_default"](image_bytes=tf.constant([b""]))


def test_export_info_asset_and_saved_model_cli(exported):
    path, _ = exported
    info = read_export_info(path)
    assert info["test_mode"] == "eval" and info["pad_multiple"] == 32
    assert info["config"]["model"]["netG"] == "unet_32"
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable),
                                                          "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", path], capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "signature_def['serving_default']" in shown.stdout
    assert "signature_def['translate']" in shown.stdout


def test_saved_model_cli_run_loads_it_as_tf_serving_does(exported, tmp_path):
    """saved_model_cli run restores variables in a TF1 session, the way TF Serving loads."""
    path, loaded = exported
    data = tf.io.encode_png(random_image(40, 24, seed=7)).numpy()
    np.save(tmp_path / "request.npy", np.array([data], dtype=object))
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable),
                                                          "saved_model_cli")
    result = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"image_bytes={tmp_path / 'request.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    served = np.load(tmp_path / "out" / "image_bytes.npy", allow_pickle=True)
    direct = loaded.signatures["serving_default"](image_bytes=tf.constant([data]))
    assert served[0] == direct["image_bytes"].numpy()[0]
    assert _decode(served[0]).shape == (40, 24, 3)


def test_paper_mode_export_uses_batch_statistics(model_dir, tmp_path):
    path = export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path), test_mode="paper"))
    loaded = tf.saved_model.load(path)
    assert read_export_info(path)["test_mode"] == "paper"
    generator, _, _ = restore_generator(model_dir)
    x = tf.constant(np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)), tf.float32)
    translate = loaded.signatures["translate"]
    # Paper mode neither reads nor updates the running statistics (concurrent requests cannot
    # change them), which the SavedModel still holds.
    assert not [v for v in translate.variables if "moving" in v.name]
    saved = [v.numpy() for v in loaded.generator_variables if "moving" in v.name]
    assert saved
    out = translate(images=x)["images"].numpy()
    assert not np.allclose(out, generator(x, training=False).numpy(), atol=1e-4)
    # Batch statistics: the output equals the generator run in training mode on the batch.
    np.testing.assert_allclose(out, generator(x, training=True).numpy(), atol=1e-5)
    after = [v.numpy() for v in loaded.generator_variables if "moving" in v.name]
    for before, now in zip(saved, after):
        np.testing.assert_array_equal(before, now)


def test_mismatched_checkpoint_is_refused(model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["ngf"] = 16
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"does not match the architecture in config.json "
                                          r"\(model=pix2pix netG=unet_32 ngf=16"):
        export(ExportConfig(model_dir=str(copy), export_dir=str(tmp_path / "e")))
    assert not (tmp_path / "e").exists() or not os.listdir(tmp_path / "e")


def test_missing_model_dir_and_checkpoint(tmp_path):
    with pytest.raises(ConfigError, match="config.json not found"):
        restore_generator(str(tmp_path))


def test_cli_exports_and_reports(model_dir, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_export.py"),
                             "--model_dir", model_dir, "--export_dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"exported {tmp_path}/1" in result.stdout
    bad = subprocess.run([sys.executable, os.path.join(REPO, "run_export.py"), "--model_dir",
                          str(tmp_path / "nothing"), "--export_dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
    # Issue 33, part of fault 13: an --export_dir that is a file raised a traceback.
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="--export_dir .*file is a file, not a folder"):
        export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path / "file")))


@pytest.fixture(scope="module")
def cycle_gan_dir(unpaired_records_dir, tmp_path_factory):
    """A CycleGAN trained 2 steps; B is grayscale, so G_A maps 3 -> 1 and G_B 1 -> 3 channels."""
    out = str(tmp_path_factory.mktemp("export_cg") / "model")
    cfg = models.resolve("cycle_gan", data_dir=unpaired_records_dir, load_size=36,
                         crop_size=32, output_nc=1, netG="resnet_6blocks", ngf=4, ndf=4,
                         model_dir=out, max_steps=2, val_max_examples=0, lambda_identity=0.0)
    train(cfg, progress=False)
    return out


@pytest.mark.parametrize("direction, channels", [("AtoB", (3, 1)), ("BtoA", (1, 3))])
def test_cycle_gan_exports_either_generator(cycle_gan_dir, tmp_path, direction, channels):
    path = export(ExportConfig(model_dir=cycle_gan_dir, export_dir=str(tmp_path),
                               direction=direction))
    info = read_export_info(path)
    assert info["direction"] == direction
    assert info["generator"] == {"AtoB": "G_A", "BtoA": "G_B"}[direction]
    loaded = tf.saved_model.load(path)
    generator, _, _ = restore_generator(cycle_gan_dir, direction=direction)
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (1, 20, 28, channels[0])),
                    tf.float32)  # not a multiple of 4: padded and cropped back
    out = loaded.signatures["translate"](images=x)["images"]
    assert out.shape == (1, 20, 28, channels[1])
    expected = padded_translate(mode_call(generator, "eval"), x, 4).numpy()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    png = tf.io.encode_png(random_image(12, 16, 3 if direction == "AtoB" else 1))
    reply = loaded.signatures["serving_default"](image_bytes=tf.stack([png]))["image_bytes"]
    assert tf.io.decode_png(reply[0]).shape == (12, 16, channels[1])


def test_cycle_gan_export_refusals_are_one_line_errors(cycle_gan_dir, model_dir, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(REPO, "run_export.py"), *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO)

    result = run("--model_dir", cycle_gan_dir, "--export_dir", str(tmp_path / "e"),
                 "--test_mode=paper")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "paper and eval modes compute the same function" in result.stderr
    result = run("--model_dir", model_dir, "--export_dir", str(tmp_path / "e"),
                 "--direction=BtoA")
    assert result.returncode == 1 and "pix2pix model" in result.stderr.splitlines()[-1]
    result = run("--model_dir", cycle_gan_dir, "--export_dir", str(tmp_path / "e"),
                 "--direction=BtoA")
    assert result.returncode == 0, result.stderr
    assert "direction=BtoA" in result.stdout


def test_max_pixels_refuses_decompression_bombs_before_decoding(model_dir, tmp_path):
    path = export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path), max_pixels=1024))
    served = tf.saved_model.load(path).signatures["serving_default"]
    small = tf.io.encode_png(random_image(32, 32))  # exactly 1024 pixels: accepted
    assert tf.io.decode_png(served(image_bytes=tf.stack([small]))["image_bytes"][0]).shape == (
        32, 32, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels=1024"):
        served(image_bytes=tf.stack([tf.io.encode_png(random_image(33, 32))]))
    # A 60,000 x 60,000 PNG header with no pixel data: refused by the default limit, no OOM.
    bomb = png_header_only(60000, 60000)
    default = export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path / "d")))
    serve_default = tf.saved_model.load(default).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels=16777216"):
        serve_default(image_bytes=tf.constant([bomb]))
    assert read_export_info(default)["max_pixels"] == 4096 * 4096


def test_serving_answers_hostile_bytes_with_invalid_argument_never_a_crash(exported):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    _, loaded = exported
    serve = loaded.signatures["serving_default"]
    good = tf.io.encode_png(random_image(8, 12)).numpy()

    @settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(st.binary(max_size=64),
                     st.builds(lambda cut: good[:cut], st.integers(0, len(good) - 1))),
           st.booleans())
    def check(data, with_good):
        batch = [good, data] if with_good else [data]
        try:
            out = serve(image_bytes=tf.constant(batch))["image_bytes"]
        except tf.errors.InvalidArgumentError:
            return  # a clean per-request error; the process goes on serving
        assert out.shape == (len(batch),)

    check()
    # ... and it still serves after all that.
    assert serve(image_bytes=tf.constant([good]))["image_bytes"].shape == (1,)


@pytest.mark.parametrize("h, w", [(1, 1), (1, 40), (40, 1), (2, 3)])
def test_serving_translates_tiny_and_thin_images_at_their_size(exported, h, w):
    _, loaded = exported
    data = tf.io.encode_png(random_image(h, w, seed=h * w))
    out = loaded.signatures["serving_default"](image_bytes=tf.stack([data]))["image_bytes"][0]
    assert tf.io.decode_png(out).shape == (h, w, 3)


@pytest.mark.parametrize("kind", ["png16", "gray16", "palette", "cmyk", "gray_jpeg"])
def test_serving_accepts_16_bit_palette_and_cmyk_images(exported, kind):
    _, loaded = exported
    data = encode_special(random_image(12, 20, seed=5), kind)
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([data]))["image_bytes"][0]
    assert tf.io.decode_png(out).shape == (12, 20, 3)


def test_exported_versions_are_readable_by_other_users_and_failures_leave_nothing(
        model_dir, tmp_path, monkeypatch):
    old = os.umask(0o022)
    try:
        path = export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path / "e")))
    finally:
        os.umask(old)
    # As any folder the user creates (umask 022), not mkdtemp's private 0700.
    assert os.stat(path).st_mode & 0o777 == 0o755
    assert os.stat(os.path.join(path, "variables")).st_mode & 0o005 == 0o005

    import tempfile

    made = []
    real_mkdtemp = tempfile.mkdtemp
    monkeypatch.setattr(tempfile, "mkdtemp", lambda *a, **k: made.append(real_mkdtemp(*a, **k))
                        or made[-1])

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.saved_model, "save", fail)
    with pytest.raises(OSError, match="No space left"):
        export(ExportConfig(model_dir=model_dir, export_dir=str(tmp_path / "e")))
    assert sorted(os.listdir(tmp_path / "e")) == ["1"]  # no partial version folder
    assert made and not any(os.path.exists(p) for p in made)  # nor the info folder


def test_versions_are_claimed_atomically(tmp_path, monkeypatch):
    from tf_pix2pix.serving import export as export_lib

    out = tmp_path / "e"
    assert export_lib.claim_version(str(out)) == 1
    assert (out / ".claim-1").is_dir()
    assert export_lib.claim_version(str(out)) == 2  # 1 is being exported by someone else
    (out / "3").mkdir()
    assert export_lib.claim_version(str(out)) == 4
    with pytest.raises(ConfigError, match="version 2 of .* is being exported by another"):
        export_lib.claim_version(str(out), 2)
    with pytest.raises(ConfigError, match="3 already exists"):
        export_lib.claim_version(str(out), 3)
    # Two exports that computed the same next number: the second one's mkdir loses and it
    # takes the following number.
    answers = iter([5, 5, 6])
    monkeypatch.setattr(export_lib, "next_version", lambda d: next(answers))
    assert export_lib.claim_version(str(out)) == 5
    assert export_lib.claim_version(str(out)) == 6


def test_two_exports_into_one_folder_at_once_give_two_complete_versions(model_dir, tmp_path):
    export_dir = str(tmp_path / "e")
    procs = [subprocess.Popen([sys.executable, os.path.join(REPO, "run_export.py"),
                               "--model_dir", model_dir, "--export_dir", export_dir],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # no claims or partial folders left
    for version in ("1", "2"):
        loaded = tf.saved_model.load(os.path.join(export_dir, version))
        assert read_export_info(os.path.join(export_dir, version))["version"] == int(version)
        assert "serving_default" in loaded.signatures


def test_claims_and_partial_versions_of_killed_exports_are_removed(tmp_path, capsys):
    """Issue 33, fault 3: after kill -9 an export's ``.claim-N`` and ``.N.partial-*`` were never
    removed (the next export was version 5 after 3)."""
    import socket

    from tf_pix2pix.runtime.locking import _process_start
    from tf_pix2pix.serving import export as export_lib

    out = tmp_path / "e"
    (out / "3").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    owner = lambda pid: json.dumps({"host": socket.gethostname(), "pid": pid,  # noqa: E731
                                    "process_start": _process_start(pid)})
    (out / ".claim-4").mkdir()
    (out / ".claim-4" / "owner.json").write_text(owner(dead.pid))
    (out / f".4.partial-{dead.pid}-0123456789ab").mkdir()
    (out / f".4.partial-{dead.pid}-0123456789ab" / "saved_model.pb").write_bytes(b"half")
    (out / ".claim-5").mkdir()  # a claim of before (no owner), two hours old
    (out / ".5.partial-0123456789ab").mkdir()
    for name in (".claim-5", ".5.partial-0123456789ab"):
        os.utime(out / name, (time.time() - 7200, time.time() - 7200))
    (out / ".claim-9").mkdir()  # a claim of before, fresh: it may be an export running now
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".claim-7").mkdir()
        (out / ".claim-7" / "owner.json").write_text(owner(live.pid))
        assert export_lib.claim_version(str(out)) == 10
        assert sorted(os.listdir(out)) == [".claim-10", ".claim-7", ".claim-9", "3"]
        assert "removed .4.partial-" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()
    os.rmdir(out / ".claim-9")
    assert export_lib.claim_version(str(out)) == 11  # 7 is gone now, 10 is this process's
    assert sorted(os.listdir(out)) == [".claim-10", ".claim-11", "3"]
