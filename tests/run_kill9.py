"""The kill -9 test: SIGKILLs a training run at random moments and checks that it survives.

Trains the given run_train.py command once without interruption, then again with --kills
SIGKILLs (during start-up, between checkpoints and while a checkpoint is being written), each
followed by a restart, and checks that every restart resumed from the newest checkpoint and that
the final weights are bit-identical to the uninterrupted run's. Exit code 0 means it survived.

Example (the run_train.py flags go after --; --model_dir is set by the test):
  python tests/run_kill9.py --work_dir /tmp/kill9 --kills 10 -- \\
      --data_dir data/facades_tfr --max_steps 400 --save_every_steps 25

Pick --max_steps and --save_every_steps so that the run takes a minute or more and saves at
least every few seconds: each kill needs a new checkpoint to aim at.
"""

from __future__ import annotations

from absl import flags

import kill9  # tests/kill9.py, beside this script
from tf_pix2pix.cli import UserError, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", None, "Folder for reference/, interrupted/ and logs/.",
                    required=True)
flags.DEFINE_integer("kills", 10, "SIGKILLs to deliver before the run may finish.")
flags.DEFINE_integer("seed", 0, "Seed of the kill moments and delays.")
flags.DEFINE_float("timeout", 1800.0, "Seconds one trainer process may take.")


def main(argv: list[str]) -> None:
    train_args = tuple(argv[1:])
    if not train_args:
        raise UserError("pass the run_train.py flags after --, e.g. -- --data_dir D "
                        "--max_steps 400 --save_every_steps 25")
    if any(a.split("=")[0] == "--model_dir" for a in train_args):
        raise UserError("do not pass --model_dir: the test trains into --work_dir/reference and "
                        "--work_dir/interrupted")
    if FLAGS.kills < 1:
        raise UserError(f"--kills={FLAGS.kills}: pass at least 1")
    config = kill9.Kill9Config(train_args=train_args, work_dir=FLAGS.work_dir, kills=FLAGS.kills,
                               seed=FLAGS.seed, timeout=FLAGS.timeout)
    try:
        report = kill9.run(config, log=lambda line: print(line, flush=True))
    except kill9.Kill9Error as e:
        raise UserError(f"kill -9 test failed: {e}") from None
    print(report.summary())


def run() -> None:
    run_main(main, positional=True)


if __name__ == "__main__":
    run()
