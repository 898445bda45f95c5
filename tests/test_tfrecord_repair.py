"""The TFRecord framing reader that keeps the good records of a damaged shard."""

import struct

import tensorflow as tf

from tf_pix2pix import tfrecord_repair
from tf_pix2pix.tfrecord_repair import _crc32c_python, clean_copy, crc32c, good_records


def _shard(path, n=10):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(n):
            writer.write(b"record-%02d-" % i + bytes(range(i, i + 50)))
    return path.read_bytes()


def test_crc32c_is_castagnolis_in_both_implementations():
    assert _crc32c_python(b"123456789") == crc32c(b"123456789") == 0xE3069283
    data = bytes(range(256)) * 3
    assert _crc32c_python(data) == crc32c(data)


def test_good_records_drops_a_damaged_body_and_resynchronises_after_a_damaged_length(tmp_path):
    data = _shard(tmp_path / "a")
    records, dropped = good_records(data)
    assert dropped == 0 and [r[:9] for r in records] == [b"record-%02d" % i for i in range(10)]
    size = len(data) // 10  # every record has the same size here
    body = bytearray(data)
    body[3 * size + 20] ^= 0xFF  # inside record 3's data: its CRC fails, its length holds
    records, dropped = good_records(bytes(body))
    assert dropped == 1 and [r[:9] for r in records] == [
        b"record-%02d" % i for i in range(10) if i != 3]
    length = bytearray(data)
    struct.pack_into("<Q", length, 6 * size, 10 ** 9)  # record 6's length is garbage
    records, dropped = good_records(bytes(length))
    assert dropped == 1 and [r[:9] for r in records] == [
        b"record-%02d" % i for i in range(10) if i != 6]
    records, dropped = good_records(data[:int(7.5 * size)])  # cut in record 7
    assert [r[:9] for r in records] == [b"record-%02d" % i for i in range(7)] and dropped == 1


def test_clean_copy_is_read_by_tensorflow_and_cached(tmp_path, monkeypatch):
    data = bytearray(_shard(tmp_path / "a"))
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a").write_bytes(bytes(data))
    copy, dropped = clean_copy(str(tmp_path / "a"))
    assert dropped == 1
    assert len(list(tf.data.TFRecordDataset(copy))) == 9  # no error: all good records
    monkeypatch.setattr(tfrecord_repair, "good_records", None)  # a second call reuses the copy
    assert clean_copy(str(tmp_path / "a")) == (copy, 1)
